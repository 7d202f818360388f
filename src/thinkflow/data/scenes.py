"""Synthetic scenes drawn with PIL, with known answers for every verifier type.

The scenes of the embedded default dataset (`thinkflow.data.synthetic.generate`, the ``synthetic`` source) for
demos and tests: no download, no teacher, deterministic by seed, any size,
balanced across verifier types (scene ``i`` has type ``VERIFIER_ORDER[i % 5]``) and split into
``rl`` / ``sft`` / ``eval`` within each type. Images are small (112..224 px a side) so the tiny model stays fast.

| type | scene | question | solution |
|---|---|---|---|
| ``digit`` | 1-6 target shapes plus distractors | how many red circles / shapes in total | ``"3"`` |
| ``mcq`` | four shapes, one clearly largest | which shape (or colour) is the largest, options (A)-(D) | ``"B"`` |
| ``math`` | a rectangle or right triangle with labelled sides | area or perimeter | ``"28"`` / ``"7.5"`` |
| ``iou`` | a target shape among distractors | its box ``[x1, y1, x2, y2]``, relative | ``"[0.12, 0.3, 0.45, 0.7]"`` |
| ``open`` | 2-4 shapes | describe the shapes | a reference description |

Every record gets a ``response`` in ``<think>…</think><answer>…</answer>`` form (``responses=True``). The
responses of ``rl`` rows contain a reflective re-check (one of the paper's aha cues), those of ``sft`` and
``eval`` rows contain none, so the build's aha rule (step 6) agrees with the assigned splits.
"""

from __future__ import annotations

import io
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from thinkflow.format import format_response

VERIFIER_ORDER: tuple[str, ...] = ("digit", "mcq", "math", "iou", "open")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 90, 200),
    "yellow": (230, 190, 20),
    "purple": (148, 80, 189),
    "orange": (245, 127, 14),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "light grey": (232, 232, 232),
    "beige": (245, 239, 222),
}
SIZES: tuple[int, ...] = (112, 140, 168, 196, 224)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    cx: float
    cy: float
    r: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.cx - self.r, self.cy - self.r, self.cx + self.r, self.cy + self.r)

    def name(self) -> str:
        return f"{self.colour} {self.kind}"


@dataclass
class Scene:
    """One synthetic sample: what to draw, the question and its known answer."""

    index: int
    seed: int
    verifier_type: str
    width: int
    height: int
    background: str
    shapes: list[Shape] = field(default_factory=list)
    figure: dict[str, Any] | None = None  # math: {"kind": "rectangle"|"triangle", "a": int, "b": int}
    question: str = ""
    solution: str = ""
    reasoning: str = ""
    recheck: str = ""

    @property
    def id(self) -> str:
        return f"synthetic-s{self.seed}-{self.index:06d}"

    def render(self) -> Image.Image:
        im = Image.new("RGB", (self.width, self.height), BACKGROUNDS[self.background])
        draw = ImageDraw.Draw(im)
        for shape in self.shapes:
            _draw_shape(draw, shape)
        if self.figure is not None:
            _draw_figure(draw, self.figure, self.width, self.height)
        return im

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.render().save(buf, format="PNG", optimize=False)
        return buf.getvalue()

    def response(self, reflective: bool) -> str:
        reasoning = self.reasoning + (" " + self.recheck if reflective else "")
        return format_response(reasoning, self.solution)

    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "image_size": [self.width, self.height],
            "background": self.background,
            "shapes": [{"kind": s.kind, "colour": s.colour, "box": [round(v, 1) for v in s.box]} for s in self.shapes],
        }
        if self.figure is not None:
            out["figure"] = dict(self.figure)
        return out


