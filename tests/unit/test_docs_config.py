"""docs/config.md is generated from the configs (`thinkflow docs config`), and every stage command is in it.

The table is the configs' own ``Field(description=...)`` texts, types and defaults (`thinkflow.config.explain`);
this test regenerates it and fails when the committed file differs, so the docs cannot drift from the code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from thinkflow.cli import app
from thinkflow.cli.docs import SAME_CONFIG, STAGE_CONFIGS, config_class, config_reference

DOCS = Path(__file__).resolve().parents[2] / "docs" / "config.md"
# What a command needs besides --print-config (no file is read: the command exits first); presets fill required keys.
REQUIRED_ARGS = {
    "data merge": ["shard0", "-o", "out"],
    "evaluate-merge": ["part0", "-o", "out"],
    "rewards score": ["in.jsonl", "-o", "out.jsonl"],
    "build": ["--config", "tiny-data"],
    "data build": ["--config", "tiny-data"],
    "data import-vlaa": ["--json", "VLAA-Thinking-SFT-126K.json", "--images", "img", "-o", "out"],
    "sft": ["--config", "tiny-sft"],
    "grpo": ["--config", "tiny-grpo"],
}


def print_config_commands() -> list[str]:
    """Every command of the app that takes --print-config, as typed (``data merge``)."""

    def walk(cmd: Any, path: list[str]) -> list[str]:  # typer's vendored click: a group has .commands
        if hasattr(cmd, "commands"):
            return [name for sub, c in cmd.commands.items() for name in walk(c, [*path, sub])]
        flags = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
        return [" ".join(path)] if "--print-config" in flags else []

    return sorted(walk(typer.main.get_command(app), []))


def test_docs_config_is_generated_from_the_configs() -> None:
    assert DOCS.read_text(encoding="utf-8") == config_reference(), (
        "docs/config.md is stale: run `thinkflow docs config -o docs/config.md` and commit it"
    )


def test_every_stage_command_is_documented() -> None:
    assert print_config_commands() == sorted([*STAGE_CONFIGS, *SAME_CONFIG])


@pytest.mark.parametrize("command", sorted([*STAGE_CONFIGS, *SAME_CONFIG]))
def test_explain_lists_the_keys_of_the_commands_config(command: str) -> None:
    """``--print-config --explain`` (piped: tab-separated) lists the top-level keys of the documented class."""
    result = CliRunner().invoke(app, [*command.split(), *REQUIRED_ARGS.get(command, []), "--print-config", "--explain"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "key\ttype\tvalue\tdescription"
    keys = [line.split("\t")[0] for line in lines[1:]]
    assert [k for k in keys if "." not in k] == list(config_class(SAME_CONFIG.get(command, command)).model_fields)
