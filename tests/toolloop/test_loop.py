"""The one tool loop with both dialects, over-turn criteria, rewards and dynamic sampling."""

import numpy as np
import pytest
from PIL import Image
from toolloop_helpers import assistant_turns

from vlmrl.evals.interactive import LoopLimits, overturn_reason, run_tool_loop
from vlmrl.model import SamplingParams
from vlmrl.model.formats import format_tool_call
from vlmrl.toolloop.data import probe_record
from vlmrl.toolloop.grounding import format_grounding
from vlmrl.toolloop.rewards import answer_accuracy, format_score, informative_groups, trajectory_reward
from vlmrl.toolloop.rollout import ProbeSource, budget_curve, default_tools, make_reward, to_episode

TOOLS = default_tools(min_pixels=784, max_pixels=28224)
CALL = "<think>look</think>" + format_grounding([0.0, 0.0, 0.5, 0.5])
ANSWER = "<think>done</think><answer>red</answer>"


def start():
    image = Image.new("RGB", (336, 336), (10, 200, 10))
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Q?"}]}]


def run(reply, limits, vlm_class, count=1, **kwargs):
    vlm = vlm_class(reply, **kwargs)
    return vlm, run_tool_loop(
        vlm, [start() for _ in range(count)], SamplingParams(max_new_tokens=8), TOOLS, limits
    )


def test_both_dialects_share_the_loop_and_stop_strings(scripted):
    script = [CALL, format_tool_call("zoom", {"bbox": [0, 0, 100, 100]}), ANSWER]
    vlm, [trajectory] = run(
        lambda c: script[assistant_turns(c)], LoopLimits(max_turns=6, stop_at_calls=True), scripted
    )
    assert vlm.stops[0] == ["</grounding>", "</tool_call>"]
    assert trajectory.answer == "red" and trajectory.answered_turn == 3 and not trajectory.overturn
    assert [s["tool"] for s in trajectory.steps] == ["grounding", "zoom"]
    assert [s["crop_image"] for s in trajectory.steps] == [1, 2] and len(trajectory.images) == 3
    roles = [m["role"] for m in trajectory.messages]
    assert roles == ["user", "assistant", "user", "assistant", "tool", "assistant"]
    assert trajectory.steps[0]["bbox"] == [0.0, 0.0, 0.5, 0.5] and trajectory.steps[0]["crop_size"] == [
        168,
        168,
    ]


def test_malformed_calls_become_error_observations(scripted):
    bad = "<grounding>{not json}</grounding>"
    script = [bad, CALL, ANSWER]
    _, [trajectory] = run(lambda c: script[assistant_turns(c)], LoopLimits(max_turns=6), scripted)
    assert trajectory.tool_failures == 1 and trajectory.answer == "red"
    assert trajectory.steps[0]["error"] and trajectory.steps[0]["crop_image"] is None
    assert "tool failed" in trajectory.messages[2]["content"][0]["text"]


def test_overturn_criteria():
    limits = LoopLimits(max_turns=6, max_images=3, context_budget=1000, context_margin=100)
    assert overturn_reason(2, 1, limits, 500) is None
    assert overturn_reason(6, 1, limits, 500) == "turns"  # a call in the last allowed turn
    assert overturn_reason(2, 3, limits, 500) == "images"  # the image limit is reached
    assert overturn_reason(2, 1, limits, 901) == "context"  # within the margin of the budget
    assert overturn_reason(2, 1, limits, 900) is None
    assert overturn_reason(2, 99, LoopLimits(max_turns=6), 10**9) is None  # 0: no limit


def test_loop_marks_overturn_trajectories(scripted):
    always_call = lambda c: CALL  # noqa: E731
    _, [turns] = run(always_call, LoopLimits(max_turns=3), scripted)
    assert turns.overturn and turns.overturn_reason == "turns" and turns.turns == 3 and turns.answer is None
    assert len(turns.steps) == 2  # the last call never ran
    _, [images] = run(always_call, LoopLimits(max_turns=10, max_images=3), scripted)
    assert images.overturn_reason == "images" and len(images.images) == 3 and images.turns == 3
    _, [context] = run(
        always_call,
        LoopLimits(max_turns=10, context_budget=100, context_margin=20),
        scripted,
        prompt_tokens=lambda c: 20 * len(c),
    )
    # prompts of 1, 3, 5 messages -> 20/60/100 tokens + 8 new: the second observation is rolled back
    assert context.overturn_reason == "context" and context.turns == 2
    assert context.messages[-1]["role"] == "assistant"
    _, [void] = run(lambda c: "I am not sure", LoopLimits(max_turns=4), scripted)
    assert void.void and not void.overturn and void.turns == 1


def test_budget_curve_counts_answers_within_each_budget(scripted):
    trajectories = []
    for script in ([CALL, CALL, ANSWER], [ANSWER], [CALL, "<answer>blue</answer>"]):
        _, [trajectory] = run(lambda c, s=script: s[assistant_turns(c)], LoopLimits(max_turns=6), scripted)
        trajectories.append(trajectory)
    curve = budget_curve(trajectories, ["red", "red", "red"], [1, 2, 3, 6])
    assert curve == pytest.approx({1: 1 / 3, 2: 1 / 3, 3: 2 / 3, 6: 2 / 3})


