"""The teacher prompts of the build, shipped as package data in ``thinkflow/prompts/build_*.txt``.

Templates use ``$name`` placeholders (`string.Template`, so LaTeX braces in questions need no escaping).
A config can point any of them at another file (``prompts: {caption: my_caption.txt}``).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from string import Template

from pydantic import BaseModel, ConfigDict, Field

PROMPT_FILES: dict[str, str] = {
    "caption": "build_caption.txt",
    "reason": "build_reason.txt",
    "reason_text": "build_reason_text.txt",
    "rewrite": "build_rewrite.txt",
    "verify": "build_verify.txt",
}
PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "caption": ("extras",),
    "reason": ("caption", "question"),
    "reason_text": ("question",),
    "rewrite": ("reasoning",),
    "verify": ("question", "solution", "answer"),
}


class PromptsConfig(BaseModel):
    """Optional prompt files replacing the shipped ones (paths; placeholders as in the shipped files)."""

    model_config = ConfigDict(extra="forbid")

    caption: str | None = Field(default=None, description="Captioning prompt ($extras).")
    reason: str | None = Field(default=None, description="Reasoning prompt ($caption, $question).")
    reason_text: str | None = Field(default=None, description="Reasoning prompt for text-only questions ($question).")
    rewrite: str | None = Field(default=None, description="Rewriting prompt ($reasoning).")
    verify: str | None = Field(default=None, description="Judge prompt ($question, $solution, $answer).")


class Prompts:
    """Loaded templates, checked for their placeholders."""

    def __init__(self, cfg: PromptsConfig | None = None) -> None:
        cfg = cfg or PromptsConfig()
        self.templates: dict[str, Template] = {}
        self.texts: dict[str, str] = {}
        for name, filename in PROMPT_FILES.items():
            override = getattr(cfg, name)
            if override:
                path = Path(override)
                if not path.is_file():
                    raise FileNotFoundError(f"prompts.{name}: no such file {override}")
                text = path.read_text(encoding="utf-8")
            else:
                text = resources.files("thinkflow").joinpath("prompts", filename).read_text(encoding="utf-8")
            tmpl = Template(text)
            ids = set(tmpl.get_identifiers())
            unknown = ids - set(PLACEHOLDERS[name])
            if unknown:
                raise ValueError(f"prompts.{name}: unknown placeholder(s) {', '.join(sorted(unknown))}")
            self.templates[name] = tmpl
            self.texts[name] = text

    def render(self, name: str, **values: str) -> str:
        return self.templates[name].substitute(**values).strip()

    def digest(self) -> str:
        """Hash of every template's text (part of the build fingerprint)."""
        h = hashlib.sha256()
        for name in sorted(self.texts):
            h.update(name.encode() + b"\0" + self.texts[name].encode() + b"\0")
        return h.hexdigest()
