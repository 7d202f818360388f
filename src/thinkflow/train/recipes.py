"""The training recipes the SFT-or-RL study compares: GRPO from the base model, SFT from the base model, and SFT
then GRPO from the SFT model (the ``recipes`` parameter of ``sft_vs_rl_study``, one ParallelFor item each)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# In the paper's order of presentation.
RECIPES: tuple[str, ...] = ("grpo", "sft", "sft_grpo")


def check_recipes(recipes: Sequence[Any] | None) -> None:
    """Fail the first task early, naming the value, when the study's ``recipes`` parameter is wrong."""
    if recipes is None:
        return
    recipes = list(recipes)
    if not recipes:
        raise ValueError(f"pipeline parameter 'recipes' is empty; choose from {', '.join(RECIPES)}")
    for recipe in recipes:
        if recipe not in RECIPES:
            raise ValueError(
                f"pipeline parameter 'recipes': unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}"
            )
    dupes = sorted({r for r in recipes if recipes.count(r) > 1})
    if dupes:
        raise ValueError(f"pipeline parameter 'recipes': {', '.join(dupes)} listed twice")
