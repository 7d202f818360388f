"""The build's config (`BuildConfig`), its error, file names and shard arithmetic.

Shared by the steps (`thinkflow.data.collect`, `thinkflow.data.distill`, `thinkflow.data.manifest`), the
build (`thinkflow.data.build.run`) and the merge (`thinkflow.data.merge`); it imports none of them.
"""

from __future__ import annotations

import hashlib
import re
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from thinkflow.config import StageConfig
from thinkflow.data.prompts import PromptsConfig
from thinkflow.data.sources import Source, SyntheticSource
from thinkflow.data.teachers import TeacherConfig
from thinkflow.errors import ThinkFlowError
from thinkflow.format import AHA_CUES, AhaMatch
from thinkflow.images import ImageLimits

STEPS: tuple[str, ...] = ("collect", "caption", "reason", "rewrite", "verify", "split")
FORMAT = "thinkflow.dataset/v1"
SHARD_FORMAT = "thinkflow.shard/v1"
SHARD_FILE = "shard.jsonl"
SHARD_MANIFEST = "shard.json"
WORK_DIRNAME = ".build"
IMAGE_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff"}
MENTIONS = r"\b(captions?|captioned|descriptions?|described|describes|the (?:given |provided )?text)\b"


class BuildError(ThinkFlowError, RuntimeError):
    """A build that cannot go on; the message says what to fix (or that a rerun retries what failed)."""


class TeachersConfig(BaseModel):
    """The teachers of steps 2-5; leave them unset to build without distillation."""

    model_config = ConfigDict(extra="forbid")

    caption: TeacherConfig | None = Field(default=None, description="Step 2: VLM that captions images.")
    reason: TeacherConfig | None = Field(default=None, description="Step 3: text-only reasoning model (R1-style).")
    rewrite: TeacherConfig | None = Field(default=None, description="Step 4: LLM that rewrites caption references.")
    judge: TeacherConfig | None = Field(
        default=None, description="Step 5: LLM judge for types without a rule verifier."
    )


class RewriteConfig(BaseModel):
    """Step 4: the rewrite of caption references and the paper's length-gap filter."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Run step 4 (needs teachers.rewrite).")
    max_word_delta: int = Field(default=15, ge=0, description="Drop a rewrite that changes the word count by more.")
    only_if_mentions: bool = Field(
        default=True, description="Call the rewriter only when the reasoning mentions a caption/description."
    )
    mention_pattern: str = Field(default=MENTIONS, description="Regex (case-insensitive) of such mentions.")

    @field_validator("mention_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class VerifyConfig(BaseModel):
    """Step 5: keep only correct answers (rule verifiers and/or an LLM judge)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Run step 5.")
    mode: Literal["rules", "judge"] = Field(
        default="rules",
        description="rules: rule verifiers for rule_types, the judge for the others (ThinkFlow); judge: the "
        "Yes/No judge on every sample (the paper: GPT-3.5-turbo).",
    )
    rule_types: list[str] = Field(
        default_factory=lambda: ["digit", "mcq", "math", "iou"],
        description="Verifier types checked by thinkflow.rewards (cheaper); the others go to teachers.judge.",
    )
    thresholds: dict[str, float] = Field(
        default_factory=lambda: {"iou": 0.5}, description="Rule score needed to count as correct (default 1.0)."
    )


def _default_sources() -> list[Source]:
    return [SyntheticSource()]


class BuildConfig(StageConfig):
    """Config of `thinkflow.data.build.run`: sources, teachers, step options, output."""

    renamed_keys: ClassVar[dict[str, str]] = {"output": "output_dir"}

    output_dir: str = Field(description="Dataset directory or s3:// URI (remote outputs are built in the cache).")
    sources: list[Source] = Field(
        default_factory=lambda: _default_sources(), description="Inputs (default: 200 synthetic scenes)."
    )
    seed: int = Field(default=0, description="Seed for sampling caps, synthetic scenes and the eval hold-out.")
    dedupe: Literal["image", "image_question", "none"] = Field(
        default="image", description="Keep one record per image (the paper), per image+question, or all."
    )
    eval_fraction: float = Field(default=0.05, ge=0.0, lt=1.0, description="Held-out eval share of auto-split records.")
    aha_cues: list[str] = Field(default_factory=lambda: list(AHA_CUES), description="Step-6 cues (-> rl).")
    aha_match: AhaMatch = Field(
        default="substring",
        description="Step-6 cue test over the whole response: substring (the paper's any(cue in text.lower())) "
        "or word (whole words only).",
    )
    teachers: TeachersConfig = Field(
        default_factory=TeachersConfig, description="The teachers of steps 2-5 (unset: no distillation)."
    )
    rewrite: RewriteConfig = Field(default_factory=RewriteConfig, description="Step 4: the rewrite and its filter.")
    verify: VerifyConfig = Field(default_factory=VerifyConfig, description="Step 5: how answers are verified.")
    prompts: PromptsConfig = Field(default_factory=PromptsConfig, description="The prompt of each teacher step.")
    on_teacher_error: Literal["fail", "reject"] = Field(
        default="fail",
        description="After retries: fail the build at the end of the step (a rerun retries) or reject the record.",
    )
    work_dir: str | None = Field(
        default=None, description="Journal directory (default: OUTPUT_DIR/.build, or the cache)."
    )
    shard: str | None = Field(
        default=None,
        description="'I/N': build only shard I of N (records chosen by a stable hash of their id) and write a "
        "shard output to `output_dir`; `thinkflow data merge` combines the N shards into the dataset.",
    )
    image_workers: int = Field(default=8, ge=1, description="Threads reading/decoding images in step 1.")
    image_limits: ImageLimits = Field(
        default_factory=ImageLimits, description="Bounds on each source image (pixels, bytes); over them: rejected."
    )
    tracking: bool = Field(default=True, description="Log the run to MLflow.")
    progress: bool = Field(default=True, description="Show a progress bar per step.")

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is not None:
            parse_shard(value)
        return value


def parse_shard(spec: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``; a clear error otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise ValueError(f"shard must be 'I/N' with 0 <= I < N (e.g. 0/8), got {spec!r}")
    return int(m.group(1)), int(m.group(2))


def shard_specs(count: str | int) -> list[str]:
    """``["0/N", …, "N-1/N"]`` for a shard count given as text (a pipeline parameter) or a number."""
    try:
        n = int(str(count).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"build_shards must be a whole number >= 1, got {count!r}")
    return [f"{i}/{n}" for i in range(n)]


def shard_of(record_id: str, count: int) -> int:
    """The shard (of ``count``) a record id belongs to: BLAKE2b of the id, so it is the same in every process
    and every Python (unlike ``hash()``), and a shard's content never depends on the other shards."""
    digest = hashlib.blake2b(record_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count
