"""Masters on the CPU miniature: teacher, student before, SFT-distilled, logit-KD, Masters.

One run: the shipped `tiny` teaches `tiny-student` (tiny with only its first language layer)
on shapes-QA scenes of one or two objects. The offline data is generated once (masked-teacher
and student responses per stage for Masters, full-teacher responses for the baselines, the
same questions); each student then gets the same number of updates of the same batch size and
learning rate. Printed: held-out accuracy (400 questions, greedy) with its 95% bootstrap
interval and the wall time of each row (the data generation is reported on its own line).
Results also go to JSON.

usage: .venv/bin/python benchmarks/masters.py [--steps 30] [--eval-size 400] [--threads 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--episodes-per-step", type=int, default=64)
    parser.add_argument("--eval-size", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/masters.json")
    arguments = parser.parse_args()

    import torch

    from vlmrl.masters.recipe import MastersConfig, evaluate_shapes, run_distill, run_generate
    from vlmrl.masters.student import load_student
    from vlmrl.model import VLM

    torch.set_num_threads(arguments.threads)
    work = Path(tempfile.mkdtemp(prefix="masters-bench-"))
    settings = dict(
        steps=arguments.steps,
        episodes_per_step=arguments.episodes_per_step,
        eval_size=arguments.eval_size,
        seed=arguments.seed,
        checkpoint_every=0,
        save_samples_every=0,
        data_dir=str(work / "data"),
    )
    rows = []
    teacher = VLM.load("tiny")
    started = time.perf_counter()
    result = evaluate_shapes(teacher, MastersConfig(**settings), work / "eval-teacher")
    rows.append(("teacher (tiny)", result, time.perf_counter() - started))
    started = time.perf_counter()
    generate = MastersConfig(**settings).generate_config()
    generate.baselines = True
    run_generate(generate, teacher=teacher)
    generation_seconds = time.perf_counter() - started
    before = None
    for method, label in (("sft", "SFT-distilled"), ("logit-kd", "logit-KD (JSD)"), ("masters", "Masters")):
        config = MastersConfig(method=method, out=str(work / method), **settings)
        student = load_student(config.student, config.teacher, config.student_layers)
        started = time.perf_counter()
        outcome = run_distill(config, teacher=teacher, student=student)
        if before is None:
            before = outcome["before"]
            rows.insert(1, ("student before (tiny-student)", before, 0.0))
        rows.append(
            (
                f"{label}, {outcome['student_updates']} updates",
                outcome["after"],
                time.perf_counter() - started,
            )
        )

    print(f"data generation (both data sets, {arguments.steps} steps): {generation_seconds:.0f} s")
    print(f"{'model':42s} {'accuracy':>8s} {'95% interval':>15s} {'wall s':>7s}")
    for name, result, seconds in rows:
        low, high = result["interval"]
        print(f"{name:42s} {result['accuracy']:8.3f} {low:7.3f}-{high:.3f} {seconds:7.0f}")
    Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
    Path(arguments.out).write_text(
        json.dumps(
            {
                "settings": vars(arguments),
                "generation_seconds": generation_seconds,
                "rows": [{"model": n, **r, "seconds": s} for n, r, s in rows],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
