"""The teacher prompts of the build: ThinkFlow's own (package data ``thinkflow/prompts/build_*.txt``, the
offline defaults) or any file or URI a config points at.

A config can replace any prompt (``prompts: {caption: ...}``) with a path, or with a `PromptSource`:

- ``uri``: a local path, ``file://``, ``s3://`` or ``https://`` URI (``http://`` on loopback only). An
  ``https://`` URI must be pinned (a commit in the URL) and carry ``sha256``: the download is checked
  against it and cached under ``$THINKFLOW_CACHE/prompts/<sha256>.txt``, so a build never re-downloads and
  never runs with other text.
  ``sha256`` is checked for every scheme when given.
- ``placeholders``: ``dollar`` (``$name``, `string.Template`: LaTeX braces need no escaping; ThinkFlow's files)
  or ``braces`` (``{name}``, Python `str.format`; VLAA-Thinking's ``assets/prompts/*.txt``).
- ``fields``: the template's placeholder names mapped onto ThinkFlow's (e.g. ``{input: response}``).

The ``vlaa-distill-paper`` preset points at VLAA-Thinking's four published prompts this way (pinned commit
and sha256; their text is not copied into ThinkFlow).
"""

from __future__ import annotations

import hashlib
import re
import string
from importlib import resources
from pathlib import Path
from string import Template
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    "rewrite": ("reasoning", "response"),  # the reasoning alone, or the whole distilled answer
    "verify": ("question", "solution", "answer"),
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PromptError(ValueError):
    """A prompt that cannot be loaded (missing file, download failure, sha256 mismatch, unknown placeholder)."""


class PromptSource(BaseModel):
    """A prompt file or URI, its checksum and its placeholder syntax (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(min_length=1, description="Path, file://, s3:// or https:// (pinned, with sha256) URI.")
    sha256: str | None = Field(default=None, description="Hex SHA-256 of the file; required for https://.")
    placeholders: Literal["dollar", "braces"] = Field(default="dollar", description="$name or {name}.")
    fields: dict[str, str] = Field(default_factory=dict, description="Template placeholder -> ThinkFlow name.")

    @model_validator(mode="after")
    def _check(self) -> PromptSource:
        if self.sha256 is not None and not _SHA256.match(self.sha256):
            raise ValueError(f"sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.uri.startswith("http://") and not _loopback(self.uri):
            raise ValueError(f"{self.uri}: use https:// (pinned to a commit, with sha256)")
        if self.uri.startswith(("https://", "http://")) and self.sha256 is None:
            raise ValueError(f"{self.uri}: a downloaded prompt needs sha256 (the download is checked against it)")
        return self


PromptSpec = str | PromptSource | None


def _loopback(uri: str) -> bool:
    """``http://`` is accepted only from this machine (a local mirror, tests); anything else needs TLS."""
    from urllib.parse import urlsplit

    return urlsplit(uri).hostname in {"127.0.0.1", "localhost", "::1"}


class PromptsConfig(BaseModel):
    """Optional prompts replacing the shipped ones (a path, or a `PromptSource`)."""

    model_config = ConfigDict(extra="forbid")

    caption: PromptSpec = Field(default=None, description="Captioning prompt ($extras).")
    reason: PromptSpec = Field(default=None, description="Reasoning prompt ($caption, $question).")
    reason_text: PromptSpec = Field(default=None, description="Reasoning prompt for text-only questions ($question).")
    rewrite: PromptSpec = Field(default=None, description="Rewriting prompt ($reasoning or $response).")
    verify: PromptSpec = Field(default=None, description="Judge prompt ($question, $solution, $answer).")


def _download(uri: str) -> bytes:
    if uri.startswith(("https://", "http://")):
        import httpx

        try:
            reply = httpx.get(uri, timeout=30.0, follow_redirects=True)
            reply.raise_for_status()
        except httpx.HTTPError as exc:
            raise PromptError(f"cannot download {uri}: {exc}") from None
        return reply.content
    if uri.startswith("s3://"):
        from thinkflow import storage

        try:
            return storage.localize(uri).read_bytes()
        except (storage.StorageError, OSError) as exc:
            raise PromptError(f"cannot read {uri}: {exc}") from None
    path = Path(uri.removeprefix("file://"))
    if not path.is_file():
        raise PromptError(f"no such file {uri}")
    return path.read_bytes()


