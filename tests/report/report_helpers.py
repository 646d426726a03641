"""Hand-made episodes of every replay kind, written the way methods write them.

They follow the `info["replay"]` schemas of the method packages (spy games, tool trajectories,
masks, environment episodes), so the report's views are tested before the methods land.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from vlmrl.data_recipes.masks import encode_rle
from vlmrl.rl.episode import Episode, Turn, save_episodes

PAYLOAD = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def image(colour: str, size: tuple[int, int] = (32, 32)) -> Image.Image:
    return Image.new("RGB", size, colour)


def _turn(text: str) -> Turn:
    ids = list(range(3, 3 + max(1, len(text) // 4)))
    return Turn(token_ids=ids, logprobs=[-0.5] * len(ids), text=text)


def user(*parts) -> dict:
    content = [
        {"type": "image", "image": p} if isinstance(p, Image.Image) else {"type": "text", "text": p}
        for p in parts
    ]
    return {"role": "user", "content": content}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def qa_episodes(text: str = "<answer>red</answer>") -> list[Episode]:
    """A GRPO group of two RLVR-style episodes (no replay: the conversation view)."""
    prompt = user(image("red"), "What colour is the cube?")
    return [
        Episode(
            messages=[prompt, assistant(answer)],
            turns=[_turn(answer)],
            reward=reward,
            reward_components={"accuracy": reward, "format": 1.0},
            group="0:shapes-0-1",
            info={"answer": "red"},
        )
        for answer, reward in ((text, 1.0), ("<answer>blue</answer>", 0.0))
    ]


def spy_episode() -> Episode:
    players = [image("red"), image("red"), image("blue")]  # player 3 holds the edited image
    clue = "I see a red square" + PAYLOAD
    return Episode(
        messages=[
            user(players[0], players[1], players[2], "Clues so far. Who is the spy?"),
            assistant("<vote>3</vote>"),
        ],
        turns=[_turn("<vote>3</vote>")],
        reward=1.0,
        group="game-7",
        role="civilian",
        info={
            "correct": True,
            "replay": {
                "kind": "spy_game",
                "game": "game-7",
                "spy": 3,
                "players": [
                    {"number": 1, "role": "civilian", "image": 0},
                    {"number": 2, "role": "civilian", "image": 1},
                    {"number": 3, "role": "spy", "image": 2},
                ],
                "clues": [
                    {"round": 1, "player": 1, "text": clue},
                    {"round": 1, "player": 2, "text": "a red block"},
                    {"round": 1, "player": 3, "text": "something coloured"},
                ],
                "decisions": [
                    {"voter": 1, "vote": 3, "raw": "<vote>3</vote>"},
                    {"voter": 2, "vote": "N/A", "raw": "<vote>N/A</vote>"},
                    {"voter": "observer", "vote": None, "raw": "garbled"},
                ],
                "rewards": {"1": 1.0, "2": 0.0, "3": -1.0},
                "stage": "decision",
            },
        },
    )


def tool_episode() -> Episode:
    original, crop = image("gray", (64, 48)), image("green", (24, 24))
    call = '<tool_call>{"name": "zoom", "arguments": {"bbox": [0.1, 0.2, 0.5, 0.6]}}</tool_call>'
    return Episode(
        messages=[
            user(original, "Where is the green ball?"),
            assistant(call),
            user(crop, "observation 1"),
            assistant("<answer>left</answer>"),
        ],
        turns=[_turn(call), _turn("<answer>left</answer>")],
        reward=1.0,
        group="probe-1",
        truncated=False,
        info={
            "correct": True,
            "replay": {
                "kind": "tool_trajectory",
                "question": "Where is the green ball?",
                "steps": [
                    {
                        "turn": 0,
                        "source": "original_image",
                        "bbox": [0.1, 0.2, 0.5, 0.6],
                        "crop_image": 1,
                        "crop_size": [24, 24],
                        "error": None,
                    },
                    {
                        "turn": 1,
                        "source": "observation_1",
                        "bbox": [2, "x", 0, 0],
                        "crop_image": None,
                        "crop_size": None,
                        "error": "bbox outside the image",
                    },
                ],
                "answer": "left",
                "truth": "left",
                "correct": True,
                "overturn": True,
            },
        },
    )


def mask_episode() -> Episode:
    scene = image("white", (16, 16))
    truth = np.zeros((16, 16), dtype=bool)
    truth[4:12, 4:12] = True
    predicted = np.zeros((16, 16), dtype=bool)
    predicted[6:14, 6:14] = True
    intersection = (truth & predicted).sum()
    union = (truth | predicted).sum()
    tokens = "<|mt_start|><|mt_0012|><|mt_0345|><|mt_end|>"
    return Episode(
        messages=[user(scene, "Segment the red cube."), assistant(tokens)],
        turns=[_turn(tokens)],
        reward=float(intersection / union),
        group="refseg-2",
        info={
            "correct": False,
            "replay": {
                "kind": "mask",
                "expression": "the red cube",
                "tokens": tokens,
                "truth_rle": encode_rle(truth),
                "predicted_rle": encode_rle(predicted),
                "iou": float(intersection / union),
            },
        },
    )


def env_episode() -> Episode:
    frames = [image("black"), image("yellow")]
    return Episode(
        messages=[
            user(frames[0], "Move to the goal."),
            assistant("<action>left</action>"),
            user(frames[1], "You moved."),
            assistant("<action>jump</action>"),
        ],
        turns=[_turn("<action>left</action>"), _turn("<action>jump</action>")],
        step_rewards=[0.0, 1.0],
        reward=1.0,
        group="gridworld-0",
        info={
            "replay": {
                "kind": "env_episode",
                "env": "gridworld",
                "steps": [
                    {
                        "frame": 0,
                        "action": "<action>left</action>",
                        "parsed_action": "left",
                        "valid": True,
                        "value": 0.25,
                        "reward": 0.0,
                    },
                    {
                        "frame": 1,
                        "action": "<action>jump</action>",
                        "parsed_action": None,
                        "valid": False,
                        "value": None,
                        "reward": 1.0,
                    },
                ],
                "success": True,
            }
        },
    )


def write_run(directory: Path, step: int = 3, qa_text: str = "<answer>red</answer>") -> Path:
    """A run directory with one samples file holding every kind of episode, and metrics."""
    directory.mkdir(parents=True, exist_ok=True)
    episodes = [*qa_episodes(qa_text), spy_episode(), tool_episode(), mask_episode(), env_episode()]
    advantages = [0.5, -0.5, 1.0, [0.25, 0.75], -0.2, [0.1, 0.9]]
    save_episodes(episodes, directory / "samples" / f"step-{step}.jsonl", "images", advantages=advantages)
    with open(directory / "metrics.jsonl", "w") as handle:
        for index in range(1, 4):
            record = {
                "step": index,
                "time": 1.0,
                "reward_mean": 0.1 * index,
                "reward/accuracy_mean": 0.1 * index,
                "kl": 0.01,
                "entropy": 0.5,
                "clip_fraction_high": 0.0,
                "length_mean": 4.0,
                "learning_rate": 0.0003,
                "loss": 0.1,
                "my_new_metric": index,
            }
            handle.write(json.dumps(record) + "\n")
    (directory / "config.yaml").write_text("steps: 3\nmodel: tiny\n")
    return directory
