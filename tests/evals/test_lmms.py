"""lmms-eval end to end, offline, with the tiny model; and agreement with our own harness."""

import json
import os
import subprocess
import sys

import pytest
import torch

from vlmrl.evals import evaluate
from vlmrl.evals.lmms_export import export_tasks, run_lmms
from vlmrl.evals.runner import read_predictions
from vlmrl.evals.tasks import TaskError
from vlmrl.model.formats import extract_final_answer

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def varied_checkpoint(tmp_path_factory):
    """A saved checkpoint whose greedy answers differ from doc to doc (the random-init tiny
    answers every question alike, which would make an agreement test vacuous)."""
    from vlmrl.model import VLM

    vlm = VLM.load("tiny", device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in vlm.model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return vlm, vlm.save(tmp_path_factory.mktemp("model") / "checkpoint")


def test_lmms_eval_cli_end_to_end_offline(tmp_path):
    export_tasks("shapes-qa", tmp_path / "tasks", limit=4)
    command = [
        sys.executable,
        "-m",
        "vlmrl.evals.lmms_adapter",
        "--model",
        "vlmrl",
        "--model_args",
        "pretrained=tiny,device=cpu",
        "--tasks",
        "vlmrl_shapes_qa",
        "--include_path",
        str(tmp_path / "tasks"),
        "--limit",
        "4",
        "--batch_size",
        "2",
        "--output_path",
        str(tmp_path / "out"),
        "--log_samples",
    ]
    finished = subprocess.run(
        command, env={**os.environ, **OFFLINE}, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    result_files = list((tmp_path / "out").rglob("*results*.json"))
    assert result_files, list((tmp_path / "out").rglob("*"))
    results = json.loads(result_files[0].read_text())["results"]["vlmrl_shapes_qa"]
    assert 0.0 <= results["accuracy,none"] <= 1.0 and "format,none" in results
    samples = [p for p in (tmp_path / "out").rglob("*vlmrl_shapes_qa*.jsonl")]
    assert samples and len(samples[0].read_text().splitlines()) == 4


def test_our_harness_and_lmms_eval_agree_on_every_document(tmp_path, varied_checkpoint):
    vlm, checkpoint = varied_checkpoint
    vlm.name = str(checkpoint)
    tasks = ["shapes-qa", "spy-vote"]
    ours = evaluate(
        vlm, tasks, limit=6, batch_size=1, out_dir=tmp_path / "ours", resamples=10, show_progress=False
    )
    export_tasks(tasks, tmp_path / "tasks", limit=6)
    theirs = run_lmms(
        str(checkpoint), ["vlmrl_shapes_qa", "vlmrl_spy_vote"], include_path=tmp_path / "tasks", device="cpu"
    )
    outputs = set()
    for task in tasks:
        predictions = read_predictions(tmp_path / "ours" / "predictions" / f"{task}.jsonl")
        samples = theirs["samples"][f"vlmrl_{task.replace('-', '_')}"]
        assert len(samples) == len(predictions) == 6
        for sample in samples:
            mine = predictions[sample["doc"]["id"]]
            assert sample["resps"][0][0] == mine["output"]
            assert sample["accuracy"] == mine["score"]["accuracy"]
            assert sample["format"] == mine["score"]["format"]
            outputs.add(mine["output"])
        lmms_accuracy = theirs["results"][f"vlmrl_{task.replace('-', '_')}"]["accuracy,none"]
        assert lmms_accuracy == pytest.approx(ours["tasks"][task]["metrics"]["accuracy"])
    assert len(outputs) > 1  # the documents really got different answers


def test_loglikelihood_and_multi_round(varied_checkpoint):
    from lmms_eval.api.instance import Instance
    from PIL import Image

    from vlmrl.evals.lmms_adapter import VlmrlLmms
    from vlmrl.model import SamplingParams

    vlm, _ = varied_checkpoint
    adapter = VlmrlLmms.from_vlm(vlm, batch_size=2, max_new_tokens=8)
    image = Image.new("RGB", (56, 56), "red")
    adapter.task_dict = {"t": {"test": [{"image": image}]}}
    visual = lambda doc: [doc["image"]]  # noqa: E731
    prompt = [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Color?"}]}
    ]
    greedy = vlm.generate([prompt], SamplingParams(max_new_tokens=3, temperature=0))[0]
    requests = [
        Instance(
            "loglikelihood",
            ("Color?", continuation, visual, 0, "t", "test"),
            0,
            {"task": "t", "doc_id": 0, "repeats": 1},
        )
        for continuation in (greedy.text, " purple")
    ]
    (logprob_greedy, is_greedy), (logprob_other, other_greedy) = adapter.loglikelihood(requests)
    assert is_greedy and not other_greedy
    # The sampler's own log-probs of the greedy tokens give the same number.
    assert logprob_greedy == pytest.approx(sum(greedy.logprobs), abs=1e-3)
    assert logprob_other < 0

    def doc_to_text(doc, previous_output, round_idx, previous_round_info):
        if round_idx == 2:
            return None, None, True, previous_output, previous_round_info
        return [doc["image"]], f"Round {round_idx}: again?", False, previous_output, {"round": round_idx}

    multi = Instance(
        "generate_until_multi_round",
        (
            "Color?",
            {"max_new_tokens": 4, "temperature": 0, "until": ["\n\n"]},
            visual,
            doc_to_text,
            0,
            "t",
            "test",
        ),
        0,
        {"task": "t", "doc_id": 0, "repeats": 1},
    )
    (rounds,) = adapter.generate_until_multi_round([multi])
    text = vlm.generate([prompt], SamplingParams(max_new_tokens=4, temperature=0))[0].text
    # Each round's text goes through the response option (default: the final answer).
    assert len(rounds) == 2 and rounds[0] == extract_final_answer(text).text
    adapter.response = "raw"
    assert adapter.generate_until_multi_round([multi])[0][0] == text


def test_interactive_and_unserialisable_tasks_do_not_export(tmp_path):
    with pytest.raises(TaskError, match="interactive"):
        export_tasks("visual-probe", tmp_path, limit=2)
