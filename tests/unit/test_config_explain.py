"""`thinkflow.config.explain`: every key, dotted through nested sections, with type, value and description."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from typer.testing import CliRunner

from thinkflow.cli import app
from thinkflow.config import REQUIRED, StageConfig, explain, load_config


class Inner(BaseModel):
    beta: float = Field(default=1.0, description="Weight of the inner thing.")


class Item(BaseModel):
    name: str = Field(default="x", description="Item name.")


class Outer(StageConfig):
    model: str = Field(description="Model dir.")
    mode: Literal["a", "b"] = Field(default="a", description="Mode.")
    inner: Inner = Field(default_factory=Inner, description="The inner section.")
    maybe: Inner | None = Field(default=None, description="An optional section.")
    items: list[Item] = Field(default_factory=list, description="Items.")
    undocumented: int | None = None


def test_class_lists_defaults_nested_sections_and_items() -> None:
    rows = {r.key: r for r in explain(Outer)}
    assert list(rows) == [
        "model",
        "mode",
        "inner",
        "inner.beta",
        "maybe",
        "maybe.beta",
        "items",
        "items.<i>.name",
        "undocumented",
    ]
    assert rows["model"].required and rows["model"].value == REQUIRED
    assert (rows["mode"].type, rows["mode"].value, rows["mode"].description) == ("Literal['a', 'b']", "a", "Mode.")
    assert rows["inner"].section and rows["inner"].type == "Inner"
    assert (rows["inner.beta"].type, rows["inner.beta"].value) == ("float", 1.0)
    assert rows["inner.beta"].description == "Weight of the inner thing."
    assert rows["maybe"].type == "Inner | None" and rows["maybe"].section
    assert rows["items"].type == "list[Item]" and rows["items.<i>.name"].description == "Item name."
    assert rows["undocumented"].description == "" and rows["undocumented"].type == "int | None"


def test_instance_shows_current_values_and_skips_unset_optional_sections() -> None:
    cfg = load_config(Outer, None, ["model=m", "inner.beta=0.5"])
    rows = {r.key: r for r in explain(cfg)}
    assert rows["model"].value == "m" and not rows["model"].required
    assert rows["inner.beta"].value == 0.5
    assert rows["maybe"].value is None and not rows["maybe"].section and "maybe.beta" not in rows


def test_cli_print_config_explain_shows_overrides_and_descriptions() -> None:
    result = CliRunner().invoke(
        app, ["grpo", "--config", "tiny-grpo", "--set", "reward.beta=0.25", "--print-config", "--explain"]
    )
    assert result.exit_code == 0, result.output
    rows = {line.split("\t")[0]: line.split("\t") for line in result.output.splitlines()[1:]}
    assert rows["reward.beta"][1:3] == ["float", "0.25"]
    assert rows["reward.beta"][3].startswith("β of the open-ended reward")
    assert rows["reward"][2] == ""  # a section: its keys follow


def test_cli_explain_needs_print_config() -> None:
    result = CliRunner().invoke(app, ["grpo", "--explain"])
    assert result.exit_code == 2 and "--print-config" in result.output