def _draw_shape(draw: ImageDraw.ImageDraw, s: Shape) -> None:
    x1, y1, x2, y2 = s.box
    fill = COLOURS[s.colour]
    if s.kind == "circle":
        draw.ellipse((x1, y1, x2, y2), fill=fill)
    elif s.kind == "square":
        draw.rectangle((x1, y1, x2, y2), fill=fill)
    else:
        draw.polygon([(s.cx, y1), (x1, y2), (x2, y2)], fill=fill)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _draw_figure(draw: ImageDraw.ImageDraw, fig: dict[str, Any], width: int, height: int) -> None:
    x1, y1, x2, y2 = fig["px"]
    font = _font(fig["font"])
    if fig["kind"] == "rectangle":
        draw.rectangle((x1, y1, x2, y2), fill=(200, 225, 250), outline=(0, 0, 0), width=2)
    else:
        draw.polygon([(x1, y1), (x1, y2), (x2, y2)], fill=(250, 220, 200), outline=(0, 0, 0), width=2)
        draw.rectangle((x1, y2 - 7, x1 + 7, y2), outline=(0, 0, 0), width=1)  # right-angle mark
    a_text, b_text = str(fig["a"]), str(fig["b"])
    ax = (x1 + x2) / 2
    draw.text((ax, y2 + 3), a_text, fill=(0, 0, 0), font=font, anchor="mt")
    if fig["kind"] == "rectangle":
        draw.text((x2 + 3, (y1 + y2) / 2), b_text, fill=(0, 0, 0), font=font, anchor="lm")
    else:
        draw.text((x1 - 3, (y1 + y2) / 2), b_text, fill=(0, 0, 0), font=font, anchor="rm")


def _where(s: Shape, width: int, height: int) -> str:
    col = ("left", "center", "right")[min(2, int(3 * s.cx / width))]
    row = ("top", "middle", "bottom")[min(2, int(3 * s.cy / height))]
    if row == "middle":
        return "in the center" if col == "center" else f"on the {col}"
    return f"at the {row}" if col == "center" else f"at the {row} {col}"


def _size_word(s: Shape, width: int, height: int) -> str:
    rel = 2 * s.r / min(width, height)
    return "small" if rel < 0.17 else "medium-sized" if rel < 0.27 else "large"


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _place(
    rng: random.Random, width: int, height: int, specs: list[tuple[str, str, float]], gap: float = 4.0
) -> list[Shape] | None:
    """Non-overlapping shapes for ``(kind, colour, radius)`` specs, or ``None`` if they do not fit."""
    placed: list[Shape] = []
    for kind, colour, r in specs:
        for _ in range(300):
            cx = rng.uniform(r + 2, width - r - 2)
            cy = rng.uniform(r + 2, height - r - 2)
            cand = Shape(kind, colour, round(cx, 1), round(cy, 1), r)
            if all(
                abs(cand.cx - o.cx) >= cand.r + o.r + gap or abs(cand.cy - o.cy) >= cand.r + o.r + gap for o in placed
            ):
                placed.append(cand)
                break
        else:
            return None
    return placed


def _combos(rng: random.Random, k: int, exclude: tuple[str, str] | None = None) -> list[tuple[str, str]]:
    pool = [(kind, col) for kind in SHAPES for col in COLOURS if (kind, col) != exclude]
    rng.shuffle(pool)
    return pool[:k]


def _digit(scene: Scene, rng: random.Random) -> None:
    w, h = scene.width, scene.height
    unit = min(w, h)
    target = (rng.choice(SHAPES), rng.choice(list(COLOURS)))
    k = rng.randint(1, 6)
    n_distract = rng.randint(0, 3)
    total_mode = rng.random() < 0.3
    while True:
        r = unit * rng.uniform(0.055, 0.08)
        specs = [(target[0], target[1], r) for _ in range(k)]
        specs += [(kd, cl, r) for kd, cl in _combos(rng, n_distract, exclude=target)]
        shapes = _place(rng, w, h, specs)
        if shapes is not None:
            break
    scene.shapes = shapes
    if total_mode:
        n = len(shapes)
        scene.question = "How many shapes are there in the image in total?"
        scene.solution = str(n)
        listed = _join([f"{_article(s.colour)} {s.name()} {_where(s, w, h)}" for s in shapes])
        scene.reasoning = (
            f"I count every shape in the image, whatever its colour or kind: {listed}. "
            f"That is {NUMBER_WORDS[n] if n < 10 else n} shapes in total, so the answer is {n}."
        )
        scene.recheck = f"Wait, let me count again to double-check: going left to right I find {n} shapes. Yes, {n}."
        return
    name = f"{target[1]} {target[0]}"
    matches = shapes[:k]
    others = shapes[k:]
    found = _join([_where(s, w, h) for s in matches])
    other_txt = (
        f" The other shapes ({_join([_article(s.colour) + ' ' + s.name() for s in others])}) do not match."
        if others
        else ""
    )
    scene.question = f"How many {name}s are there in the image?"
    scene.solution = str(k)
    scene.reasoning = (
        f"I look for {name}s in the image. I find one {found}.{other_txt} Counting the matching shapes gives {k}."
        if k == 1
        else f"I look for {name}s in the image. I find them {found}.{other_txt} Counting the matching shapes gives {k}."
    )
    scene.recheck = f"Wait, let me count the {name}s again to double-check. I still find {k}, so the answer is {k}."


