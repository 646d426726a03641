import json

import numpy as np
import pytest
from PIL import Image

from vlmrl.evals import Observation, environment_task, evaluate, get_task
from vlmrl.evals.builtin import refseg_task, spy_vote_task, visual_probe_task
from vlmrl.evals.tasks import TaskError
from vlmrl.model.formats import format_answer, format_tool_call


def test_shapes_and_charts_docs_are_deterministic_and_scored_by_type():
    for name in ("shapes-qa", "charts-qa"):
        task = get_task(name)
        first, second = task.load_docs(6).items, task.load_docs(6).items
        assert [d["id"] for d in first] == [d["id"] for d in second]
        assert [d["question"] for d in first] == [d["question"] for d in second]
        doc = first[0]
        assert task.score(doc, format_answer(doc["answer"]))["accuracy"] == 1.0
        assert task.score(doc, "no idea")["format"] == 0.0
        content = task.to_messages(doc)[0]["content"]
        assert content[0]["type"] == "image" and content[-1]["text"] == doc["question"]
    charts = get_task("charts-qa")
    numeric = next(d for d in charts.load_docs(40).items if d["question_type"] == "value_at")
    close = float(numeric["answer"]) * 1.04
    assert charts.score(numeric, format_answer(f"{close:.2f}"))["accuracy"] == 1.0


def test_spy_vote_docs_point_at_the_player_whose_clue_does_not_fit():
    from vlmrl.data_recipes.shapes import ATTRIBUTES, phrase

    task = spy_vote_task(n=6)
    docs = task.load_docs().items
    assert len(docs) == 6
    for doc in docs:
        spy = int(doc["answer"])
        assert 1 <= spy <= doc["players"]
        lines = doc["question"].split("\n")
        clues = {
            int(line.split(":")[0].removeprefix("player ")): line
            for line in lines
            if line.startswith("player ")
        }
        assert len(clues) == doc["players"]
        assert f"You are player {spy}." not in doc["question"]  # the voter is a civilian
        assert task.score(doc, format_answer(str(spy))) == {
            "accuracy": 1.0,
            "format": 1.0,
            "question_type": doc["question_type"],
        }
        assert task.score(doc, format_answer("9"))["format"] == 0.0
    # The spy's clue names an object absent from the civilians' image (the image shown).
    from vlmrl.data_recipes.pairs import pair_record

    first = docs[0]
    index = int(first["id"].rsplit("-", 1)[1])
    scene_a = json.loads(pair_record(index, "shapes", 1000)["edit"])["scene_a"]["objects"]
    present = {phrase({a: o[a] for a in ATTRIBUTES}) for o in scene_a}
    spy_line = [
        line for line in first["question"].split("\n") if line.startswith(f"player {first['answer']}:")
    ][0]
    assert not any(f" {p}." in spy_line for p in present)


def _probe_reply(zoom_first):
    def reply(conversation):
        user_text = conversation[0]["content"][-1]["text"]
        last = conversation[-1]
        if zoom_first and last["role"] == "user":
            return format_tool_call("zoom", {"bbox": [0, 0, 64, 64]})
        if last["role"] == "tool" and len(conversation) < 5:
            return format_tool_call("zoom", {"bbox": [0, 0, 1, 1]})  # too small: a tool failure
        answer = "red" if "What color" in user_text else "star"
        return format_answer(answer)

    return reply


def test_visual_probe_scores_by_difficulty_and_turn_budget(tmp_path, scripted):
    task = visual_probe_task(n=6, canvas=128, max_turns=4, budgets=(1, 2, 4))
    vlm = scripted(_probe_reply(zoom_first=True))
    results = evaluate(vlm, [task], out_dir=tmp_path, resamples=20, show_progress=False)
    metrics = results["tasks"]["visual-probe"]["metrics"]
    # Every episode: zoom (ok), zoom (fails), answer on turn 3.
    assert metrics["turns"] == 3.0 and metrics["zooms"] == 2.0 and metrics["tool_failures"] == 1.0
    assert metrics["accuracy@1"] == 0.0 and metrics["accuracy@2"] == 0.0
    assert metrics["accuracy@4"] == metrics["accuracy"]
    assert {"accuracy/easy", "accuracy/medium", "accuracy/hard"} <= set(metrics)
    assert vlm.calls == [6, 6, 6]  # batched across docs, one generate per turn
    docs = task.load_docs().items
    expected = np.mean([d["answer"] in ("red", "star") for d in docs])
    assert metrics["accuracy"] == pytest.approx(expected)
    # The crop comes back as a new image in a tool turn.
    transcript = json.loads(next(iter(_predictions(tmp_path, "visual-probe").values()))["output"])
    assert len(transcript) == 3 and "<tool_call>" in transcript[0]


def test_visual_probe_non_answer_ends_episode(tmp_path, scripted):
    task = visual_probe_task(n=3, canvas=128, max_turns=4)
    results = evaluate(scripted(lambda c: "hmm"), [task], out_dir=tmp_path, resamples=10, show_progress=False)
    metrics = results["tasks"]["visual-probe"]["metrics"]
    assert metrics["answered"] == 0.0 and metrics["turns"] == 1.0 and metrics["accuracy"] == 0.0


