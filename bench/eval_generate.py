"""Benchmark: batched HF ``generate`` for evaluation (``thinkflow.evaluate.generate.generate``) vs one by one.

The tiny random Qwen2.5-VL (built offline) answers the same ``--samples`` image questions with greedy decoding
and ``--max-new-tokens`` at each batch size, in one process, after one warm-up pass. Prints samples per second,
the speed-up over batch size 1, and how many answers are identical to the unbatched ones (left padding can
move greedy ties in float32).

    python bench/eval_generate.py [--samples 32] [--max-new-tokens 32] [--batch-sizes 1,4,8,16]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch
from PIL import Image, ImageDraw

from thinkflow.evaluate.generate import generate
from thinkflow.models.load import load
from thinkflow.models.tiny import build_tiny


def pictures(n: int) -> list[Image.Image]:
    out = []
    for i in range(n):
        size = 56 + 28 * (i % 3)  # different image sizes -> different prompt lengths in a batch
        im = Image.new("RGB", (size, size), "white")
        draw = ImageDraw.Draw(im)
        for k in range(i % 4 + 1):
            draw.ellipse((4 + 12 * k, 20, 14 + 12 * k, 30), fill=("red", "green", "blue")[i % 3])
        out.append(im)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-sizes", default="1,4,8,16")
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model, processor = load(build_tiny(f"{tmp}/tiny"), device="cpu")
        images = pictures(args.samples)
        questions = [f"Question {i}: how many circles are there, and which colour?" for i in range(len(images))]
        generate(model, processor, images[:2], questions[:2], max_new_tokens=4, batch_size=2)  # warm-up
        results = {}
        for bs in sizes:
            start = time.perf_counter()
            texts = generate(model, processor, images, questions, max_new_tokens=args.max_new_tokens, batch_size=bs)
            results[bs] = (time.perf_counter() - start, texts)
    base_time, base_texts = results[sizes[0]]
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"# {args.samples} samples, greedy, max_new_tokens={args.max_new_tokens}")
    print(f"{'batch':>5} {'seconds':>8} {'samples/s':>10} {'speed-up':>9} {'same answers':>13}")
    for bs in sizes:
        seconds, texts = results[bs]
        same = sum(a == b for a, b in zip(texts, base_texts, strict=True))
        rate, speedup = args.samples / seconds, base_time / seconds
        print(f"{bs:>5} {seconds:>8.2f} {rate:>10.1f} {speedup:>8.2f}x {same:>6}/{len(texts)}")


if __name__ == "__main__":
    main()
