"""Sampling throughput: batched `VLM.generate` vs a per-sample Hugging Face `generate` loop.

    .venv/bin/python benchmarks/generate.py --max-new-tokens 32 --out benchmarks/results/generate.json

Both sides sample from the same model object (loaded once, outside the timed regions) on the
same prompts: a rendered shapes scene and a question about it, as in shapes-qa. The peer is
what a user writes with plain transformers: for each prompt, the processor's chat template and
image processing, then `model.generate`. Ours is one `vlm.generate` call over the whole batch
(left padding, KV cache, the sampler's log-probs of every token, placeholders suppressed).

Sampling is the same on both sides (temperature 1, no top-k/top-p truncation). Generated
lengths are forced equal: the model's generation config gets min_new_tokens = max_new_tokens,
which masks the end-of-turn token until the last step, so every completion of both sides has
exactly max_new_tokens tokens (checked) and tokens/s compare like with like.
Prints a table with the ratio and writes JSON. Goal: ours >= 3x the loop at batch 32.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def prompts(count: int, seed: int) -> list[list[dict]]:
    from vlmrl.data_recipes.shapes import shapes_qa_records

    return [
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": record["image"]},
                    {"type": "text", "text": record["question"]},
                ],
            }
        ]
        for record in shapes_qa_records(count, seed=seed)
    ]


def hf_loop(vlm, conversations: list[list[dict]], max_new_tokens: int) -> list[int]:
    """The peer: one `model.generate` per prompt, as plain transformers code does it."""
    import torch

    lengths = []
    for conversation in conversations:
        text = vlm.processor.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        images = [part["image"] for part in conversation[0]["content"] if part["type"] == "image"]
        inputs = vlm.processor(text=[text], images=images, return_tensors="pt").to(vlm.device)
        with torch.no_grad():
            output = vlm.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                min_new_tokens=max_new_tokens,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=None,
            )
        lengths.append(output.shape[1] - inputs["input_ids"].shape[1])
    return lengths


def ours(vlm, conversations: list[list[dict]], max_new_tokens: int, seed: int) -> list[int]:
    from vlmrl.model import SamplingParams

    generations = vlm.generate(
        conversations, SamplingParams(max_new_tokens=max_new_tokens, temperature=1.0, seed=seed)
    )
    return [len(generation.token_ids) for generation in generations]


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def timed(function, repeats: int) -> tuple[float, list[int]]:
    """Median wall time over `repeats` runs (after one warm-up) and the last run's lengths."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        lengths = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="Model spec for VLM.load.")
    parser.add_argument(
        "--batch-sizes", default="1,8,32", help="Comma-separated numbers of prompts per measurement."
    )
    parser.add_argument("--max-new-tokens", type=int, default=32, help="Tokens generated per prompt.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per figure (median reported).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the prompts and of sampling.")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto.")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 on a shared machine: spinning threads on busy cores cost more than they give).",
    )
    parser.add_argument(
        "--out", default="benchmarks/results/generate.json", help="JSON file for the results."
    )
    arguments = parser.parse_args()

    import torch
    import transformers
    from rich.console import Console
    from rich.table import Table

    from vlmrl.model import VLM
    from vlmrl.runs import atomic_write_json

    torch.set_num_threads(arguments.threads)
    console = Console()
    vlm = VLM.load(arguments.model, device=arguments.device)
    # Equal lengths on both sides: the end-of-turn token is masked until max_new_tokens.
    vlm.model.generation_config.min_new_tokens = arguments.max_new_tokens
    batch_sizes = [int(size) for size in arguments.batch_sizes.split(",") if size]
    conversations = prompts(max(batch_sizes), arguments.seed)

    rows = []
    for batch_size in batch_sizes:
        batch = conversations[:batch_size]
        torch.manual_seed(arguments.seed)
        our_seconds, our_lengths = timed(
            lambda batch=batch: ours(vlm, batch, arguments.max_new_tokens, arguments.seed), arguments.repeats
        )
        torch.manual_seed(arguments.seed)
        peer_seconds, peer_lengths = timed(
            lambda batch=batch: hf_loop(vlm, batch, arguments.max_new_tokens), arguments.repeats
        )
        expected = [arguments.max_new_tokens] * batch_size
        if our_lengths != expected or peer_lengths != expected:
            raise RuntimeError(
                f"batch {batch_size}: generated lengths differ from max_new_tokens={arguments.max_new_tokens} "
                f"(ours {sorted(set(our_lengths))}, loop {sorted(set(peer_lengths))}); the comparison would be unfair"
            )
        tokens = batch_size * arguments.max_new_tokens
        rows.append(
            {
                "batch_size": batch_size,
                "tokens": tokens,
                "ours_seconds": our_seconds,
                "ours_tokens_per_second": tokens / our_seconds,
                "hf_loop_seconds": peer_seconds,
                "hf_loop_tokens_per_second": tokens / peer_seconds,
                "ratio": peer_seconds / our_seconds,
            }
        )
        console.print(
            f"batch {batch_size}: ours {tokens / our_seconds:.0f} tok/s, loop {tokens / peer_seconds:.0f} tok/s"
        )

    table = Table(
        title=f"vlm.generate vs per-sample HF generate ({arguments.model}, {arguments.max_new_tokens} new tokens, "
        f"{vlm.device}, {arguments.threads} thread(s))"
    )
    for column in ("batch", "ours tok/s", "HF loop tok/s", "ratio"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row["batch_size"]),
            f"{row['ours_tokens_per_second']:.0f}",
            f"{row['hf_loop_tokens_per_second']:.0f}",
            f"{row['ratio']:.2f}x",
        )
    console.print(table)
    largest = rows[-1]
    goal_met = largest["ratio"] >= 3.0
    console.print(f"goal (>= 3x at batch {largest['batch_size']}): {'met' if goal_met else 'NOT met'}")
    result = {
        "benchmark": "generate",
        "model": arguments.model,
        "parameters": vlm.parameter_count(),
        "max_new_tokens": arguments.max_new_tokens,
        "sampling": {"temperature": 1.0, "top_p": 1.0, "top_k": None, "lengths_forced_equal": True},
        "repeats": arguments.repeats,
        "device": str(vlm.device),
        "device_name": torch.cuda.get_device_name() if vlm.device.type == "cuda" else cpu_name(),
        "threads": arguments.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "rows": rows,
        "goal_ratio": 3.0,
        "goal_met": goal_met,
    }
    from vlmrl.model import precision

    result["cpu"] = precision.describe()
    console.print(precision.summary_line())
    atomic_write_json(arguments.out, result)
    console.print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()