def test_reward_and_format_hand_computed():
    assert trajectory_reward(1.0, 0.0, used_tool=True) == 1.0  # the reference: accuracy only
    assert trajectory_reward(1.0, 1.0, True, 1.0, 0.5, 0.2) == pytest.approx(0.8 + 0.5)
    assert trajectory_reward(1.0, 1.0, False, 1.0, 0.5, 0.2) == pytest.approx(1.5)
    assert trajectory_reward(0.0, 1.0, True, 1.0, 0.25, 0.0) == 0.25
    assert answer_accuracy(" Red. ", "red") == 1.0 and answer_accuracy(None, "red") == 0.0
    assert format_score([CALL, ANSWER]) == 1.0
    assert format_score(["<answer>red</answer>"]) == 0.0  # no <think>
    assert format_score([format_tool_call("zoom", {"bbox": [0, 0, 1, 1]}), ANSWER]) == 0.0
    assert format_score([CALL]) == 0.0


def test_informative_groups_hand_computed():
    rewards = [1, 0, 1, 1, 0, 0, 1, 0]
    groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
    overturn = [False, False, False, False, False, False, False, True]
    # a varies; b and c do not; d varies only through its over-turn member, which is excluded
    assert informative_groups(rewards, groups, overturn) == ["a"]
    assert informative_groups([0.5, 0.50001], ["x", "x"], [False, False]) == []  # std 5e-6 < 1e-4
    with pytest.raises(ValueError, match="one length"):
        informative_groups([1.0], ["a", "b"], [False])


class CorrectOnEvenRecords:
    """Answers every record right, except on odd records where it answers alternately."""

    def __init__(self):
        self.count = 0

    def __call__(self, conversation):
        question = conversation[0]["content"][-1]["text"]
        self.count += 1
        if "EVEN" in question:
            return "<think>x</think><answer>red</answer>"
        return "<think>x</think><answer>" + ("red" if self.count % 2 else "blue") + "</answer>"


def test_dynamic_sampling_drops_uniform_groups_and_logs_it(scripted):
    image = Image.new("RGB", (168, 168))

    def record_at(index):
        parity = "EVEN" if index % 2 == 0 else "ODD"
        return {
            "id": f"r{index}",
            "image": image,
            "question": f"{parity} Q",
            "answer": "red",
            "difficulty": "easy",
        }

    vlm = scripted(CorrectOnEvenRecords())
    source = ProbeSource(
        record_at,
        2,
        SamplingParams(max_new_tokens=8),
        TOOLS,
        LoopLimits(max_turns=2),
        make_reward(1.0, 0.0, 0.0),
        max_rounds=5,
    )
    episodes = source.collect(vlm, 4, np.random.default_rng(0))
    assert len(episodes) == 4
    assert all("ODD" in e.messages[0]["content"][-1]["text"] for e in episodes)
    metrics = source.rollout_metrics()
    assert metrics["rollout/dropped_groups"] >= 2 and metrics["rollout/rounds"] >= 2
    assert metrics["rollout/topped_up_groups"] == 0.0
    # bounded: when no group ever varies, the batch is topped up with dropped groups
    always = ProbeSource(
        lambda i: {**record_at(0), "id": f"e{i}"},
        2,
        SamplingParams(max_new_tokens=8),
        TOOLS,
        LoopLimits(max_turns=2),
        make_reward(1.0, 0.0, 0.0),
        max_rounds=2,
    )
    assert len(always.collect(scripted(CorrectOnEvenRecords()), 4, np.random.default_rng(0))) == 4
    assert always.rollout_metrics()["rollout/topped_up_groups"] == 2.0
    assert always.state_dict() == {"cursor": 4}


def test_episode_has_replay_and_masks_overturn(scripted):
    record = probe_record(0, 0, "easy", tile=84)
    script = [CALL, CALL]
    vlm = scripted(lambda c: script[min(assistant_turns(c), 1)])
    [trajectory] = run_tool_loop(
        vlm,
        [
            [
                {
                    "role": "user",
                    "content": [{"type": "image", "image": record["image"]}, {"type": "text", "text": "Q"}],
                }
            ]
        ],
        SamplingParams(max_new_tokens=8),
        TOOLS,
        LoopLimits(max_turns=2),
    )
    episode = to_episode(record, trajectory, "g")
    assert episode.truncated and episode.info["overturn"] and not episode.info["correct"]
    replay = episode.info["replay"]
    assert replay["kind"] == "tool_trajectory" and replay["overturn"] and replay["truth"] == record["answer"]
    assert replay["steps"][0]["crop_image"] == 1 and replay["steps"][0]["source"] == "original_image"
    assert len(episode.turns) == 2 and episode.turns[0].token_ids == [5, 6, 7]
