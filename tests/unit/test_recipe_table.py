"""docs/recipe.md: every row's paper-preset value equals what ``thinkflow <command> --config <paper preset>
--print-config`` prints, for every paper preset of that command (the CLI itself, in process)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from thinkflow.cli import app

RECIPE = Path(__file__).resolve().parents[2] / "docs" / "recipe.md"
PAPER_PRESETS = {
    "build": ["vlaa-distill-paper"],
    "sft": ["qwen2.5-vl-3b-sft"],
    "grpo": ["qwen2.5-vl-3b-grpo", "qwen2.5-vl-7b-grpo"],
    "evaluate": ["paper-eval"],
}
COLUMNS = ["Element", "Paper value", "Source", "ThinkFlow default", "Key", "Paper preset"]
_KEY = re.compile(r"^`(build|sft|grpo|evaluate): ([A-Za-z0-9_.]+)`$")


def recipe_rows() -> list[dict[str, str]]:
    """The table between the recipe-table markers, one dict per row (cells stripped)."""
    text = RECIPE.read_text(encoding="utf-8")
    body = text.split("<!-- recipe-table:start -->", 1)[1].split("<!-- recipe-table:end -->", 1)[0]
    lines = [line.strip() for line in body.strip().splitlines() if line.strip()]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == COLUMNS
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(COLUMNS), f"docs/recipe.md: row {line[:60]!r} has {len(cells)} cells"
        rows.append(dict(zip(COLUMNS, cells, strict=True)))
    return rows


_printed: dict[tuple[str, str], dict[str, Any]] = {}


def printed_config(command: str, preset: str) -> dict[str, Any]:
    if (command, preset) not in _printed:
        result = CliRunner().invoke(app, [command, "--config", preset, "--print-config"])
        assert result.exit_code == 0, result.output
        _printed[command, preset] = yaml.safe_load(result.output)
    return _printed[command, preset]


def lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def test_table_has_the_documented_shape_and_rows() -> None:
    rows = recipe_rows()
    assert len(rows) >= 20
    for row in rows:
        assert _KEY.match(row["Key"]), f"docs/recipe.md: key {row['Key']!r} is not `<command>: <dotted.key>`"
        assert row["Paper preset"].startswith("`") and row["Paper preset"].endswith("`"), row
    # where the paper is silent, the table says so
    silent = {r["Key"] for r in rows if r["Paper value"] == "not stated in the paper"}
    assert {"`grpo: reward.beta`", "`grpo: learning_rate`"} <= silent


@pytest.mark.parametrize("row", recipe_rows(), ids=lambda r: r["Key"].strip("`"))
def test_paper_preset_column_is_what_print_config_prints(row: dict[str, str]) -> None:
    m = _KEY.match(row["Key"])
    assert m is not None
    command, key = m.groups()
    expected = yaml.safe_load(row["Paper preset"].strip("`"))
    for preset in PAPER_PRESETS[command]:
        actual = lookup(printed_config(command, preset), key)
        assert actual == expected, f"{command} --config {preset}: {key} is {actual!r}, docs/recipe.md says {expected!r}"