def _predictions(run, name):
    from vlmrl.evals.runner import read_predictions

    return read_predictions(run / "predictions" / f"{name}.jsonl")


def test_refseg_with_a_fake_mask_decoder(tmp_path, scripted):
    with pytest.raises(TaskError, match="needs a mask decoder"):
        refseg_task()

    def decoder(text, size):
        width, height = size
        if text != "<mask_left>":
            from vlmrl.model.formats import FormatFailure

            return FormatFailure("no mask tokens")
        mask = np.zeros((height, width), bool)
        mask[:, : width // 2] = True
        return mask

    task = refseg_task(decoder, n=4)
    docs = task.load_docs().items
    assert all(d["question"].startswith("Segment the ") and d["mask"].any() for d in docs)
    results = evaluate(
        scripted(lambda c: format_answer("<mask_left>")),
        [task],
        out_dir=tmp_path,
        resamples=10,
        show_progress=False,
    )
    metrics = results["tasks"]["refseg"]["metrics"]
    half = np.zeros_like(docs[0]["mask"])
    half[:, : half.shape[1] // 2] = True
    pairs = [((half & d["mask"]).sum(), (half | d["mask"]).sum()) for d in docs]
    assert metrics["cIoU"] == pytest.approx(sum(i for i, _ in pairs) / sum(u for _, u in pairs))
    assert metrics["gIoU"] == pytest.approx(np.mean([i / u for i, u in pairs]))
    assert task.score(docs[0], "garbage") == {
        "intersection": 0.0,
        "union": float(docs[0]["mask"].sum()),
        "iou": 0.0,
        "format": 0.0,
    }


class CountingWorld:
    """Say the target number (seed % 3 + 1) to win; three wrong steps end the episode."""

    def reset(self, seed):
        self.target, self.steps = seed % 3 + 1, 0
        return Observation(Image.new("RGB", (16, 16)), "Say a number.")

    def step(self, action_text):
        self.steps += 1
        won = action_text.strip() == str(self.target)
        done = won or self.steps >= 3
        return (None, "Try again."), float(won), done, {"success": won}


def test_env_success_over_a_fake_environment(tmp_path, scripted):
    task = environment_task("env-count", CountingWorld, episodes=6, max_steps=5, seed=0)

    def reply(conversation):
        assistant_turns = sum(1 for m in conversation if m["role"] == "assistant")
        return str(assistant_turns + 1)  # says 1, then 2, then 3

    vlm = scripted(reply)
    results = evaluate(vlm, [task], out_dir=tmp_path, resamples=10, show_progress=False)
    metrics = results["tasks"]["env-count"]["metrics"]
    # Seeds 0..5 -> targets 1,2,3,1,2,3: always found, on step = target.
    assert metrics["success"] == 1.0
    assert metrics["steps"] == pytest.approx(2.0)
    assert metrics["return"] == 1.0
    assert vlm.calls == [6, 4, 2]

    stubborn = scripted(lambda c: "7")
    results = evaluate(stubborn, [task], out_dir=tmp_path / "b", resamples=10, show_progress=False)
    assert results["tasks"]["env-count"]["metrics"] == {"return": 0.0, "steps": 3.0, "success": 0.0}


def test_refseg_image_conditioned_decoder_and_no_target_accuracy():
    from PIL import Image

    from vlmrl.evals.builtin import refseg_aggregate, refseg_score
    from vlmrl.model.formats import FormatFailure

    seen = []

    def decoder(text, image):
        seen.append(image.size)
        if text == "none":
            return np.zeros((image.height, image.width), bool)
        if text == "bad":
            return FormatFailure("no mask tokens")
        return np.ones((image.height, image.width), bool)

    decoder.uses_image = True
    image = Image.new("RGB", (6, 4))
    target = np.zeros((4, 6), bool)
    target[:2, :3] = True
    empty = np.zeros((4, 6), bool)
    scores = [
        refseg_score({"id": "a", "images": [image], "mask": target}, "<answer>all</answer>", decoder),
        refseg_score({"id": "b", "images": [image], "mask": empty}, "<answer>none</answer>", decoder),
        refseg_score({"id": "c", "images": [image], "mask": empty}, "<answer>all</answer>", decoder),
        refseg_score({"id": "d", "images": [image], "mask": empty}, "<answer>bad</answer>", decoder),
    ]
    assert seen == [(6, 4)] * 4  # the decoder got the image itself
    assert "no_target_correct" not in scores[0]
    assert [s["no_target_correct"] for s in scores[1:]] == [1.0, 0.0, 0.0]  # unparseable is wrong
    metrics = refseg_aggregate(scores)
    assert metrics["N-acc"] == pytest.approx(1 / 3)
    # gIoU: 6/24 for the whole-image guess, 1 for the right 'none', 0 for the others (the
    # unparseable answer too, although its stand-in empty mask equals the empty truth).
    assert metrics["gIoU"] == pytest.approx((0.25 + 1.0 + 0.0 + 0.0) / 4)
    assert "N-acc" not in refseg_aggregate(scores[:1])
