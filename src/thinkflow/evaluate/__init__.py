"""Evaluation: benchmarks, generation, scoring through the rewards, reports. The stage is `run(cfg: EvalConfig)`."""

from thinkflow.evaluate.stage import BenchmarkSpec, EvalConfig, run

__all__ = ["BenchmarkSpec", "EvalConfig", "run"]
