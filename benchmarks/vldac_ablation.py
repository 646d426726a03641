"""VL-DAC against its ablation baselines, in one run: same world, same budget, same seed.

The paper's ablation (Bredis et al. 2025) compares VL-DAC (token-level PPO, step-level critic)
with RL4VLM's lambda-weighted thought/action log-probability (same critic) and with a
critic-free, episode-level GRPO. Here each algorithm trains `tiny` on the same world from the
same format warm-up, with the same number of updates and environment steps, and is scored on
the same held-out episodes (greedy, through `vlmrl.evals`). Printed: held-out success before
and after, the gain, and wall time per algorithm; also saved as JSON.

usage: .venv/bin/python benchmarks/vldac_ablation.py [--world numberline] [--steps 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", default="numberline")
    parser.add_argument("--steps", type=int, default=14, help="PPO updates per algorithm")
    parser.add_argument("--episodes-per-step", type=int, default=64)
    parser.add_argument("--format-warmup-steps", type=int, default=60)
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--algorithms", default="vl-dac,rl4vlm,grpo")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "vldac_ablation.json"))
    arguments = parser.parse_args()

    from vlmrl.vldac.recipe import VLDACConfig, run_vldac

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for algorithm in arguments.algorithms.split(","):
            config = VLDACConfig(
                out=str(Path(scratch) / algorithm),
                world=arguments.world,
                algorithm=algorithm,
                seed=arguments.seed,
                threads=arguments.threads,
                steps=arguments.steps,
                episodes_per_step=arguments.episodes_per_step,
                worlds=16,
                format_warmup_steps=arguments.format_warmup_steps,
                eval_episodes=arguments.eval_episodes,
                value_widths="256,256",
                max_new_tokens=24,
                temperature=0.3,
                learning_rate=3e-4,
                save_samples_every=0,
                checkpoint_every=0,
            )
            started = time.perf_counter()
            results = run_vldac(config)
            seconds = time.perf_counter() - started
            rows.append(
                {
                    "algorithm": algorithm,
                    "before": results["before"]["success"],
                    "after": results["after"]["success"],
                    "after_interval": results["after"]["success_interval"],
                    "gain": results["gain"],
                    "seconds": seconds,
                }
            )
    print(
        f"{arguments.world}: {arguments.steps} updates x {arguments.episodes_per_step} steps, seed {arguments.seed}"
    )
    print(f"{'algorithm':<10} {'before':>7} {'after':>7} {'gain':>7} {'wall s':>8}")
    for row in rows:
        print(
            f"{row['algorithm']:<10} {row['before']:>7.3f} {row['after']:>7.3f} {row['gain']:>+7.3f} {row['seconds']:>8.0f}"
        )
    Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
    Path(arguments.out).write_text(json.dumps({"settings": vars(arguments), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
