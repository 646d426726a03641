"""Label-free answers, voting, self-consistency, and the multiple-choice built-in tasks."""

import pytest

from vlmrl.evals import evaluate, get_task
from vlmrl.evals.tasks import Task, TaskError
from vlmrl.evals.voting import majority_vote, qa_answer, self_consistency_task, task_answer
from vlmrl.model.formats import FormatFailure, format_answer
from vlmrl.model.types import Generation


def test_qa_answer_reads_letters_numbers_and_text_without_the_label():
    choice = {"options": ["red", "blue", "green", "gray"]}  # no answer field at all
    assert qa_answer(choice, format_answer("B")) == "B"
    assert qa_answer(choice, format_answer("green")) == "C"
    assert qa_answer(choice, "D") == "D"  # bare text is read as qa_score reads it
    assert isinstance(qa_answer(choice, format_answer("purple")), FormatFailure)
    assert qa_answer({}, format_answer("3.0")) == qa_answer({}, format_answer("3")) == "3"
    assert qa_answer({}, format_answer("2.5")) == "2.5"
    assert qa_answer({}, format_answer("The Red cube.")) == "red cube"
    assert isinstance(qa_answer({}, "red cube"), FormatFailure)  # open answers need the tags
    assert isinstance(qa_answer({}, format_answer("...")), FormatFailure)
    assert isinstance(qa_answer({}, None), FormatFailure)


def test_task_answer_uses_the_tasks_own_parser_and_stays_total():
    task = get_task("shapes-qa")
    assert task_answer(task, {}, format_answer("yes")) == "yes"
    custom = Task(
        "t", docs=lambda limit: [], to_messages=lambda d: [], score=lambda d, o: {}, parse=lambda d, o: 3
    )
    assert isinstance(task_answer(custom, {}, "x"), FormatFailure)


def test_majority_vote_ignores_failures_and_breaks_ties_by_first_seen():
    assert majority_vote(["B", "A", "A", "B", None]) == "B"
    assert majority_vote([FormatFailure("x"), FormatFailure("x"), "C"]) == "C"
    assert majority_vote([None, FormatFailure("x")]) is None


def test_unlabeled_removes_the_label_fields_only():
    task = get_task("shapes-recognition", n=2)
    doc = task.load_docs().items[0]
    stripped = task.unlabeled(doc)
    assert "answer" not in stripped and "answer_letter" not in stripped
    assert stripped["options"] == doc["options"] and stripped["question"] == doc["question"]
    assert "answer" in doc  # the original is untouched


def test_shapes_recognition_docs_are_four_way_choices_about_one_object():
    task = get_task("shapes-recognition", n=9)
    docs = task.load_docs().items
    assert [d["id"] for d in docs] == [d["id"] for d in task.load_docs().items]
    assert [d["question_type"] for d in docs[:3]] == ["shape", "color", "material"]
    for doc in docs:
        assert len(doc["options"]) == len(set(doc["options"])) == 4
        assert doc["answer"] in "ABCD" and doc["answer_letter"] == doc["answer"]
        right = doc["options"]["ABCD".index(doc["answer"])]
        assert task.score(doc, format_answer(doc["answer"]))["accuracy"] == 1.0
        assert task.score(doc, format_answer(right))["accuracy"] == 1.0  # the option's text counts
        wrong = next(o for o in doc["options"] if o != right)
        assert task.score(doc, format_answer(wrong))["accuracy"] == 0.0
        text = task.to_messages(doc)[0]["content"][-1]["text"]
        assert text.endswith(doc["question"]) and "A. " in text and "letter" in text
    with pytest.raises(TaskError, match="attributes"):
        get_task("shapes-recognition", attributes=("weight",))


def test_charts_choice_docs_hold_the_true_answer_among_four_options():
    task = get_task("charts-choice", n=20)
    docs = task.load_docs().items
    plain = get_task("charts-qa", n=20).load_docs().items
    for doc, original in zip(docs, plain):
        assert doc["question"] == original["question"]
        assert len(doc["options"]) == len(set(doc["options"])) == 4
        assert doc["options"]["ABCD".index(doc["answer"])] == original["answer"]
        assert task.score(doc, format_answer(doc["answer"]))["accuracy"] == 1.0
    assert {d["question_type"] for d in docs} >= {"max", "difference"}


class VotingVLM:
    """Gives, per prompt, the scripted list of outputs (cycled over the n samples)."""

    name = "voting"

    def __init__(self, outputs):
        self.outputs = outputs
        self.samplings = []

    def generate(self, conversations, sampling):
        self.samplings.append(sampling)
        result = []
        for index, _ in enumerate(conversations):
            for sample in range(sampling.n):
                text = self.outputs[sample % len(self.outputs)]
                result.append(Generation(text, [1], [0.0], index, sample, "stop"))
        return result


def test_self_consistency_scores_the_majority_answer(tmp_path):
    base = get_task("shapes-recognition", n=3)
    docs = base.load_docs().items
    # Of four samples: one wrong letter, the right one twice, one unparseable.
    right = docs[0]["answer"]
    wrong = next(letter for letter in "ABCD" if letter != right)
    vlm = VotingVLM([format_answer(wrong), format_answer(right), format_answer(right), "garbage"])
    voting = self_consistency_task(base, votes=4, seed=3)
    assert voting.name == "shapes-recognition-vote4" and voting.interactive
    results = evaluate(vlm, [voting], out_dir=tmp_path, limit=1, show_progress=False)
    metrics = results["tasks"][voting.name]["metrics"]
    assert metrics["accuracy"] == 1.0 and metrics["agreement"] == 0.5
    assert vlm.samplings[0].n == 4 and vlm.samplings[0].temperature == 1.0
    with pytest.raises(TaskError, match="at least one vote"):
        self_consistency_task(base, votes=0)
