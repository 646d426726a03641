"""Learning proof: at equal student updates, the Masters student beats the plain-SFT student.

Teacher: the shipped `tiny`; student: `tiny-student` (tiny with only its first language layer,
clearly weaker). Both students train on offline data for the same questions, at the same
number of updates, batch and learning rate, then answer held-out shapes-QA on scenes of one
or two objects (where the tiny teacher reads) through `vlmrl.evals`. The assertion: the
Masters student's accuracy lies above the SFT student's 95% bootstrap interval, and the SFT
student's accuracy below the Masters student's interval.

Measured (seed 0, 30 updates of 64 episodes, learning rate 1e-3, 400 held-out questions, eval
seed 1000; 28 minutes of wall time on 2 cores shared with ~8 other jobs): student before
0.3675, Masters 0.410 [0.363, 0.458], SFT 0.430 [0.383, 0.475]; the teacher reads 0.598
[0.550, 0.645]. At learning rate 3e-4 (same data): SFT 0.405 [0.358, 0.455], Masters 0.3825
[0.338, 0.428]. Both students learn the answer format (0.87 -> 1.0) and answer priors; neither
learns to read colour in 30 updates (0.10-0.14, teacher 0.76). The margin the issue asks for
is not reached, so the test is an honest expected failure until it is.
"""

from __future__ import annotations

import json
import time

import pytest

from vlmrl.masters.recipe import MastersConfig, run_distill, run_generate

SETTINGS = dict(
    steps=30, episodes_per_step=64, eval_size=400, seed=0, checkpoint_every=0, save_samples_every=0
)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=False,
    reason="measured seed 0, 30 updates, lr 1e-3: student 0.3675 -> Masters 0.410 [0.363, 0.458] vs "
    "SFT 0.430 [0.383, 0.475] (teacher 0.598); Masters does not beat SFT outside the intervals",
)
def test_masters_beats_sft_distillation_at_equal_updates(tmp_path):
    from vlmrl.masters.student import load_student
    from vlmrl.model import VLM

    started = time.perf_counter()
    teacher = VLM.load("tiny")
    data = str(tmp_path / "data")
    base = MastersConfig(data_dir=data, **SETTINGS)
    run_generate(_with_baselines(base, data), teacher=teacher)
    results = {}
    for method in ("masters", "sft"):
        config = MastersConfig(method=method, data_dir=data, out=str(tmp_path / method), **SETTINGS)
        student = load_student(config.student, config.teacher, config.student_layers)
        results[method] = run_distill(config, teacher=teacher, student=student)
    masters, sft = results["masters"]["after"], results["sft"]["after"]
    figures = {
        "before": results["masters"]["before"]["accuracy"],
        "masters": masters,
        "sft": sft,
        "updates": [results[m]["student_updates"] for m in results],
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(figures))
    assert results["masters"]["student_updates"] == results["sft"]["student_updates"] == SETTINGS["steps"]
    assert masters["accuracy"] > sft["interval"][1], figures
    assert sft["accuracy"] < masters["interval"][0], figures


def _with_baselines(config: MastersConfig, data: str):
    generate = config.generate_config(data)
    generate.baselines = True
    return generate
