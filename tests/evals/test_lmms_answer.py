"""A stock lmms-eval task scores the final answer of models that answer in the suite's formats.

The task is lmms-eval's own POPE definition (YAML and utils.py copied at test time from the
installed package, so it is always the stock one and no third-party code lives in this repo),
pointed at a local dataset in POPE's schema: yes/no questions about rendered shapes scenes of
one or two objects (the scenes the tiny default reads).
"""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlmrl.evals import evaluate
from vlmrl.evals.loaders import hf_task
from vlmrl.evals.runner import read_predictions
from vlmrl.model.formats import extract_final_answer

TASK = "pope_local"  # the stock name "pope" would be shadowed by the installed task of that name
POST_PROMPT = "\nAnswer the question using a single word or phrase."  # POPE's default post_prompt
YES_NO_TYPES = ("exist", "compare_count", "relation")


def _pope_dataset(folder: Path, size: int) -> Path:
    """POPE's columns (id, question_id, question, answer, image_source, image, category), saved
    with save_to_disk; yes/no questions with distinct texts (a scripted model answers by text)."""
    import datasets

    from vlmrl.data_recipes.shapes import QUESTION_TYPES, shapes_qa_record

    rows: dict[str, list] = {
        key: [] for key in ("id", "question_id", "question", "answer", "image_source", "image", "category")
    }
    index = 0
    while len(rows["id"]) < size:
        if QUESTION_TYPES[index % len(QUESTION_TYPES)] in YES_NO_TYPES:
            record = shapes_qa_record(index, seed=19, resolution=168, min_objects=1, max_objects=2)
            if record["question"] not in rows["question"]:
                rows["id"].append(str(len(rows["id"])))
                rows["question_id"].append(rows["id"][-1])
                rows["question"].append(record["question"])
                rows["answer"].append(record["answer"])
                rows["image_source"].append(record["id"])
                rows["image"].append(record["image"])
                rows["category"].append("shapes")
        index += 1
    features = datasets.Features(
        {
            **{key: datasets.Value("string") for key in rows if key != "image"},
            "image": datasets.Image(),
        }
    )
    dataset = datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows, features=features)})
    dataset.save_to_disk(str(folder))
    return folder


@pytest.fixture(scope="module")
def stock_pope(tmp_path_factory):
    """(task folder for --include_path, dataset folder, the task's stock answers)."""
    import datasets
    import lmms_eval

    root = tmp_path_factory.mktemp("pope")
    data = _pope_dataset(root / "data", size=14)
    source = Path(lmms_eval.__file__).parent / "tasks" / "pope"
    tasks = root / "tasks" / TASK
    tasks.mkdir(parents=True)
    shutil.copy(source / "utils.py", tasks / "utils.py")
    text = (source / "pope.yaml").read_text()
    # The only edits: the local dataset (with load_from_disk instead of a hub token) and the name.
    for stock, local in (
        ("dataset_path: lmms-lab-encoder/POPE", f"dataset_path: {data}"),
        ("  token: True", "  load_from_disk: True"),
        ('task: "pope"', f'task: "{TASK}"'),
    ):
        assert text.count(stock) == 1, f"the installed pope.yaml changed: {stock!r} not found once"
        text = text.replace(stock, local)
    assert POST_PROMPT.encode("unicode_escape").decode() in text
    (tasks / f"{TASK}.yaml").write_text(text)
    table = datasets.load_from_disk(str(data))["test"]
    answers = dict(zip(table["question"], table["answer"]))  # in document order: position = id
    return root / "tasks", data, answers


