"""``EvalConfig``: what one evaluation reads, how it generates and scores, and what its report compares against.

Defaults are the paper's evaluation settings (greedy, ``max_new_tokens`` 800, ``max_pixels`` 256·32·32, the
VLAA-Thinker system prompt). ``thinkflow.evaluate.run(cfg)`` runs it; `eval_set_hash` is the identity of the
eval set and protocol that decides whether two evaluations may be compared.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from thinkflow.config import StageConfig
from thinkflow.evaluate.judge import JudgeConfig
from thinkflow.format import AHA_CUES, SYSTEM_PROMPT, AhaMatch
from thinkflow.rewards.config import RewardConfig, default_scorer_model


class BenchmarkSpec(BaseModel):
    """One benchmark to evaluate: its adapter ``name`` and the ``path`` of its HF datasets copy."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="Benchmark adapter: mathvista | mathvision | mathverse | dynamath | wemath | logicvista | dataset."
    )
    path: str = Field(min_length=1, description="The benchmark's copy: a local directory or an s3:// URI.")
    split: str | None = Field(
        default=None, description="Split to read; default: the benchmark's own (testmini, test, sample_variant*, eval)."
    )
    limit: int | None = Field(
        default=None, gt=0, description="Only the first N samples (N groups for DynaMath / WeMath)."
    )
    fields: dict[str, str] = Field(
        default_factory=dict, description='Field-name overrides of the copy, e.g. {"question": "prompt"}.'
    )

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        from thinkflow.evaluate.benchmarks import ADAPTERS

        if value not in ADAPTERS:
            raise ValueError(f"unknown benchmark {value!r}; known: {', '.join(ADAPTERS)}")
        return value


def _parse_spec(item: Any) -> Any:
    """``"mathvista=s3://b/mathvista"`` -> ``{"name": "mathvista", "path": "s3://b/mathvista"}``."""
    if isinstance(item, str):
        name, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"benchmark entry {item!r}: expected NAME=PATH (e.g. mathvista=s3://bench/mathvista)")
        return {"name": name.strip(), "path": path.strip()}
    return item


