"""Evaluation throughput: our harness vs lmms-eval, same model, same task, same process.

    .venv/bin/python benchmarks/eval_throughput.py --docs 64 --batch-size 32 --out runs/bench/eval_throughput

Both sides answer the same shapes-qa documents greedily with the same weights (loaded once,
outside the timed region). The peer is lmms-eval 0.7.3 with its own `qwen2_5_vl` model class
when that class can load our saved checkpoint offline; otherwise (its module needs `decord`,
which is not installed here) lmms-eval runs our `vlmrl` adapter at batch size 1, which is what a
user gets from `lmms-eval --model vlmrl` by default. Timed regions: our `evaluate` (documents
rendered, generated, scored, bootstrap intervals, files written) vs lmms-eval's
`simple_evaluate` (dataset loaded from disk, requests built, generated, scored).
Prints a table and writes results.json. Goal: ours >= 3x.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def peer_model(vlm, checkpoint: Path, batch_size: int):
    """lmms-eval's own Qwen2.5-VL class on our checkpoint, else our adapter at batch size 1."""
    try:
        from lmms_eval.models.simple.qwen2_5_vl import Qwen2_5_VL

        model = Qwen2_5_VL(
            pretrained=str(checkpoint),
            device="cpu",
            device_map="cpu",
            batch_size=batch_size,
            min_pixels=28 * 28,
            max_pixels=168 * 168,
            system_prompt="",
        )
        model._model = model._model.float()
        return model, f"lmms-eval qwen2_5_vl (batch {batch_size})"
    except Exception as error:  # noqa: BLE001 - any failure to load means the fallback peer
        from vlmrl.evals.lmms_adapter import VlmrlLmms

        reason = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
        return VlmrlLmms.from_vlm(
            vlm, batch_size=1
        ), f"lmms-eval + vlmrl adapter (batch 1; qwen2_5_vl: {reason})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="Model spec for VLM.load.")
    parser.add_argument("--task", default="shapes-qa", help="A single-turn task both harnesses run.")
    parser.add_argument("--docs", type=int, default=64, help="Documents evaluated by each harness.")
    parser.add_argument("--batch-size", type=int, default=32, help="Our batch size.")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 on a shared machine: spinning threads on busy cores cost more than they give).",
    )
    parser.add_argument("--out", default="runs/bench/eval_throughput", help="Folder for results.json.")
    arguments = parser.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table

    from vlmrl.evals import evaluate
    from vlmrl.evals.lmms_export import export_task, lmms_task_name, run_lmms
    from vlmrl.model import VLM, SamplingParams
    from vlmrl.runs import atomic_write_json

    torch.set_num_threads(arguments.threads)
    console = Console()
    vlm = VLM.load(arguments.model, device="cpu")
    scratch = Path(tempfile.mkdtemp(prefix="eval-throughput-"))
    try:
        checkpoint = vlm.save(scratch / "checkpoint")
        export_task(arguments.task, scratch / "tasks", limit=arguments.docs)
        peer, peer_label = peer_model(vlm, checkpoint, arguments.batch_size)

        # Warm-up both paths (allocator, kernels, lazy imports) outside the timed regions.
        from vlmrl.evals import get_task

        warm_docs = get_task(arguments.task).load_docs(2).items
        vlm.generate([get_task(arguments.task).to_messages(d) for d in warm_docs], SamplingParams(4, 0.0))
        run_lmms(peer, [lmms_task_name(arguments.task)], include_path=scratch / "tasks", limit=2)

        started = time.perf_counter()
        ours = evaluate(
            vlm,
            [arguments.task],
            limit=arguments.docs,
            batch_size=arguments.batch_size,
            out_dir=scratch / "ours",
            show_progress=False,
        )
        ours_seconds = time.perf_counter() - started

        started = time.perf_counter()
        theirs = run_lmms(
            peer, [lmms_task_name(arguments.task)], include_path=scratch / "tasks", limit=arguments.docs
        )
        peer_seconds = time.perf_counter() - started

        # For reference, not the peer: lmms-eval driving our adapter at our batch size separates
        # what batching buys from what the harness itself costs.
        from vlmrl.evals.lmms_adapter import VlmrlLmms

        batched = VlmrlLmms.from_vlm(vlm, batch_size=arguments.batch_size)
        started = time.perf_counter()
        run_lmms(
            batched, [lmms_task_name(arguments.task)], include_path=scratch / "tasks", limit=arguments.docs
        )
        batched_seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    ours_rate = arguments.docs / ours_seconds
    peer_rate = arguments.docs / peer_seconds
    our_accuracy = ours["tasks"][arguments.task]["metrics"]["accuracy"]
    peer_accuracy = theirs["results"][lmms_task_name(arguments.task)]["accuracy,none"]
    table = Table(
        title=f"Evaluation throughput: {arguments.task}, {arguments.docs} docs, greedy, {arguments.model}"
    )
    for column in ("harness", "samples/s", "seconds", "accuracy"):
        table.add_column(column)
    table.add_row(
        f"vlmrl evaluate (batch {arguments.batch_size})",
        f"{ours_rate:.2f}",
        f"{ours_seconds:.2f}",
        f"{our_accuracy:.3f}",
    )
    table.add_row(peer_label, f"{peer_rate:.2f}", f"{peer_seconds:.2f}", f"{peer_accuracy:.3f}")
    table.add_row(
        f"(reference) lmms-eval + vlmrl adapter (batch {arguments.batch_size})",
        f"{arguments.docs / batched_seconds:.2f}",
        f"{batched_seconds:.2f}",
        "",
    )
    table.add_row("ratio (ours / peer)", f"{ours_rate / peer_rate:.2f}x", "goal >= 3x", "")
    console.print(table)
    results = {
        "benchmark": "eval_throughput",
        "task": arguments.task,
        "docs": arguments.docs,
        "model": arguments.model,
        "threads": arguments.threads,
        "machine": platform.processor() or platform.machine(),
        "ours": {
            "samples_per_second": ours_rate,
            "seconds": ours_seconds,
            "batch_size": arguments.batch_size,
            "accuracy": our_accuracy,
        },
        "peer": {
            "name": peer_label,
            "samples_per_second": peer_rate,
            "seconds": peer_seconds,
            "accuracy": peer_accuracy,
        },
        "reference_lmms_adapter_batched": {
            "samples_per_second": arguments.docs / batched_seconds,
            "seconds": batched_seconds,
            "batch_size": arguments.batch_size,
        },
        "ratio": ours_rate / peer_rate,
        "goal": 3.0,
    }
    from vlmrl.model import precision

    results["cpu"] = precision.describe()
    console.print(precision.summary_line())
    path = atomic_write_json(Path(arguments.out) / "results.json", results)
    console.print(f"saved {path}")


if __name__ == "__main__":
    main()
