import json

import pytest
from PIL import Image

from vlmrl.evals.loaders import DataError, hf_task, jsonl_task, qa_score
from vlmrl.evals.tasks import TaskError, get_task


def _write_dataset(tmp_path, rows, images=("a.png", "b.png")):
    (tmp_path / "images").mkdir()
    for name in images:
        Image.new("RGB", (16, 16), "red").save(tmp_path / "images" / name)
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_jsonl_task_reads_images_relative_to_the_file(tmp_path):
    path = _write_dataset(
        tmp_path,
        [
            {"id": "q1", "image": "images/a.png", "question": "What color?", "answer": "red"},
            {"image": ["images/a.png", "images/b.png"], "question": "How many?", "answer": 2},
            {"question": "Which?", "answer": "B", "options": ["cat", "dog"]},
        ],
    )
    task = jsonl_task(path)
    docs = task.load_docs().items
    assert [d["id"] for d in docs] == ["q1", "2", "3"]
    assert [len(d["images"]) for d in docs] == [1, 2, 0]
    messages = task.to_messages(docs[2])
    assert "A. cat\nB. dog" in messages[0]["content"][-1]["text"]
    assert task.score(docs[0], "<answer>Red</answer>") == {"accuracy": 1.0, "format": 1.0}
    assert task.score(docs[1], "2.0")["accuracy"] == 1.0  # numeric answer, no answer tags
    assert task.score(docs[1], "2.0")["format"] == 0.0
    assert task.score(docs[2], "<answer>dog</answer>")["accuracy"] == 1.0
    assert task.score(docs[2], "<answer>A</answer>")["accuracy"] == 0.0
    assert get_task(f"jsonl:{path}").name == "questions"


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "questions.jsonl:1: not valid JSON"),
        (json.dumps({"question": "q"}), "missing 'answer'"),
        (json.dumps({"question": "", "answer": "x"}), "'question' must be a non-empty string"),
        (json.dumps({"question": "q", "answer": "x", "options": ["a", "b"]}), "neither an option letter"),
        (json.dumps({"question": "q", "answer": ["x"]}), "'answer' must be a string"),
        (json.dumps([1, 2]), "expected a JSON object"),
    ],
)
def test_malformed_rows_name_the_line(tmp_path, line, message):
    path = tmp_path / "questions.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        jsonl_task(path).load_docs()


def test_missing_image_is_an_error_naming_the_file(tmp_path):
    path = _write_dataset(tmp_path, [{"image": "images/nope.png", "question": "q", "answer": "a"}])
    with pytest.raises(DataError, match=r"questions.jsonl:1 image 0: image file .*nope.png does not exist"):
        jsonl_task(path).load_docs()


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    path = _write_dataset(
        tmp_path,
        [
            {"image": "images/a.png", "question": "q", "answer": "a"},
            {"image": "images/broken.png", "question": "q", "answer": "a"},
        ],
    )
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png at all")
    docs = jsonl_task(path).load_docs()
    assert len(docs.items) == 1
    assert len(docs.skipped) == 1 and "broken.png" in docs.skipped[0]


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        jsonl_task(tmp_path / "nope.jsonl")


def test_hf_dataset_on_disk(tmp_path):
    import datasets

    images = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    dataset = datasets.Dataset.from_dict(
        {
            "image": images,
            "question": ["color?", "color?"],
            "answer": ["red", "blue"],
            "question_type": ["c", "c"],
        },
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "question": datasets.Value("string"),
                "answer": datasets.Value("string"),
                "question_type": datasets.Value("string"),
            }
        ),
    )
    datasets.DatasetDict({"test": dataset}).save_to_disk(str(tmp_path / "data"))
    task = get_task(f"hf:{tmp_path / 'data'}@test")
    docs = task.load_docs(limit=1).items
    assert len(docs) == 1 and docs[0]["images"][0].getpixel((0, 0)) == (255, 0, 0)
    assert task.score(docs[0], "<answer>red</answer>")["question_type"] == "c"
    with pytest.raises(DataError, match="not a directory"):
        hf_task(tmp_path / "missing")


def test_qa_score_numeric_tolerance():
    doc = {"question": "q", "answer": "100"}
    assert qa_score(doc, "<answer>104</answer>", relative_tolerance=0.05)["accuracy"] == 1.0
    assert qa_score(doc, "<answer>104</answer>")["accuracy"] == 0.0


def test_user_task_response_modes_and_prompts(tmp_path):
    path = _write_dataset(
        tmp_path,
        [
            {"id": "q1", "image": "images/a.png", "question": "Is it red?", "answer": "yes"},
            {"id": "q2", "question": "Which?", "answer": "B", "options": ["cat", "dog"]},
        ],
    )
    reasoned = "<think>it is red</think><answer>Yes</answer>"
    answer_task = get_task(f"jsonl:{path}", post_prompt="\nOne word.", pre_prompt="Q: ")
    docs = answer_task.load_docs().items
    assert answer_task.to_messages(docs[0])[0]["content"][-1]["text"] == "Q: Is it red?\nOne word."
    assert answer_task.to_messages(docs[1])[0]["content"][-1]["text"].endswith("letter.\nOne word.")
    assert answer_task.score(docs[0], reasoned) == {"accuracy": 1.0, "format": 1.0}
    assert answer_task.score(docs[0], "so \\boxed{yes}") == {"accuracy": 1.0, "format": 0.0}
    assert answer_task.score(docs[1], "\\boxed{B}")["accuracy"] == 1.0
    raw_task = jsonl_task(path, response="raw")
    assert raw_task.score(docs[0], reasoned) == {"accuracy": 0.0, "format": 1.0}
    assert raw_task.score(docs[0], " Yes ") == {"accuracy": 1.0, "format": 0.0}
    assert raw_task.settings["response"] == "raw" and answer_task.settings["post_prompt"] == "\nOne word."
    with pytest.raises(TaskError, match="response must be one of"):
        jsonl_task(path, response="final")


def test_eval_run_cli_refuses_an_unknown_response_mode(tmp_path):
    from typer.testing import CliRunner

    from vlmrl.cli import app

    path = _write_dataset(
        tmp_path, [{"id": "q1", "image": "images/a.png", "question": "Red?", "answer": "no"}]
    )
    result = CliRunner().invoke(
        app, ["eval", "run", "--tasks", f"jsonl:{path}", "--response", "final", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "response must be one of" in result.output
