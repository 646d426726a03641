import json

import pytest

from vlmrl.evals.loaders import extract_answer
from vlmrl.evals.results import compare_runs, comparison_table
from vlmrl.evals.runner import EvalError, evaluate, read_predictions
from vlmrl.evals.tasks import Task, TaskError
from vlmrl.model.formats import format_answer


def sums_task(count=10, name="sums"):
    def docs(limit):
        return [{"id": f"s{i}", "question": f"{i} + {i}", "answer": str(2 * i)} for i in range(count)]

    def score(doc, output):
        answer, _ = extract_answer(output)
        return {
            "accuracy": float(answer == doc["answer"]),
            "question_type": "even" if int(doc["answer"]) % 4 == 0 else "odd",
        }

    return Task(
        name=name,
        docs=docs,
        to_messages=lambda doc: [{"role": "user", "content": doc["question"]}],
        score=score,
        settings={"count": count},
    )


def last_text(conversation):
    content = conversation[-1]["content"]
    return content if isinstance(content, str) else content[-1]["text"]


def adder(conversation):
    left, _, right = last_text(conversation).partition(" + ")
    return format_answer(str(int(left) + int(right)))


def test_evaluate_writes_results_table_and_predictions(tmp_path, scripted):
    vlm = scripted(adder)
    results = evaluate(vlm, [sums_task()], batch_size=4, out_dir=tmp_path, resamples=50, show_progress=False)
    assert vlm.calls == [4, 4, 2]
    task = results["tasks"]["sums"]
    assert task["metrics"]["accuracy"] == 1.0 and task["count"] == 10 and task["generated"] == 10
    assert json.loads((tmp_path / "results.json").read_text())["tasks"]["sums"]["metrics"]["accuracy"] == 1.0
    table = (tmp_path / "results.md").read_text()
    assert "| sums | **accuracy** | 1.0000 | [1.0000, 1.0000] | 10 |" in table
    assert len(read_predictions(tmp_path / "predictions" / "sums.jsonl")) == 10


def test_killed_run_resumes_without_regenerating_cached_docs(tmp_path, scripted):
    failing = scripted(adder, fail_after=2)
    with pytest.raises(RuntimeError, match="injected failure"):
        evaluate(failing, [sums_task()], batch_size=3, out_dir=tmp_path, resamples=20, show_progress=False)
    assert len(read_predictions(tmp_path / "predictions" / "sums.jsonl")) == 6
    assert not (tmp_path / "results.json").exists()

    resumed = scripted(adder)
    results = evaluate(
        resumed, [sums_task()], batch_size=3, out_dir=tmp_path, resamples=20, show_progress=False
    )
    assert resumed.calls == [3, 1]  # only docs 6..9: the same batches as an uninterrupted run
    assert resumed.prompts == ["6 + 6", "7 + 7", "8 + 8", "9 + 9"]
    assert results["tasks"]["sums"]["cached"] == 6 and results["tasks"]["sums"]["metrics"]["accuracy"] == 1.0

    again = scripted(adder)
    evaluate(again, [sums_task()], batch_size=3, out_dir=tmp_path, resamples=20, show_progress=False)
    assert again.calls == []


def test_torn_last_line_is_repaired(tmp_path, scripted):
    evaluate(
        scripted(adder), [sums_task(4)], batch_size=2, out_dir=tmp_path, resamples=10, show_progress=False
    )
    path = tmp_path / "predictions" / "sums.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][:10])  # killed in the middle of a write
    vlm = scripted(adder)
    results = evaluate(vlm, [sums_task(4)], batch_size=2, out_dir=tmp_path, resamples=10, show_progress=False)
    assert vlm.prompts == ["3 + 3"]
    assert results["tasks"]["sums"]["metrics"]["accuracy"] == 1.0
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_rerun_with_other_model_or_settings_refuses_the_cache(tmp_path, scripted):
    evaluate(scripted(adder, name="a"), [sums_task(4)], out_dir=tmp_path, resamples=10, show_progress=False)
    with pytest.raises(EvalError, match="model='a'"):
        evaluate(
            scripted(adder, name="b"), [sums_task(4)], out_dir=tmp_path, resamples=10, show_progress=False
        )
    with pytest.raises(EvalError, match="task 'sums' was run with settings"):
        evaluate(
            scripted(adder, name="a"), [sums_task(5)], out_dir=tmp_path, resamples=10, show_progress=False
        )


def test_bad_options_and_tasks(tmp_path, scripted):
    with pytest.raises(EvalError, match="batch_size"):
        evaluate(scripted(adder), [sums_task()], batch_size=0, out_dir=tmp_path)
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        evaluate(scripted(adder), "nope", out_dir=tmp_path)
    with pytest.raises(TaskError, match="either to_messages and score"):
        Task(name="bad", docs=lambda limit: [])
    duplicate = Task(name="dup", docs=lambda limit: [{"id": 1}, {"id": "1"}], to_messages=list, score=dict)
    with pytest.raises(TaskError, match="appears twice"):
        duplicate.load_docs()


def test_compare_prints_paired_deltas(tmp_path, scripted):
    def half_wrong(conversation):
        left = int(last_text(conversation).partition(" + ")[0])
        return format_answer(str(2 * left if left % 2 else -1))

    evaluate(
        scripted(half_wrong, "a"), [sums_task()], out_dir=tmp_path / "a", resamples=10, show_progress=False
    )
    evaluate(scripted(adder, "b"), [sums_task()], out_dir=tmp_path / "b", resamples=10, show_progress=False)
    rows = compare_runs(tmp_path / "a", tmp_path / "b", resamples=200)
    row = next(r for r in rows if r["metric"] == "accuracy")
    assert (row["a"], row["b"], row["delta"], row["n"]) == (0.5, 1.0, 0.5, 10)
    assert 0 < row["low"] <= 0.5 <= row["high"] <= 1.0
    table = comparison_table(rows, "a", "b")
    assert "| sums | accuracy | 0.5000 | 1.0000 | +0.5000 * |" in table
