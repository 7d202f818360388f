from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from thinkflow.cli import app

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("tiny-model", "ask", "data", "rewards", "models"):
        assert cmd in result.output


def test_tiny_model_then_ask(tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "m"
    result = runner.invoke(app, ["tiny-model", str(out), "--family", "qwen2-vl", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert (out / "config.json").exists() and (out / "processor_config.json").exists()
    img = tmp_path / "x.png"
    Image.new("RGB", (64, 64), "blue").save(img)
    result = runner.invoke(app, ["ask", str(out), "--image", str(img), "--question", "Color?", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert "A:" in result.output


def test_tiny_model_bad_family(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tiny-model", str(tmp_path), "--family", "llava"])
    assert result.exit_code != 0
