from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from thinkflow.config import ConfigError, StageConfig, apply_override, load_config


class Inner(StageConfig):
    beta: float = 0.001
    names: list[str] = Field(default_factory=list)


class Demo(StageConfig):
    model: str = "m"
    lr: float = 1e-6
    steps: int = 10
    bf16: bool = False
    inner: Inner = Inner()


def test_defaults_without_config() -> None:
    cfg = load_config(Demo)
    assert cfg == Demo()


def test_yaml_file_and_overrides_are_type_checked(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("model: /models/x\nsteps: 3\ninner:\n  beta: 0.5\n")
    cfg = load_config(Demo, str(f), ["lr=1e-5", "bf16=true", "inner.names=[a, b]", "steps=7"])
    assert cfg.model == "/models/x"
    assert cfg.lr == pytest.approx(1e-5)
    assert cfg.bf16 is True
    assert cfg.steps == 7
    assert cfg.inner.beta == 0.5
    assert cfg.inner.names == ["a", "b"]


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'lrr'"):
        load_config(Demo, None, ["lrr=1"])
    f = tmp_path / "c.yaml"
    f.write_text("inner:\n  betta: 1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'inner\.betta'"):
        load_config(Demo, str(f))


def test_bad_type_is_named() -> None:
    with pytest.raises(ConfigError, match="key 'steps'"):
        load_config(Demo, None, ["steps=many"])


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        apply_override({}, "noequals")


def test_unknown_preset_lists_shipped() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_config(Demo, "nope")


def test_missing_yaml_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(Demo, "/nonexistent/x.yaml")


def test_to_yaml_round_trip(tmp_path: Path) -> None:
    cfg = Demo(steps=4)
    f = tmp_path / "r.yaml"
    f.write_text(cfg.to_yaml())
    assert load_config(Demo, str(f)) == cfg