def test_stock_task_with_the_tiny_default_agrees_with_our_harness(tmp_path, stock_pope):
    """The issue's scenario: every tiny response is `<answer>no</answer>`-like; the stock parser
    now sees the answer, and `vlmrl eval lmms` and `vlmrl eval run` agree document by document."""
    from vlmrl.cli import app

    tasks, data, answers = stock_pope
    runner = CliRunner()
    lmms_out = tmp_path / "lmms"
    result = runner.invoke(
        app,
        ["eval", "lmms", "--model", "tiny", "--tasks", TASK, "--include-path", str(tasks)]
        + ["--out", str(lmms_out), "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    printed = {
        line.split(": ", 1)[0]: line.split(": ", 1)[1]
        for line in result.output.splitlines()
        if line.startswith("lmms-eval ")
    }
    samples_path = Path(printed[f"lmms-eval samples ({TASK})"])
    results_path = Path(printed["lmms-eval results"])
    assert samples_path.is_file() and results_path.is_file() and samples_path.parent.parent == lmms_out
    theirs = json.loads(results_path.read_text())["results"][TASK]
    samples = [json.loads(line) for line in samples_path.read_text().splitlines()]

    ours_out = tmp_path / "ours"
    result = runner.invoke(
        app,
        ["eval", "run", "--model", "tiny", "--tasks", f"hf:{data}", "--post-prompt", POST_PROMPT]
        + ["--max-new-tokens", "128", "--batch-size", "1", "--out", str(ours_out), "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    ours = json.loads((ours_out / "results.json").read_text())["tasks"][data.name]
    predictions = read_predictions(ours_out / "predictions" / f"{data.name}.jsonl")

    assert len(samples) == len(predictions) == len(answers) == 14
    for sample in samples:
        mine = predictions[sample["pope_accuracy"]["question_id"]]
        assert "<answer>" in mine["output"]  # tiny answers in the suite's format...
        # ...and the stock parser got the answer inside it, the one our harness scores.
        assert sample["pope_accuracy"]["prediction"] == extract_final_answer(mine["output"]).text
        assert sample["pope_accuracy"]["prediction"] in ("yes", "no")
        assert sample["pope_accuracy"]["score"] == mine["score"]["accuracy"]
    assert theirs["pope_accuracy,none"] == pytest.approx(ours["metrics"]["accuracy"])
    assert theirs["pope_accuracy,none"] > 0  # was 0 when the stock parser saw the tags


# A scripted model answers each question in one of these styles; the flags say whether the stock
# POPE parser should score a correct answer 1 (answer mode, raw mode).
STYLES = [
    ("<think>I look at the image.</think><answer>{truth}</answer>", 1.0, 0.0),
    ("The object is there, so \\boxed{{{truth}}}", 1.0, 0.0),
    ("{Truth}", 1.0, 1.0),  # a plain-text model: unchanged by answer extraction
    ("<think>hmm</think><answer>{wrong}</answer>", 0.0, 0.0),
    ("<think>unclosed</think><answer>{truth}", 0.0, 0.0),  # malformed: the raw text is scored
    ("", 0.0, 0.0),
    # lmms-eval's default stop string "\n\n" inside the reasoning must not cut the answer away.
    ("<think>first\n\nthen</think><answer>{truth}</answer>", 1.0, 0.0),
]


def _scripted_reply(answers):
    def reply(conversation):
        question = conversation[-1]["content"][-1]["text"].removesuffix(POST_PROMPT.strip()).strip()
        index = list(answers).index(question)
        truth = answers[question]
        template = STYLES[index % len(STYLES)][0]
        return template.format(truth=truth, Truth=truth.capitalize(), wrong="no" if truth == "yes" else "yes")

    return reply


@pytest.mark.parametrize("response", ["answer", "raw"])
def test_scripted_formats_scored_alike_by_the_stock_task_and_our_harness(
    tmp_path, stock_pope, scripted, response
):
    from vlmrl.evals.lmms_adapter import VlmrlLmms
    from vlmrl.evals.lmms_export import run_lmms

    tasks, data, answers = stock_pope
    column = 1 if response == "answer" else 2
    expected = {str(i): STYLES[i % len(STYLES)][column] for i in range(len(answers))}

    adapter = VlmrlLmms.from_vlm(scripted(_scripted_reply(answers)), batch_size=4, response=response)
    theirs = run_lmms(adapter, [TASK], include_path=tasks)
    samples = theirs["samples"][TASK]
    assert {s["pope_accuracy"]["question_id"]: s["pope_accuracy"]["score"] for s in samples} == expected

    task = hf_task(data, post_prompt=POST_PROMPT, response=response)
    ours = evaluate(
        scripted(_scripted_reply(answers)),
        [task],
        batch_size=4,
        out_dir=tmp_path,
        resamples=10,
        show_progress=False,
    )
    predictions = read_predictions(tmp_path / "predictions" / f"{data.name}.jsonl")
    assert {key: line["score"]["accuracy"] for key, line in predictions.items()} == expected
    accuracy = sum(expected.values()) / len(expected)
    assert theirs["results"][TASK]["pope_accuracy,none"] == pytest.approx(accuracy)
    assert ours["tasks"][data.name]["metrics"]["accuracy"] == pytest.approx(accuracy)
    if response == "answer":
        # The case: reasoning then <answer>yes</answer> reaches the task as "yes".
        first = next(s for s in samples if s["pope_accuracy"]["question_id"] == "0")
        assert first["resps"][0][0] == answers[first["doc"]["question"]]


def _request(gen_kwargs, text="Is it red?"):
    from lmms_eval.api.instance import Instance

    return Instance(
        "generate_until",
        (text, gen_kwargs, lambda d: [], 0, "t", "test"),
        0,
        {"task": "t", "doc_id": 0, "repeats": 1},
    )


class _Recorder:
    """A VLM stand-in that returns one fixed text and records the sampling settings it got."""

    def __init__(self, text):
        self.text, self.sampling = text, []

    def generate(self, conversations, sampling):
        from vlmrl.model.types import Generation

        self.sampling.append(sampling)
        return [Generation(self.text, [1], [0.0], i, 0, "stop") for i in range(len(conversations))]


@pytest.mark.parametrize(
    "response, doc, until, expected",
    [
        ("answer", {"question": "q"}, ["\n\n"], "yes"),
        ("answer", {"question": "q"}, ["es"], "y"),  # stop strings cut the answer handed over
        ("raw", {"question": "q"}, ["\n\n"], "<think>a"),
        ("raw", {"question": "q"}, [], "<think>a\n\nb</think><answer>yes</answer>"),
        # Our exported tasks parse the format themselves: always the raw text.
        ("answer", {"vlmrl_task": "shapes-qa"}, [], "<think>a\n\nb</think><answer>yes</answer>"),
    ],
)
def test_generate_until_hands_over_the_answer_then_applies_until(response, doc, until, expected):
    from vlmrl.evals.lmms_adapter import VlmrlLmms

    vlm = _Recorder("<think>a\n\nb</think><answer>yes</answer>")
    adapter = VlmrlLmms.from_vlm(vlm, response=response)
    adapter.task_dict = {"t": {"test": [doc]}}
    gen_kwargs = {"max_new_tokens": 7, "temperature": 0, "until": until}
    assert adapter.generate_until([_request(gen_kwargs)]) == [expected]


def test_generation_kwargs_followed():
    from vlmrl.evals.lmms_adapter import VlmrlLmms

    adapter = VlmrlLmms.from_vlm(_Recorder("x"), max_new_tokens=9)
    greedy = adapter._sampling({"max_new_tokens": 128, "temperature": 0, "top_p": 1.0, "num_beams": 1})
    assert (greedy.max_new_tokens, greedy.temperature) == (128, 0.0)
    assert adapter._sampling({"temperature": 0.7, "do_sample": False}).temperature == 0.0
    sampled = adapter._sampling({"temperature": 0.7, "top_p": 0.9, "top_k": 5})
    assert (sampled.max_new_tokens, sampled.temperature, sampled.top_p, sampled.top_k) == (9, 0.7, 0.9, 5)
    assert not adapter._warned
    assert adapter._sampling({"num_beams": 4}).temperature == 0.0  # beams unsupported: greedy...
    assert adapter._warned == {"num_beams"}  # ...and said so once


def test_bad_response_mode_is_refused_naming_it():
    from vlmrl.evals.lmms_adapter import VlmrlLmms

    with pytest.raises(ValueError, match="response='boxed'"):
        VlmrlLmms.from_vlm(_Recorder("x"), response="boxed")
    with pytest.raises(ValueError, match="response='nope'"):
        VlmrlLmms(pretrained="tiny", response="nope")  # checked before the model loads
    from vlmrl.cli import app

    result = CliRunner().invoke(app, ["eval", "lmms", "--response", "nope"])
    assert result.exit_code == 2 and "--response 'nope'" in result.output


def test_exported_user_task_keeps_its_response_option(tmp_path):
    import datasets
    from PIL import Image

    from vlmrl.evals.lmms_export import export_task, process_results

    Image.new("RGB", (16, 16), "red").save(tmp_path / "a.png")
    (tmp_path / "q.jsonl").write_text(
        json.dumps({"image": "a.png", "question": "Red?", "answer": "yes"}) + "\n"
    )
    reasoned = "<think>it is red</think><answer>yes</answer>"
    for options, accuracy in ((None, 1.0), ({"response": "raw"}, 0.0)):
        yaml_path = export_task(f"jsonl:{tmp_path / 'q.jsonl'}", tmp_path / str(options), options=options)
        row = datasets.load_from_disk(str(yaml_path.parent / "data"))["test"][0]
        assert process_results(row, [reasoned]) == {"accuracy": accuracy, "format": 1.0}