def _mcq(scene: Scene, rng: random.Random) -> None:
    w, h = scene.width, scene.height
    unit = min(w, h)
    combos = []
    colours = list(COLOURS)
    rng.shuffle(colours)
    for col in colours[:4]:
        combos.append((rng.choice(SHAPES), col))
    while True:
        big = unit * rng.uniform(0.14, 0.18)
        radii = [big] + [unit * rng.uniform(0.05, 0.09) for _ in range(3)]
        shapes = _place(rng, w, h, [(kd, cl, r) for (kd, cl), r in zip(combos, radii, strict=True)])
        if shapes is not None:
            break
    scene.shapes = shapes
    largest = shapes[0]
    order = list(range(4))
    rng.shuffle(order)
    letters = "ABCD"
    colour_mode = rng.random() < 0.5
    if colour_mode:
        options = [shapes[i].colour for i in order]
        scene.question = "What colour is the largest shape in the image?\n" + "\n".join(
            f"({letters[j]}) {opt}" for j, opt in enumerate(options)
        )
    else:
        options = [shapes[i].name() for i in order]
        scene.question = "Which shape is the largest in the image?\n" + "\n".join(
            f"({letters[j]}) {opt}" for j, opt in enumerate(options)
        )
    letter = letters[order.index(0)]
    scene.solution = letter
    sizes = _join([f"{_article(s.colour)} {s.name()} about {round(2 * s.r)} pixels across" for s in shapes])
    picked = largest.colour if colour_mode else largest.name()
    scene.reasoning = (
        f"The image has four shapes: {sizes}. The {largest.name()} is clearly the biggest. "
        f"Among the options, '{picked}' is ({letter})."
    )
    scene.recheck = (
        f"Wait, let me double-check the sizes: the {largest.name()} is about {round(2 * largest.r)} pixels across "
        f"and every other shape is much smaller. So ({letter}) is right."
    )


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _math(scene: Scene, rng: random.Random) -> None:
    w, h = scene.width, scene.height
    kind = rng.choice(("rectangle", "rectangle", "triangle"))
    a, b = rng.randint(2, 15), rng.randint(2, 15)
    margin = 26
    scale = min((w - 2 * margin) / a, (h - 2 * margin) / b)
    pw, ph = a * scale, b * scale
    x1 = (w - pw) / 2
    y1 = (h - ph) / 2 - 4
    scene.figure = {
        "kind": kind,
        "a": a,
        "b": b,
        "px": [round(x1, 1), round(y1, 1), round(x1 + pw, 1), round(y1 + ph, 1)],
        "font": max(11, min(w, h) // 11),
    }
    if kind == "rectangle" and rng.random() < 0.5:
        value: float = 2 * (a + b)
        scene.question = "The side lengths of the rectangle are written in the image. What is its perimeter?"
        scene.reasoning = (
            f"The rectangle's bottom side is labelled {a} and its right side is labelled {b}. "
            f"The perimeter of a rectangle is 2 × (width + height) = 2 × ({a} + {b}) = {_fmt(value)}."
        )
    elif kind == "rectangle":
        value = a * b
        scene.question = "The side lengths of the rectangle are written in the image. What is its area?"
        scene.reasoning = (
            f"The rectangle's bottom side is labelled {a} and its right side is labelled {b}. "
            f"The area of a rectangle is width × height = {a} × {b} = {_fmt(value)}."
        )
    else:
        value = a * b / 2
        scene.question = "The two legs of the right triangle are labelled in the image. What is the triangle's area?"
        scene.reasoning = (
            f"The right angle is at the bottom left. The bottom leg is labelled {a} and the left leg is labelled {b}. "
            f"The area of a right triangle is half the product of its legs: {a} × {b} / 2 = {_fmt(value)}."
        )
    scene.solution = _fmt(value)
    scene.recheck = (
        f"Wait, let me double-check the labels: {a} and {b}. Computing again gives {_fmt(value)}, the same result."
    )


def _iou(scene: Scene, rng: random.Random) -> None:
    w, h = scene.width, scene.height
    unit = min(w, h)
    target = (rng.choice(SHAPES), rng.choice(list(COLOURS)))
    n_distract = rng.randint(0, 3)
    while True:
        specs = [(target[0], target[1], unit * rng.uniform(0.08, 0.16))]
        specs += [(kd, cl, unit * rng.uniform(0.06, 0.12)) for kd, cl in _combos(rng, n_distract, exclude=target)]
        shapes = _place(rng, w, h, specs)
        if shapes is not None:
            break
    scene.shapes = shapes
    s = shapes[0]
    x1, y1, x2, y2 = s.box
    rel = [round(x1 / w, 3), round(y1 / h, 3), round(x2 / w, 3), round(y2 / h, 3)]
    scene.question = (
        f"Locate the {s.name()} in the image. Give its bounding box as [x1, y1, x2, y2] "
        "in relative coordinates between 0 and 1."
    )
    scene.solution = json.dumps(rel)
    scene.reasoning = (
        f"The {s.name()} is {_where(s, w, h)} of the image. Its left edge is at about {rel[0]:.0%} of the width "
        f"and its right edge at about {rel[2]:.0%}; its top is at about {rel[1]:.0%} of the height and its bottom "
        f"at about {rel[3]:.0%}. So the box is {scene.solution}."
    )
    scene.recheck = (
        f"Wait, let me double-check that this is the {s.name()} and not another shape: it is the only one of that "
        "colour and kind, so the box stands."
    )


def _open(scene: Scene, rng: random.Random) -> None:
    w, h = scene.width, scene.height
    unit = min(w, h)
    k = rng.randint(2, 4)
    while True:
        specs = [(kd, cl, unit * rng.uniform(0.06, 0.16)) for kd, cl in _combos(rng, k)]
        shapes = _place(rng, w, h, specs, gap=6)
        if shapes is not None:
            break
    scene.shapes = shapes
    parts = [f"{_article(_size_word(s, w, h))} {_size_word(s, w, h)} {s.name()} {_where(s, w, h)}" for s in shapes]
    scene.question = rng.choice(
        ("Describe the shapes in the image.", "What does the image show?", "Describe this image briefly.")
    )
    scene.solution = f"The image shows {NUMBER_WORDS[k]} shapes on a {scene.background} background: {_join(parts)}."
    scene.reasoning = (
        f"I go through the shapes one by one. The background is {scene.background}. "
        + " ".join(f"There is {p}." for p in parts)
        + f" That is {NUMBER_WORDS[k]} shapes, which I put together in one sentence."
    )
    scene.recheck = (
        f"Wait, let me check again that no shape is missing: I count {NUMBER_WORDS[k]}, the same as in my list."
    )


_MAKERS = {"digit": _digit, "mcq": _mcq, "math": _math, "iou": _iou, "open": _open}


def make_scene(index: int, seed: int = 0) -> Scene:
    """The ``index``-th scene of the synthetic set with ``seed`` (independent of any other index)."""
    rng = random.Random(f"thinkflow-synthetic:{seed}:{index}")
    vtype = VERIFIER_ORDER[index % len(VERIFIER_ORDER)]
    scene = Scene(
        index=index,
        seed=seed,
        verifier_type=vtype,
        width=rng.choice(SIZES),
        height=rng.choice(SIZES),
        background=rng.choice(list(BACKGROUNDS)),
    )
    _MAKERS[vtype](scene, rng)
    return scene


def assign_splits(n: int, seed: int, eval_fraction: float) -> list[str]:
    """Split of each index: per verifier type, ``round(eval_fraction * m)`` eval, the rest half sft, half rl."""
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    splits = [""] * n
    for t in range(len(VERIFIER_ORDER)):
        idx = list(range(t, n, len(VERIFIER_ORDER)))
        random.Random(f"thinkflow-synthetic-split:{seed}:{t}").shuffle(idx)
        n_eval = round(eval_fraction * len(idx))
        if eval_fraction > 0 and n_eval == 0 and len(idx) >= 3:
            n_eval = 1
        rest = idx[n_eval:]
        n_sft = math.ceil(len(rest) / 2)
        for i in idx[:n_eval]:
            splits[i] = "eval"
        for i in rest[:n_sft]:
            splits[i] = "sft"
        for i in rest[n_sft:]:
            splits[i] = "rl"
    return splits


def iter_scenes(n: int, seed: int = 0) -> Iterator[Scene]:
    """Scenes ``0..n-1`` (lazy: nothing is drawn until `Scene.png`)."""
    for i in range(n):
        yield make_scene(i, seed)