class EvalConfig(StageConfig):
    """Evaluate one model on benchmarks and/or a built dataset's eval split (the paper's settings by default)."""

    # One name per concept across stages: GRPO's `reward` section, the build's `aha_cues`.
    renamed_keys: ClassVar[dict[str, str]] = {"rewards": "reward", "aha_keywords": "aha_cues"}

    model: str = Field(
        default=".thinkflow/runs/tiny-grpo",
        min_length=1,
        description="The model to evaluate: a directory or s3:// URI.",
    )
    data: str | list[BenchmarkSpec] = Field(
        default=".thinkflow/data",
        description="A built dataset (directory or s3://; its `split` is evaluated) or a list of benchmarks, each "
        '{name, path, split, limit, fields} or "name=path".',
    )
    split: str = Field(default="eval", description="Split of a built dataset given as a string `data`.")
    output_dir: str = Field(
        default=".thinkflow/eval",
        min_length=1,
        description="Where predictions.jsonl, metrics.json, the reports and plots go (directory or s3://).",
    )
    limit: int | None = Field(
        default=None, gt=0, description="At most N samples per benchmark (unless the benchmark entry sets its own)."
    )
    backend: Literal["auto", "hf", "vllm"] = Field(
        default="auto", description="Generation backend: vllm when importable with a GPU (auto), or HF generate."
    )
    max_new_tokens: int = Field(default=800, gt=0, description="Generation budget per answer (the paper's: 800).")
    temperature: float = Field(default=0.0, ge=0.0, description="Sampling temperature; 0 is greedy (the paper's).")
    system_prompt: str = Field(
        default=SYSTEM_PROMPT,
        description='The system prompt (default: the VLAA-Thinker prompt, thinkflow.format.SYSTEM_PROMPT); "": none.',
    )
    max_pixels: int | None = Field(
        default=256 * 32 * 32,
        gt=0,
        description="Upper image resolution bound (pixels) for the Qwen2(.5)-VL processor; the paper evaluates with "
        "256*32*32 = 262144. null keeps the processor's own bound.",
    )
    min_pixels: int | None = Field(
        default=None, gt=0, description="Lower image resolution bound (pixels); null keeps the processor's own."
    )
    batch_size: int = Field(default=8, gt=0, description="Questions per generation batch (HF backend).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = Field(
        default=None, description="Model dtype; null: bfloat16 on a GPU, float32 on CPU."
    )
    device: str | None = Field(default=None, description="Torch device, e.g. cuda:0; null: the GPU if any, else CPU.")
    seed: int = Field(default=0, ge=0, description="Random seed of generation (matters only with temperature > 0).")
    vllm_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra vllm.LLM arguments, e.g. {max_model_len: 8192, gpu_memory_utilization: 0.85, "
        "tensor_parallel_size: 2}.",
    )
    fallback_to_raw: bool = Field(
        default=True,
        description="Without an <answer> block, judge the visible text of the response (as VLMEvalKit does).",
    )
    correct_thresholds: dict[str, float] = Field(
        default_factory=lambda: {"iou": 0.5, "open": 0.5},
        description="Per verifier type, the reward at or above which an answer counts as correct (1.0 for types "
        "not listed).",
    )
    reward: RewardConfig = Field(
        default_factory=RewardConfig,
        description="Verifier settings (as GRPO's `reward`), including the scorer of open-ended samples "
        "(scorer_model defaults to `model` for the logprob scorer).",
    )
    judge: JudgeConfig | None = Field(
        default=None,
        description="Optional LLM judge ({base_url, model, api_key_env, benchmarks}) that extracts the answers the "
        "rules miss on the benchmarks VLMEvalKit judges; null: every benchmark is scored by rules (the report says "
        "which).",
    )
    aha_cues: list[str] = Field(
        default_factory=lambda: list(AHA_CUES),
        description="The aha cues counted in each response (default: the build's eight split cues).",
    )
    aha_match: AhaMatch = Field(
        default="substring", description="How cues match, as in the build: substring (the paper's) or word."
    )
    examples: int = Field(
        default=6, ge=0, description="Example predictions shown in the report (question, image, completion, verdict)."
    )
    baseline: str | None = Field(
        default=None,
        description="The report's comparison: a metrics.json (file, directory or s3://) or models:/NAME@champion.",
    )
    reference: str | None = Field(
        default=None,
        description="Published scores shown beside this run: a YAML/JSON file {source, rows: {model: {benchmark: "
        "percent}}}.",
    )
    base_model: str | None = Field(
        default=None,
        description='Also evaluate this model on the same samples as the "before" (metrics.json `base`; the gate\'s '
        'floor for a first version): a directory / s3:// URI, or "lineage" for the model the evaluated one was '
        "trained from.",
    )
    train_run_id: str | None = Field(
        default=None,
        description="MLflow run of the training stage, for the report's training curves (default: lineage.json's "
        "mlflow_run_id).",
    )
    progress: bool = Field(default=True, description="Show a progress bar while generating.")
    part: str | None = Field(
        default=None,
        description="One task of a fanned-out evaluation: only the benchmark of this name (`dataset`: the built "
        "dataset's split); thinkflow.evaluate.merge joins the parts into what one whole evaluation writes.",
    )

    @model_validator(mode="before")
    @classmethod
    def _scorer_defaults_to_model(cls, data: Any) -> Any:
        # runs before the base class renames `rewards` (pydantic: subclass "before" validators first)
        old = isinstance(data, dict) and "rewards" in data and "reward" not in data
        return default_scorer_model(data, "rewards" if old else "reward")

    @field_validator("data", mode="before")
    @classmethod
    def _parse_data(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_parse_spec(v) for v in value]
        return value

    def benchmarks(self) -> list[BenchmarkSpec]:
        """The benchmarks this config evaluates (a string ``data`` is the built dataset's split)."""
        if isinstance(self.data, str):
            specs = [BenchmarkSpec(name="dataset", path=self.data, split=self.split, limit=self.limit)]
        elif not self.data:
            raise ValueError("data: the benchmark list is empty")
        else:
            specs = [b if b.limit or not self.limit else b.model_copy(update={"limit": self.limit}) for b in self.data]
        if self.part is None:
            return specs
        mine = [b for b in specs if b.name == self.part]
        if not mine:
            raise ValueError(f"part: {self.part!r} is not among the benchmarks ({', '.join(b.name for b in specs)})")
        return mine


def eval_set_hash(samples: list[Any], cfg: EvalConfig) -> str:
    """Identity of the eval set and protocol: every (benchmark, id, question, solution) plus the generation settings.

    Two evaluations are comparable (for the promotion gate) only when their hashes are equal.
    """
    h = hashlib.sha256()
    protocol: dict[str, Any] = {
        "system_prompt": cfg.system_prompt,
        "max_pixels": cfg.max_pixels,
        "min_pixels": cfg.min_pixels,
        "max_new_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "fallback_to_raw": cfg.fallback_to_raw,
        "correct_thresholds": cfg.correct_thresholds,
        "max_answer_chars": cfg.reward.max_answer_chars,
    }
    if any(_identity(s)[4] == "open" for s in samples):  # the reward model judges open-ended answers
        protocol["open"] = cfg.reward.model_dump(mode="json", include={"scorer", "scorer_url", "scorer_model", "beta"})
    if cfg.judge is not None:  # the judge model is part of the protocol
        protocol["judge"] = {"model": cfg.judge.model, "benchmarks": sorted(cfg.judge.benchmarks)}
    h.update(json.dumps(protocol, sort_keys=True).encode())
    for row in sorted(map(_identity, samples)):
        h.update(json.dumps(list(row)).encode())
    return h.hexdigest()


def _identity(sample: Any) -> tuple[str, str, str, str, str]:
    """(benchmark, id, question, solution, verifier_type) of a loaded sample or of a prediction row."""
    keys = ("benchmark", "id", "question", "solution", "verifier_type")
    b, i, q, s, v = (sample[k] if isinstance(sample, dict) else getattr(sample, k) for k in keys)
    return b, i, q, s, v
