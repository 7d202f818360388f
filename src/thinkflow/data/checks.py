"""Record-level checks shared by the build (step 1) and `thinkflow data validate`."""

from __future__ import annotations

import json
import math
from typing import Any

from thinkflow.rewards import VERIFIERS, check_solution


def known_verifier_types() -> tuple[str, ...]:
    """Verifier types with a reward (the rewards registry, `thinkflow.rewards.VERIFIERS`)."""
    return tuple(VERIFIERS)


def box_problem(solution: str, image_size: Any = None) -> str | None:
    """Why ``solution`` is not a valid ``[x1, y1, x2, y2]`` box, or ``None`` when it is.

    Boxes are JSON lists of four finite numbers with ``x1 < x2`` and ``y1 < y2``, in relative coordinates
    (all within [0, 1]) or in pixels (within the image when its size is known).
    """
    try:
        value = json.loads(solution)
    except (json.JSONDecodeError, TypeError):
        return f"not a JSON list [x1, y1, x2, y2]: {solution[:80]!r}"
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return f"expected four numbers [x1, y1, x2, y2], got {solution[:80]!r}"
    x1, y1, x2, y2 = (float(v) for v in value)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return "box has non-finite coordinates"
    if not (x1 < x2 and y1 < y2):
        return f"box {value} is empty or inverted (need x1 < x2 and y1 < y2)"
    if min(x1, y1) < 0:
        return f"box {value} has negative coordinates"
    if max(x2, y2) <= 1.0:
        return None
    if isinstance(image_size, list | tuple) and len(image_size) == 2:
        w, h = image_size
        if x2 > w or y2 > h:
            return f"pixel box {value} lies outside the {w}x{h} image"
    return None


def solution_problem(verifier_type: str, solution: str, image_size: Any = None) -> str | None:
    """Why ``solution`` is not a usable ground truth for ``verifier_type`` (``None`` when it is).

    Boxes are checked here (`box_problem`), then the rewards registry's own check (`check_solution`, e.g. an
    mcq gold that is no option letter).
    """
    if verifier_type == "iou":
        problem = box_problem(solution, image_size)
        if problem:
            return problem
    try:
        return check_solution(verifier_type, solution)
    except ValueError as exc:
        return str(exc)
