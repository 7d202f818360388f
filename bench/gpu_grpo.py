"""GRPO throughput of a Qwen2.5-VL-3B-shaped model on a GPU: tokens/s/GPU, step time, peak memory, MFU.

Runs offline with only torch, transformers and TRL installed (no ThinkFlow import, no weight download):
the model is randomly initialised from the published Qwen2.5-VL-3B-Instruct architecture numbers, the
tokenizer is a word-level stand-in with Qwen's special-token ids, and every completion is exactly
``--completion-length`` tokens (EOS suppressed until then), so the work per step is fixed. The settings are
the paper's per-GPU share (4 generations per prompt, two optimizer steps per rollout, KL 1e-3 against a
reference model, vision tower frozen, bf16, gradient checkpointing).

    python bench/gpu_grpo.py                       # one GPU, HF generate
    python bench/gpu_grpo.py --vllm                # colocated vLLM rollouts (vllm installed)
    torchrun --nproc-per-node 8 bench/gpu_grpo.py  # all GPUs of the machine
    python bench/gpu_grpo.py --size tiny --steps 2 # CPU smoke run of this script

tokens/s/GPU counts prompt (image tokens included) + completion tokens of every sequence per second of
wall time per GPU, as EasyR1/verl's ``perf/throughput`` does; EasyR1 publishes ~1800 tokens/s/GPU for
Qwen2.5-VL-3B on 8×H100 (vLLM rollouts). MFU counts the model FLOPs of a whole GRPO step — rollout
(prefill + decode), reference and old-policy log-probabilities, and the update (forward + backward) — over
the dense bf16 peak of the device (TRL's table).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

# Published Qwen2.5-VL architecture numbers (config.json of the Instruct checkpoints).
QWEN_SPECIAL = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|object_ref_start|>": 151646,
    "<|object_ref_end|>": 151647,
    "<|box_start|>": 151648,
    "<|box_end|>": 151649,
    "<|quad_start|>": 151650,
    "<|quad_end|>": 151651,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
}
SIZES: dict[str, dict[str, Any]] = {
    "3b": {
        "text": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                     num_key_value_heads=2, vocab_size=151936, rope_theta=1_000_000.0, mrope=[16, 24, 24]),
        "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                       window_size=112, fullatt_block_indexes=[7, 15, 23, 31]),
    },
    "7b": {
        "text": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                     num_key_value_heads=4, vocab_size=152064, rope_theta=1_000_000.0, mrope=[16, 24, 24]),
        "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                       window_size=112, fullatt_block_indexes=[7, 15, 23, 31]),
    },
    "tiny": {  # CPU smoke run of this script
        "text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, vocab_size=151936, rope_theta=10_000.0, mrope=[2, 3, 3]),
        "vision": dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                       window_size=112, fullatt_block_indexes=[1]),
    },
}  # fmt: skip
EASYR1_TOKENS_PER_S_PER_GPU = 1800.0  # Qwen2.5-VL-3B, 8×H100, EasyR1's published figure
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer."
)


def build_tokenizer(vocab_size: int) -> Any:
    """A word-level tokenizer with Qwen's special tokens at their ids (token ids do not matter for timing)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(min(QWEN_SPECIAL.values()))}
    vocab.update(QWEN_SPECIAL)
    for i in range(max(QWEN_SPECIAL.values()) + 1, vocab_size):
        vocab[f"x{i}"] = i
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(QWEN_SPECIAL)[1:],
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_processor(tokenizer: Any, image_size: int) -> Any:
    """Qwen2.5-VL processor without the video processor (transformers 5 needs torchvision for that one)."""
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.processing_utils import ProcessorMixin

    class ImageQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
        def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kw: Any):
            self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
            self.image_token_id, self.video_token_id = QWEN_SPECIAL["<|image_pad|>"], QWEN_SPECIAL["<|video_pad|>"]
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    pixels = image_size * image_size
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": pixels, "longest_edge": pixels}, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    return ImageQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def build_model(size: str, device: torch.device, dtype: torch.dtype) -> Any:
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    spec = SIZES[size]
    text = dict(spec["text"])
    mrope = text.pop("mrope")
    theta = text.pop("rope_theta")
    config = Qwen2_5_VLConfig(
        text_config=dict(
            **text,
            max_position_embeddings=128000,
            rms_norm_eps=1e-6,
            tie_word_embeddings=size != "7b",
            rope_parameters={"rope_type": "default", "rope_theta": theta, "mrope_section": mrope},
            bos_token_id=QWEN_SPECIAL["<|endoftext|>"],
            eos_token_id=QWEN_SPECIAL["<|im_end|>"],
            pad_token_id=QWEN_SPECIAL["<|endoftext|>"],
        ),
        vision_config=dict(**spec["vision"], patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=QWEN_SPECIAL["<|image_pad|>"],
        video_token_id=QWEN_SPECIAL["<|video_pad|>"],
        vision_start_token_id=QWEN_SPECIAL["<|vision_start|>"],
        vision_end_token_id=QWEN_SPECIAL["<|vision_end|>"],
        tie_word_embeddings=size != "7b",
    )
    torch.manual_seed(0)
    with device:
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config = GenerationConfig(
        eos_token_id=QWEN_SPECIAL["<|im_end|>"], pad_token_id=QWEN_SPECIAL["<|endoftext|>"]
    )
    return model


def build_dataset(n: int, image_size: int, prompt_words: int, seed: int) -> Any:
    from datasets import Dataset

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        noise = bytes(rng.getrandbits(8) for _ in range(image_size * image_size * 3))
        image = Image.frombytes("RGB", (image_size, image_size), noise)
        question = " ".join(f"w{rng.randint(1, 150000)}" for _ in range(prompt_words))
        rows.append(
            {
                "prompt": [
                    {"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
                ],
                "image": image,
                "id": str(i),
            }
        )
    return Dataset.from_list(rows)


def noisy_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """Rewards with variance (the advantages are not all zero); their values do not affect the timing."""
    return [random.random() for _ in completions]


def step_flops(model: Any, seq_len: int, sequences: int, images: int, patches_per_image: int, passes: dict) -> float:
    """Model FLOPs of one generation round (see the module docstring)."""
    from trl.trainer.utils import compute_flops_per_token

    text_cfg = model.config.get_text_config()
    forward_per_token = compute_flops_per_token(text_cfg, seq_len) / 3
    vision_params = sum(p.numel() for p in model.model.visual.parameters())
    vision_forward = 2 * vision_params * patches_per_image * images
    tokens = sequences * seq_len
    text = forward_per_token * tokens * (passes["forward"] + 3 * passes["train"])
    vision = vision_forward * (passes["forward"] + passes["train"])  # frozen tower: forward only when training
    return float(text + vision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="3b")
    parser.add_argument("--completion-length", type=int, default=512)
    parser.add_argument("--prompt-words", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=448, help="square images; 448 → 256 visual tokens")
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--per-device-batch", type=int, default=8, help="completions per micro-step")
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--updates-per-rollout", type=int, default=2, help="paper: 512 / 256 = 2")
    parser.add_argument("--warmup", type=int, default=2, help="optimizer steps not measured")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps measured")
    parser.add_argument("--beta", type=float, default=1e-3)
    parser.add_argument("--vllm", action="store_true", help="colocated vLLM rollouts (needs vllm)")
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()

    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    from trl.trainer.utils import get_peak_flops

    cuda = torch.cuda.is_available()
    if args.size != "tiny" and not cuda:
        raise SystemExit("no GPU: run with --size tiny for a CPU smoke run")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dtype = torch.bfloat16 if cuda else torch.float32
    steps_per_generation = args.grad_accum * args.updates_per_rollout
    total_steps = args.warmup + args.steps
    rounds = -(-total_steps // args.updates_per_rollout)
    prompts_per_round = args.per_device_batch * world * steps_per_generation // args.num_generations

    workdir = Path(tempfile.mkdtemp(prefix="gpu_grpo_"))
    t0 = time.perf_counter()
    tokenizer = build_tokenizer(SIZES[args.size]["text"]["vocab_size"])
    processor = build_processor(tokenizer, args.image_size)
    model = build_model(args.size, device, dtype)
    model.model.visual.requires_grad_(False)  # the paper trains the language model only
    if local_rank == 0:
        model.save_pretrained(workdir / "model")  # the reference model is loaded from this path
        processor.save_pretrained(workdir / "model")
    if world > 1:
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
        torch.distributed.barrier()
    model.config._name_or_path = str(workdir / "model")
    dataset = build_dataset(prompts_per_round * rounds, args.image_size, args.prompt_words, seed=0)
    setup_s = time.perf_counter() - t0

    config = GRPOConfig(
        output_dir=str(workdir / "out"),
        per_device_train_batch_size=args.per_device_batch,
        gradient_accumulation_steps=args.grad_accum,
        steps_per_generation=steps_per_generation,
        num_generations=args.num_generations,
        max_completion_length=args.completion_length,
        generation_kwargs={("min_tokens" if args.vllm else "min_new_tokens"): args.completion_length},
        temperature=0.8,
        beta=args.beta,
        learning_rate=1e-6,
        lr_scheduler_type="cosine",
        max_steps=total_steps,
        bf16=cuda,
        use_cpu=not cuda,
        activation_checkpointing=not args.no_gradient_checkpointing,
        use_vllm=args.vllm,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=0.35,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
        shuffle_dataset=False,
        disable_tqdm=True,
    )  # fmt: skip

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[tuple[int, float, int]] = []

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.marks.append((state.global_step, time.perf_counter(), int(state.num_input_tokens_seen)))

    clock = Clock()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=noisy_reward,
        args=config,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[clock],
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    marks = clock.marks
    if len(marks) <= args.warmup:
        raise SystemExit("not enough steps to measure")
    (_, t_begin, tok_begin), (_, t_end, tok_end) = marks[args.warmup - 1] if args.warmup else (0, start, 0), marks[-1]
    measured = len(marks) - args.warmup
    elapsed = t_end - t_begin
    step_s = elapsed / measured
    tokens_per_s_gpu = (tok_end - tok_begin) / elapsed / world  # num_input_tokens_seen counts all processes
    sequences = args.per_device_batch * steps_per_generation  # per GPU per round
    seq_len = (tok_end - tok_begin) / world / (measured / args.updates_per_rollout) / sequences
    patches = (args.image_size // 14) ** 2
    old_logps = steps_per_generation > args.grad_accum or args.vllm
    passes = {"forward": 1 + int(args.beta != 0) + int(old_logps), "train": 1}
    round_flops = step_flops(model, round(seq_len), sequences, sequences, patches, passes)
    flops_per_s_gpu = round_flops / (step_s * args.updates_per_rollout)
    peak = get_peak_flops(torch.cuda.get_device_name(device), "bfloat16") if cuda else None
    figures = {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "gpus": world,
        "size": args.size,
        "rollout": "vllm-colocate" if args.vllm else "hf-generate",
        "completion_length": args.completion_length,
        "tokens_per_sequence": round(seq_len, 1),
        "completions_per_gpu_per_rollout": sequences,
        "tokens_per_s_per_gpu": round(tokens_per_s_gpu, 1),
        "step_time_s": round(step_s, 3),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None,
        "mfu_percent": round(100 * flops_per_s_gpu / peak, 2) if peak else None,
        "vs_easyr1_1800": round(tokens_per_s_gpu / EASYR1_TOKENS_PER_S_PER_GPU, 3),
        "setup_s": round(setup_s, 1),
    }
    if local_rank == 0:
        for key, value in figures.items():
            print(f"{key:>32}: {value}")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
