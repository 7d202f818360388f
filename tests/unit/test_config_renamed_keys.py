"""A renamed config key keeps loading under its old spelling, with a warning naming the new one."""

from __future__ import annotations

from typing import ClassVar

import pytest

from thinkflow.config import ConfigError, StageConfig, load_config


class _Inner(StageConfig):
    renamed_keys: ClassVar[dict[str, str]] = {"keywords": "cues"}
    cues: tuple[str, ...] = ()


class _Outer(StageConfig):
    renamed_keys: ClassVar[dict[str, str]] = {"output": "output_dir"}
    output_dir: str = "out"
    inner: _Inner = _Inner()


def test_old_key_loads_with_a_warning_naming_the_new_one():
    with pytest.warns(DeprecationWarning, match="'output' is deprecated, use 'output_dir'"):
        cfg = load_config(_Outer, sets=["output=elsewhere"])
    assert cfg.output_dir == "elsewhere"


def test_nested_section_renames_too():
    with pytest.warns(DeprecationWarning, match="'keywords' is deprecated, use 'cues'"):
        cfg = _Outer.model_validate({"inner": {"keywords": ["wait"]}})
    assert cfg.inner.cues == ("wait",)


def test_both_spellings_is_an_error():
    with pytest.raises(ConfigError, match="keep only 'output_dir'"):
        load_config(_Outer, sets=["output=a", "output_dir=b"])


def test_current_key_loads_silently(recwarn):
    assert load_config(_Outer, sets=["output_dir=x"]).output_dir == "x"
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]
