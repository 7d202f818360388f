"""Benchmark: ThinkFlow's mixed reward vs TRL's ``accuracy_reward`` and raw math-verify, in one run.

One deterministic corpus of GRPO-shaped rollouts (prompts × ``--group`` completions; math and MCQ; correct
answers in equivalent forms, wrong answers, format failures) is scored by three contenders, each in its own
fresh process (so no contender warms another's caches):

- ``trl``: ``trl.rewards.accuracy_reward`` on the whole completion, as a TRL user would call it;
- ``raw``: raw math-verify on the extracted ``<answer>`` content (``verify(parse(gold), parse(answer))`` with
  bare LaTeX wrapped in ``$…$``): the semantics ThinkFlow's ``math`` verifier implements, without its fast
  paths, caches or worker pool;
- ``ours``: ``thinkflow.rewards.MixedReward`` (TRL's reward-function call, batches of one GRPO step).

Throughput per core = completions / CPU seconds (the contender's process plus, for ours, its math-verify
worker processes; worker start-up excluded, as in training where the pool is started once). Then the
verdict agreement of ours with raw math-verify and with TRL, every disagreement listed with its cause.

    python bench/rewards.py [--prompts 750] [--group 8] [--workers 2] [--seed 0] [--list-trl]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

# ---------------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------------

WORDS = [
    "first", "count", "the", "shapes", "then", "compare", "lengths", "so", "side", "is", "wait", "let", "me",
    "check", "again", "area", "of", "triangle", "half", "base", "times", "height", "which", "gives", "us",
]


@dataclass
class Item:
    prompt: int
    verifier_type: str
    solution: str
    completion: str
    kind: str  # how the completion was made (for explanations)


def _reasoning(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(15, 60))]
    for _ in range(rng.randint(0, 3)):
        words.insert(rng.randrange(len(words)), str(rng.randint(1, 99)))
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words)), f"$\\frac{{{rng.randint(1, 9)}}}{{{rng.randint(2, 9)}}}$")
    return " ".join(words)


def _math_problem(rng: random.Random) -> tuple[str, list[str], list[str]]:
    """A gold answer, equivalent forms of it, and wrong answers."""
    family = rng.choices(
        ["int", "frac", "decimal", "sqrt", "pi", "expr", "degree", "interval", "neg", "approx", "set", "trig"],
        weights=[26, 16, 10, 10, 6, 10, 8, 4, 6, 4, 3, 2],
    )[0]
    if family == "int":
        n = rng.randint(0, 500)
        return str(n), [str(n), f"{n}.0", f"x = {n}", f"{n}^\\circ" if n < 360 else str(n)], \
            [str(n + 1), str(abs(n - 1)), f"{n}1", str(2 * n + 3)]
    if family == "frac":
        p, q = rng.randint(1, 12), rng.randint(2, 13)
        if p % q == 0:
            q += 1
        k = rng.randint(2, 4)
        forms = [f"\\frac{{{p}}}{{{q}}}", f"\\frac{{{k * p}}}{{{k * q}}}", f"{p}/{q}", f"\\dfrac{{{p}}}{{{q}}}"]
        if q in (2, 4, 5, 8, 10):
            forms.append(str(p / q))
        if p < 10 and q < 10:
            forms.append(f"\\frac{p}{q}")
        return f"\\frac{{{p}}}{{{q}}}", forms, [f"\\frac{{{q}}}{{{p}}}", f"\\frac{{{p + 1}}}{{{q}}}", f"{p}.{q}"]
    if family == "decimal":
        v = rng.randint(1, 999) / 4
        return f"{v}", [f"{v}", f"{v:.3f}", f"\\frac{{{int(v * 4)}}}{{4}}"], [f"{v + 0.5}", f"{v / 2}", f"{v * 10}"]
    if family == "sqrt":
        a, b = rng.randint(2, 6), rng.choice([2, 3, 5, 6, 7])
        return f"{a}\\sqrt{{{b}}}", [f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}", f"{a} \\sqrt{{{b}}}"], \
            [f"\\sqrt{{{b}}}", f"{a}\\sqrt{{{b + 1}}}", f"{a * b}", f"{a + 1}\\sqrt{{{b}}}"]
    if family == "pi":
        k = rng.randint(2, 9)
        return f"{k}\\pi", [f"{k}\\pi", f"{k} \\pi", f"\\pi \\cdot {k}", f"\\frac{{{2 * k}\\pi}}{{2}}"], \
            [f"{k + 1}\\pi", f"{2 * k * 3.14:.2f}", f"\\frac{{{k}}}{{\\pi}}"]
    if family == "expr":
        a, b = rng.randint(2, 9), rng.randint(1, 9)
        return f"{a}x + {b}", [f"{a}x + {b}", f"{b} + {a}x", f"{a}x+{b}"], \
            [f"{a}x - {b}", f"{b}x + {a}", f"{a}x^2 + {b}"]
    if family == "degree":
        d = rng.choice([30, 45, 60, 90, 120, 135, 150])
        return f"{d}^\\circ", [f"{d}^\\circ", f"{d}", f"{d}^{{\\circ}}", f"{d}°"], \
            [f"{180 - d}^\\circ", f"{d // 2}", f"{d + 10}^\\circ"]
    if family == "interval":
        lo, hi = rng.randint(-5, 0), rng.randint(1, 9)
        wrong = [f"({lo}, {hi})", f"[{lo}, {hi}]", f"[{lo}, {hi + 1})"]
        return f"[{lo}, {hi})", [f"[{lo}, {hi})", f"[{lo},{hi})"], wrong
    if family == "neg":
        n = rng.randint(1, 60)
        return f"-{n}", [f"-{n}", f"- {n}", f"-{n}.0"], [str(n), f"-{n + 1}"]
    if family == "set":
        a, b = sorted(rng.sample(range(-9, 10), 2))
        return f"\\{{{a}, {b}\\}}", [f"\\{{{a}, {b}\\}}", f"\\{{{b}, {a}\\}}", f"\\{{{a},{b}\\}}"], \
            [f"\\{{{a}, {b + 1}\\}}", f"\\{{{a}\\}}", f"\\{{{a - 1}, {b}\\}}"]
    if family == "trig":
        k = rng.randint(2, 5)
        return f"{k}\\sin x", [f"{k}\\sin x", f"{k}\\sin(x)", f"\\sin(x) \\cdot {k}"], \
            [f"{k}\\cos x", f"{k + 1}\\sin x", f"\\sin {k}x"]
    p, q = rng.choice([(1, 3), (2, 3), (1, 6), (5, 6), (1, 7)])
    return f"\\frac{{{p}}}{{{q}}}", [f"{p / q:.6f}", f"\\frac{{{p}}}{{{q}}}"], [f"{p / q:.2f}", f"{p / q:.4f}"]


MCQ_FORMS = [("{L}", 40), ("({L})", 20), ("\\boxed{{{L}}}", 10), ("{L}.", 8), ("{L}) {text}", 10),
             ("Option {L}", 5), ("{l}", 4), ("The answer is {L}", 3)]


def _present(rng: random.Random, answer: str) -> tuple[str, str]:
    r = rng.random()
    if r < 0.60:
        return answer, "bare"
    if r < 0.75:
        return f"${answer}$", "dollars"
    if r < 0.90:
        return f"\\boxed{{{answer}}}", "boxed"
    return f"The answer is ${answer}$.", "sentence"


def _wrap(rng: random.Random, shown: str, kind: str) -> tuple[str, str]:
    r = rng.random()
    think = _reasoning(rng)
    if r < 0.03:
        return f"<think>{think} so the answer is {shown}</think>", "format:no-answer"
    if r < 0.04:
        return f"<think>{think}</think><answer>{shown}", "format:unclosed"
    if r < 0.05:
        return f"{think} the answer is \\boxed{{{shown}}}", "format:no-tags"
    return f"<think>{think}</think>\n<answer>{shown}</answer>", kind


def make_corpus(n_prompts: int, group: int, seed: int) -> list[Item]:
    rng = random.Random(seed)
    items: list[Item] = []
    for p in range(n_prompts):
        if rng.random() < 0.7:
            gold, right, wrong = _math_problem(rng)
            p_right = rng.choice([0.2, 0.5, 0.8])
            for _ in range(group):
                good = rng.random() < p_right
                answer = rng.choice(right if good else wrong)
                shown, how = _present(rng, answer)
                completion, kind = _wrap(rng, shown, f"{'right' if good else 'wrong'}:{how}")
                items.append(Item(p, "math", gold, completion, kind))
        else:
            letters = "ABCDE"
            gold_letter = rng.choice(letters)
            gold = gold_letter if rng.random() < 0.6 else f"({gold_letter})"
            for _ in range(group):
                letter = gold_letter if rng.random() < 0.55 else rng.choice(letters)
                form = rng.choices([f for f, _ in MCQ_FORMS], weights=[w for _, w in MCQ_FORMS])[0]
                shown = form.format(L=letter, l=letter.lower(), text="the blue one")
                completion, kind = _wrap(rng, shown, f"mcq:{form}")
                items.append(Item(p, "mcq", gold, completion, kind))
    return items


# ---------------------------------------------------------------------------------------------------
# Contenders (each runs in a fresh spawned process)
# ---------------------------------------------------------------------------------------------------


def _children_cpu() -> float:
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _batches(items: list[Item], size: int) -> list[list[Item]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _run_trl(items: list[Item], batch: int) -> list[float | None]:
    import logging

    from trl.rewards import accuracy_reward

    logging.disable(logging.WARNING)
    out: list[float | None] = []
    for chunk in _batches(items, batch):
        out.extend(accuracy_reward([[{"role": "assistant", "content": it.completion}] for it in chunk],
                                   [it.solution for it in chunk]))
    return out


def _run_raw(items: list[Item], batch: int) -> list[float | None]:
    import logging

    from math_verify import parse, verify

    from thinkflow.rewards.extract import extract_answer
    from thinkflow.rewards.math_fast import prepare

    logging.disable(logging.WARNING)
    out: list[float | None] = []
    for it in items:
        answer = extract_answer(it.completion)
        if answer is None:
            out.append(0.0)
            continue
        out.append(float(verify(parse(prepare(it.solution)), parse(prepare(answer)))))
    return out


def _run_ours(items: list[Item], batch: int, workers: int) -> tuple[list[float | None], dict[str, int]]:
    from thinkflow.rewards import MixedReward, RewardConfig

    reward = MixedReward(RewardConfig(math_workers=workers))
    out: list[float | None] = []
    for chunk in _batches(items, batch):
        out.extend(reward(prompts=[""] * len(chunk), completions=[it.completion for it in chunk],
                          solution=[it.solution for it in chunk], verifier_type=[it.verifier_type for it in chunk]))
    return out, dict(reward.math.stats)


def _contender(name: str, items: list[Item], batch: int, workers: int, queue: Any) -> None:
    # every import outside the timed region, for every contender
    from math_verify import parse, verify
    from trl.rewards import accuracy_reward

    import thinkflow.rewards  # noqa: F401
    from thinkflow.rewards.math_pool import get_pool

    stats: dict[str, int] = {}
    # Warm-up outside the timed region, on inputs that are not in the corpus.
    if name == "trl":
        accuracy_reward([[{"role": "assistant", "content": "\\boxed{1}"}]], ["$1$"])
    elif name == "raw":
        verify(parse("$1$"), parse("$1$"))
    else:
        get_pool(workers).start()  # training starts the pool once; its start-up is not per-step work
    child0, cpu0, wall0 = _children_cpu(), time.process_time(), time.perf_counter()
    if name == "trl":
        verdicts = _run_trl(items, batch)
    elif name == "raw":
        verdicts = _run_raw(items, batch)
    else:
        verdicts, stats = _run_ours(items, batch, workers)
    wall = time.perf_counter() - wall0
    own, workers_cpu = time.process_time() - cpu0, _children_cpu() - child0
    stats = {**stats, "cpu_ms_own": round(1000 * own), "cpu_ms_workers": round(1000 * workers_cpu)}
    queue.put((name, verdicts, wall, own + workers_cpu, stats))


# ---------------------------------------------------------------------------------------------------
# Explanations
# ---------------------------------------------------------------------------------------------------


def explain_vs_raw(it: Item, ours: float, raw: float) -> str:
    if it.verifier_type == "mcq":
        return ("intended: the mcq verifier accepts this option form (issue 3); math-verify reads it as "
                "algebra (e.g. 'Option C' = O·p·t·i·o·n·C)")
    return "UNEXPLAINED"


def explain_vs_trl(it: Item, ours: float, trl: float | None) -> str:
    from math_verify import parse

    from thinkflow.rewards import extract_answer
    from thinkflow.rewards.math_fast import prepare

    answer = extract_answer(it.completion)
    if trl is None:
        return "TRL skips the sample: it parses the gold as is, and bare LaTeX/letters without $…$ do not parse"
    if answer is None:
        return "implicit format reward: no <answer> block, so 0 (TRL scores a \\boxed{} anywhere)"
    if it.verifier_type == "mcq":
        return "intended: mcq option forms are the mcq verifier's; TRL has math-verify only"
    if ours > trl:
        if not any(d in answer for d in ("$", "\\boxed")):
            return "TRL extracts only \\boxed{} or $…$ (try_extract_without_anchor=False); the answer is bare"
        if str(parse(it.solution)) != str(parse(prepare(it.solution))):
            return "TRL parses the gold as written: bare LaTeX is misread without $…$ (e.g. 5\\sqrt{3} as 5)"
        return "TRL's units=True normalization or first-match extraction misreads the answer"
    return "UNEXPLAINED"


# ---------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=750)
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (GRPO num_generations)")
    parser.add_argument("--batch", type=int, default=64, help="completions per reward call (one GRPO step)")
    parser.add_argument("--workers", type=int, default=2, help="math-verify worker processes for ours")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list-trl", action="store_true", help="list every disagreement with TRL too")
    args = parser.parse_args()

    items = make_corpus(args.prompts, args.group, args.seed)
    kinds = Counter(it.verifier_type for it in items)
    print(f"corpus: {len(items)} completions ({kinds['math']} math, {kinds['mcq']} mcq), {args.prompts} prompts x "
          f"{args.group}, seed {args.seed}; batches of {args.batch}; machine: {platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")

    ctx = mp.get_context("spawn")
    results: dict[str, tuple[list[float | None], float, float, dict[str, int]]] = {}
    for name in ("trl", "raw", "ours"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_contender, args=(name, items, args.batch, args.workers, queue))
        proc.start()
        got = queue.get()
        proc.join()
        results[got[0]] = (got[1], got[2], got[3], got[4])

    labels = {"trl": "TRL accuracy_reward", "raw": "raw math-verify", "ours": "ThinkFlow MixedReward"}
    print(f"\n{'contender':24} {'wall s':>8} {'cpu s':>8} {'items/s':>10} {'items/cpu-s':>12}")
    per_core = {}
    for name in ("trl", "raw", "ours"):
        _, wall, cpu, _ = results[name]
        per_core[name] = len(items) / cpu
        print(f"{labels[name]:24} {wall:8.2f} {cpu:8.2f} {len(items) / wall:10.0f} {per_core[name]:12.0f}")
    print(f"\nthroughput per core: ours / TRL = {per_core['ours'] / per_core['trl']:.1f}x, "
          f"ours / raw math-verify = {per_core['ours'] / per_core['raw']:.1f}x")
    print(f"ours, how items were decided: {results['ours'][3]}")

    ours, raw, trl = results["ours"][0], results["raw"][0], results["trl"][0]
    dis_raw = [(i, it) for i, it in enumerate(items) if ours[i] != raw[i]]
    causes_raw = Counter(explain_vs_raw(it, ours[i] or 0.0, raw[i] or 0.0) for i, it in dis_raw)
    math_idx = [i for i, it in enumerate(items) if it.verifier_type == "math"]
    math_agree = sum(ours[i] == raw[i] for i in math_idx) / len(math_idx)
    unexplained = causes_raw.get("UNEXPLAINED", 0)
    print(f"\nagreement with raw math-verify: {100 * (1 - len(dis_raw) / len(items)):.2f}% of all "
          f"({len(dis_raw)} disagreements); math items {100 * math_agree:.3f}%; "
          f"unexplained {unexplained} -> {100 * (1 - unexplained / len(items)):.3f}% agreement on the shared semantics")
    for cause, count in causes_raw.most_common():
        print(f"  {count:5d}  {cause}")
    print("every disagreement with raw math-verify (index, type, gold, answer, ours, raw, cause):")
    from thinkflow.rewards import extract_answer

    for i, it in dis_raw:
        cause = explain_vs_raw(it, ours[i] or 0.0, raw[i] or 0.0)
        print(f"  #{i} {it.verifier_type} gold={it.solution!r} answer={extract_answer(it.completion)!r} "
              f"ours={ours[i]} raw={raw[i]}  [{'UNEXPLAINED' if cause == 'UNEXPLAINED' else cause.split(':')[0]}]")

    dis_trl = [(i, it) for i, it in enumerate(items) if (trl[i] if trl[i] is not None else None) != ours[i]]
    causes_trl = Counter(explain_vs_trl(it, ours[i] or 0.0, trl[i]) for i, it in dis_trl)
    print(f"\nagreement with TRL accuracy_reward: {100 * (1 - len(dis_trl) / len(items)):.2f}% "
          f"({len(dis_trl)} disagreements), by cause:")
    for cause, count in causes_trl.most_common():
        examples = [i for i, it in dis_trl if explain_vs_trl(it, ours[i] or 0.0, trl[i]) == cause][:2]
        shown = "; ".join(f"#{i} gold={items[i].solution!r} answer={extract_answer(items[i].completion)!r} "
                          f"ours={ours[i]} trl={trl[i]}" for i in examples)
        print(f"  {count:5d}  {cause}\n         e.g. {shown}")
    if args.list_trl:
        for i, it in dis_trl:
            print(f"  #{i} {it.verifier_type} gold={it.solution!r} answer={extract_answer(it.completion)!r} "
                  f"ours={ours[i]} trl={trl[i]}  [{explain_vs_trl(it, ours[i] or 0.0, trl[i])}]")


if __name__ == "__main__":
    main()
