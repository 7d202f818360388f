"""``iou``: the intersection over union of the predicted and ground-truth boxes, in [0, 1] (no threshold).

A box is ``[x1, y1, x2, y2]`` written as a JSON list (``[10, 20, 30, 40]``), nested (``[[10, 20, 30, 40]]``),
Qwen2.5-VL grounding JSON (``[{"bbox_2d": [10, 20, 30, 40], "label": "cat"}]``), a dict with ``bbox`` /
``box`` / ``bbox_2d``, or plain text (the first four numbers, e.g. ``(10, 20), (30, 40)`` or
``x1=10, y1=20, x2=30, y2=40``). Coordinates are relative (all within [0, 1]) or pixels; the prediction
is compared in the ground truth's frame. When the two frames differ and the image size is known
(``image_size=(width, height)``), the prediction is converted to the ground truth's frame.

Malformed boxes score 0: other than exactly four numbers (a JSON list of five, or text naming five
numbers, is no box), NaN or infinite coordinates, ``x2 < x1`` or ``y2 < y1``, relative and pixel
coordinates mixed (``[0.2, 0.3, 1.7, 0.9]``; such a ground truth is rejected by `check_iou_solution`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from thinkflow.format import strip_wrappers

Box = tuple[float, float, float, float]

MAX_CHARS = 4096
_NUMBER = re.compile(
    r"(?<![A-Za-z_\d.])[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf(?:inity)?)",
    re.IGNORECASE,
)
_BOX_KEYS = ("bbox_2d", "bbox", "box", "box_2d")


def _from_json(value: Any, depth: int = 0) -> list[float] | None:
    if depth > 4:
        return None
    if isinstance(value, dict):
        for key in _BOX_KEYS:
            if key in value:
                return _from_json(value[key], depth + 1)
        return None
    if isinstance(value, list | tuple):
        if len(value) == 4 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            try:
                return [float(v) for v in value]
            except OverflowError:
                return None
        if len(value) == 2 and all(isinstance(v, list | tuple) and len(v) == 2 for v in value):
            flat = [v for pair in value for v in pair]
            return _from_json(flat, depth + 1)
        if value:
            return _from_json(value[0], depth + 1)
    return None


def parse_box(value: Any) -> Box | None:
    """Parse a box from JSON-like data or text; ``None`` when there is no valid box."""
    numbers: list[float] | None = None
    if isinstance(value, str):
        text = strip_wrappers(value[: 2 * MAX_CHARS])[:MAX_CHARS]
        if text[:1] in "[{":
            try:
                numbers = _from_json(json.loads(text))
            except (ValueError, RecursionError):
                numbers = None
        if numbers is None:
            found = []
            for match in _NUMBER.finditer(text):
                try:
                    found.append(float(match.group()))
                except ValueError:
                    break
                if len(found) > 4:  # a fifth number: not a box
                    break
            numbers = found if len(found) == 4 else None
    elif isinstance(value, list | tuple | dict):
        numbers = _from_json(value)
    if numbers is None:
        return None
    x1, y1, x2, y2 = numbers
    if not all(math.isfinite(v) for v in numbers) or x2 < x1 or y2 < y1:
        return None
    return (x1, y1, x2, y2)


def is_relative(box: Box) -> bool:
    """Whether a box is in relative coordinates (every coordinate within [0, 1])."""
    return all(0.0 <= v <= 1.0 for v in box)


def to_frame(box: Box, relative: bool, image_size: Sequence[float] | None) -> Box:
    """``box`` converted to relative (``relative=True``) or pixel coordinates when the image size is known."""
    if image_size is None or is_relative(box) == relative:
        return box
    try:
        width, height = float(image_size[0]), float(image_size[1])
    except (TypeError, ValueError, IndexError):
        return box
    if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        return box
    x1, y1, x2, y2 = box
    if relative:
        return (x1 / width, y1 / height, x2 / width, y2 / height)
    return (x1 * width, y1 * height, x2 * width, y2 * height)


def box_iou(a: Box, b: Box) -> float:
    """IoU of two valid boxes, in [0, 1] (0 when the union is empty)."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(ix, 0.0) * max(iy, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    if not (union > 0 and math.isfinite(union) and math.isfinite(inter)):
        return 0.0
    return min(max(inter / union, 0.0), 1.0)


def iou_reward(answer: str | None, solution: Any, image_size: Sequence[float] | None = None) -> float:
    """The IoU of the answer's box with the ground-truth box, in [0, 1]; 0 for a missing or invalid box."""
    if answer is None:
        return 0.0
    gold = parse_box(solution)
    pred = parse_box(answer)
    if gold is None or pred is None or mixed_frame(gold) or mixed_frame(pred):  # malformed boxes never score
        return 0.0
    pred = to_frame(pred, is_relative(gold), image_size)
    return box_iou(gold, pred)


def mixed_frame(box: Box) -> bool:
    """Whether a box mixes relative and pixel coordinates: a fraction in (0, 1) beside a coordinate above 1.

    ``[0.2, 0.3, 1.7, 0.9]`` is neither a relative box (1.7 > 1) nor a plausible pixel box (sub-pixel
    corners); reading it as pixels would score a wrong region, so a ground truth like it is rejected.
    """
    return any(v > 1.0 for v in box) and any(0.0 < v < 1.0 for v in box)


def check_iou_solution(solution: Any) -> str | None:
    """A problem with an ``iou`` ground truth (not a valid box, or mixed frames), or ``None`` when it is usable."""
    box = parse_box(solution)
    if box is None:
        return (
            f"iou solution must be a box [x1, y1, x2, y2] (four numbers) with x1 <= x2 and y1 <= y2, got {solution!r}"
        )
    if mixed_frame(box):
        return (
            f"iou solution {solution!r} mixes relative (within [0, 1]) and pixel coordinates; "
            "write all four relative or all four in pixels"
        )
    return None