def fetch_prompt(source: PromptSource) -> str:
    """The prompt's text: read or downloaded, checked against ``sha256``, cached when remote."""
    from thinkflow import storage

    cached = storage.cache_dir() / "prompts" / f"{source.sha256}.txt" if source.sha256 else None
    if cached is not None and cached.is_file() and hashlib.sha256(cached.read_bytes()).hexdigest() == source.sha256:
        return cached.read_text(encoding="utf-8")
    data = _download(source.uri)
    digest = hashlib.sha256(data).hexdigest()
    if source.sha256 is not None and digest != source.sha256:
        raise PromptError(
            f"{source.uri}: sha256 mismatch: expected {source.sha256}, downloaded {digest} "
            "(the file changed, or the URI is not pinned to a commit)"
        )
    if cached is not None and source.uri.startswith(("https://", "http://", "s3://")):
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(cached)
    return data.decode("utf-8")


class _Prompt:
    """One loaded template: its text, syntax and placeholder mapping."""

    def __init__(self, name: str, text: str, source: PromptSource | None) -> None:
        self.text = text
        self.braces = source is not None and source.placeholders == "braces"
        self.fields = dict(source.fields) if source is not None else {}
        if self.braces:
            try:
                ids = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
            except ValueError as exc:
                raise PromptError(f"prompts.{name}: not a {{name}} template: {exc}") from None
        else:
            ids = set(Template(text).get_identifiers())
        self.identifiers = {self.fields.get(i, i) for i in ids}
        unknown = sorted(self.identifiers - set(PLACEHOLDERS[name]))
        if unknown:
            mapped = ", ".join(sorted(ids))
            raise PromptError(
                f"prompts.{name}: unknown placeholder(s) {', '.join(unknown)} (template has: {mapped}; known: "
                f"{', '.join(PLACEHOLDERS[name])}; map them with fields: {{theirs: ours}})"
            )
        self.source_ids = ids

    def render(self, values: dict[str, str]) -> str:
        mapped = {i: values.get(self.fields.get(i, i), "") for i in self.source_ids}
        if self.braces:
            return self.text.format_map(mapped).strip()
        return Template(self.text).substitute(mapped).strip()


class Prompts:
    """Loaded templates, checked for their placeholders."""

    def __init__(self, cfg: PromptsConfig | None = None) -> None:
        cfg = cfg or PromptsConfig()
        self.prompts: dict[str, _Prompt] = {}
        self.texts: dict[str, str] = {}
        for name, filename in PROMPT_FILES.items():
            override = getattr(cfg, name)
            source = PromptSource(uri=override) if isinstance(override, str) else override
            if source is not None:
                try:
                    text = fetch_prompt(source)
                except PromptError as exc:
                    raise PromptError(f"prompts.{name}: {exc}") from None
            else:
                text = resources.files("thinkflow").joinpath("prompts", filename).read_text(encoding="utf-8")
            self.prompts[name] = _Prompt(name, text, source)
            self.texts[name] = text

    def uses(self, name: str, placeholder: str) -> bool:
        """Whether the ``name`` template has ``placeholder`` (after its field mapping)."""
        return placeholder in self.prompts[name].identifiers

    def render(self, name: str, **values: str) -> str:
        return self.prompts[name].render(values)

    def digest(self) -> str:
        """Hash of every template's text (part of the build fingerprint)."""
        h = hashlib.sha256()
        for name in sorted(self.texts):
            h.update(name.encode() + b"\0" + self.texts[name].encode() + b"\0")
            prompt = self.prompts[name]
            if prompt.braces or prompt.fields:  # how the text is filled in changes the outputs too
                h.update(repr((prompt.braces, sorted(prompt.fields.items()))).encode() + b"\0")
        return h.hexdigest()
