"""Episodes: what every rollout source produces and every trainer consumes (DESIGN 3.2).

An `Episode` is one agent's trajectory: the whole conversation (with images), the assistant
turns it produced (exact token ids and the sampler's log-probs), rewards and bookkeeping.
Prompt datasets, games, the tool loop, environments and offline datasets all produce them
through the `RolloutSource` protocol; reward functions are plain callables on episodes.

Episodes serialise to JSONL with their images as PNG files in a sibling folder, so rollouts
can be replayed and offline datasets (Masters) stored and loaded back.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vlmrl.runs import atomic_write_bytes, atomic_write_text, json_default

FORMAT_VERSION = 1


class EpisodeFormatError(ValueError):
    """A stored episode file does not have the expected shape."""


@dataclass
class Turn:
    """One assistant turn: the exact sampled ids, the sampler's log-probs of them, the text.

    `logprobs` may be empty for turns the current policy did not sample (offline data); the
    trainer then recomputes old log-probs with the policy before updating.
    """

    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str = "stop"

    def __post_init__(self) -> None:
        if self.logprobs and len(self.logprobs) != len(self.token_ids):
            raise ValueError(
                f"turn has {len(self.token_ids)} token ids but {len(self.logprobs)} logprobs (expected equal)"
            )


@dataclass
class Episode:
    """One trajectory. `messages` is the full conversation including the assistant turns.

    - `turns`: the assistant turns in order; turn k is the k-th assistant message.
    - `step_rewards`: one reward per turn (environment steps: VL-DAC); may be empty.
    - `reward`: the scalar the advantage estimator reads; `reward_components` its parts.
    - `group`: episodes normalised together (a GRPO group, one game, one test item).
    - `role`: a player's role in a game (advantages can be normalised within role).
    - `truncated`: hit the turn or context limit (over-turn masking may drop it).
    - `masked`: excluded from the loss (format failure, over-turn): applied in one place,
      `vlmrl.rl.losses.policy_loss`, through the episode mask the trainer builds.
    """

    messages: list[dict[str, Any]]
    turns: list[Turn]
    reward: float = 0.0
    reward_components: dict[str, float] = field(default_factory=dict)
    step_rewards: list[float] = field(default_factory=list)
    group: str = ""
    role: str = ""
    truncated: bool = False
    masked: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The last turn's text (the answer of single-turn episodes)."""
        return self.turns[-1].text if self.turns else ""

    @property
    def action_token_count(self) -> int:
        return sum(len(turn.token_ids) for turn in self.turns)


@runtime_checkable
class RolloutSource(Protocol):
    """Anything that produces episodes with a policy: prompt datasets, games, tool loops, envs.

    `collect` must be a pure function of (policy weights, the source's state, `rng`, and the
    torch RNG used by sampling) so that a resumed run repeats an uninterrupted one exactly;
    `state_dict` returns JSON-serialisable state (cursors, epoch) and `load_state_dict`
    restores it.
    """

    def collect(self, policy: Any, n: int, rng: np.random.Generator) -> list[Episode]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# --------------------------------------------------------------------------- serialisation


def _image_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _encode_content(content: Any, images_directory: Path, relative_to: Path, written: set[str]) -> Any:
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "image":
            image = part.get("image")
            if isinstance(image, (str, Path)):
                parts.append({"type": "image", "image": str(image)})
                continue
            data = _image_bytes(image)
            # Content-addressed names: an image shared by a group's episodes is stored once.
            name = hashlib.sha256(data).hexdigest()[:24] + ".png"
            if name not in written:
                path = images_directory / name
                if not path.exists():
                    atomic_write_bytes(path, data)
                written.add(name)
            parts.append({"type": "image", "image": str((images_directory / name).relative_to(relative_to))})
        else:
            parts.append(part)
    return parts


def episode_to_record(episode: Episode, images_directory: Path, relative_to: Path, written: set[str]) -> dict:
    messages = []
    for message in episode.messages:
        encoded = {k: v for k, v in message.items() if k != "content"}
        encoded["content"] = _encode_content(
            message.get("content", ""), images_directory, relative_to, written
        )
        messages.append(encoded)
    return {
        "version": FORMAT_VERSION,
        "messages": messages,
        "turns": [
            {
                "token_ids": list(turn.token_ids),
                "logprobs": list(turn.logprobs),
                "text": turn.text,
                "finish_reason": turn.finish_reason,
            }
            for turn in episode.turns
        ],
        "reward": float(episode.reward),
        "reward_components": {k: float(v) for k, v in episode.reward_components.items()},
        "step_rewards": [float(r) for r in episode.step_rewards],
        "group": episode.group,
        "role": episode.role,
        "truncated": bool(episode.truncated),
        "masked": bool(episode.masked),
        "info": episode.info,
    }


def save_episodes(
    episodes: Iterable[Episode],
    path: str | Path,
    images_folder: str | None = None,
    advantages: Sequence[Any] | None = None,
) -> Path:
    """Write episodes as JSONL at `path`, images as PNG files in `<stem>_images/` beside it.

    Images are written first and the JSONL last, each atomically, so a killed writer never
    leaves a JSONL that points at missing images. Image paths are stored relative to the
    JSONL's folder, so the pair can be moved together. `advantages` (one per episode: a
    number, or a list with one per turn) are stored under the record's `advantage` key for
    the report; loading ignores them (advantages are recomputed from rewards when training).
    """
    path = Path(path)
    folder = path.parent / (images_folder or f"{path.stem}_images")
    episodes = list(episodes)
    if advantages is not None and len(advantages) != len(episodes):
        raise ValueError(f"{len(advantages)} advantages for {len(episodes)} episodes (expected one each)")
    written: set[str] = set()
    lines = []
    for index, episode in enumerate(episodes):
        record = episode_to_record(episode, folder, path.parent, written)
        if advantages is not None:
            record["advantage"] = advantages[index]
        lines.append(json.dumps(record, default=json_default))
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def _require(record: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in record:
        raise EpisodeFormatError(f"{where}: missing key '{key}'")
    value = record[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise EpisodeFormatError(f"{where}: '{key}' must be {names}, got {type(value).__name__}")
    return value


def episode_from_record(record: Any, base: Path, where: str, load_images: bool = False) -> Episode:
    if not isinstance(record, dict):
        raise EpisodeFormatError(f"{where}: expected a JSON object per line, got {type(record).__name__}")
    messages = _require(record, "messages", list, where)
    decoded = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise EpisodeFormatError(f"{where}: message {index} must be an object with a 'role'")
        message = dict(message)
        content = message.get("content", "")
        if isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image":
                    image_path = base / str(part.get("image"))
                    if not image_path.is_file():
                        raise EpisodeFormatError(
                            f"{where}: message {index} refers to missing image {image_path}"
                        )
                    image: Any = str(image_path)
                    if load_images:
                        from vlmrl.model import load_image

                        image = load_image(image_path, where)
                    parts.append({"type": "image", "image": image})
                else:
                    parts.append(part)
            message["content"] = parts
        decoded.append(message)
    turns = []
    for index, turn in enumerate(_require(record, "turns", list, where)):
        if not isinstance(turn, dict):
            raise EpisodeFormatError(f"{where}: turn {index} must be an object")
        try:
            turns.append(
                Turn(
                    token_ids=[int(t) for t in _require(turn, "token_ids", list, where)],
                    logprobs=[float(v) for v in turn.get("logprobs") or []],
                    text=str(turn.get("text", "")),
                    finish_reason=str(turn.get("finish_reason", "stop")),
                )
            )
        except (TypeError, ValueError) as error:
            raise EpisodeFormatError(f"{where}: turn {index}: {error}") from error
    try:
        return Episode(
            messages=decoded,
            turns=turns,
            reward=float(record.get("reward", 0.0)),
            reward_components={str(k): float(v) for k, v in (record.get("reward_components") or {}).items()},
            step_rewards=[float(r) for r in record.get("step_rewards") or []],
            group=str(record.get("group", "")),
            role=str(record.get("role", "")),
            truncated=bool(record.get("truncated", False)),
            masked=bool(record.get("masked", False)),
            info=dict(record.get("info") or {}),
        )
    except (TypeError, ValueError, AttributeError) as error:
        raise EpisodeFormatError(f"{where}: {error}") from error


def load_episodes(path: str | Path, load_images: bool = False) -> list[Episode]:
    """Read episodes written by `save_episodes` (or by hand in the same format).

    Images come back as file paths (the VLM wrapper accepts paths), or as PIL images with
    `load_images=True`. Errors name the file, the line and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected an episodes JSONL file)")
    episodes = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise EpisodeFormatError(f"{where}: not valid JSON ({error})") from error
        episodes.append(episode_from_record(record, path.parent, where, load_images))
    return episodes


# --------------------------------------------------------------------------- offline source


class OfflineSource:
    """Replays stored episodes in a fixed order (offline RL, Masters, tests), cycling.

    `collect` returns the next `n` episodes; under several processes each takes its
    contiguous slice of the next `n * world_size`, so the global batch equals a single
    process's batch of that size.
    """

    def __init__(self, episodes: Sequence[Episode]):
        if not episodes:
            raise ValueError("OfflineSource needs at least one episode")
        self.episodes = list(episodes)
        self.cursor = 0

    def collect(self, policy: Any, n: int, rng: np.random.Generator) -> list[Episode]:
        from vlmrl.rl.distributed import rank_and_world

        rank, world = rank_and_world()
        chosen = [self.episodes[(self.cursor + i) % len(self.episodes)] for i in range(n * world)]
        self.cursor = (self.cursor + n * world) % len(self.episodes)
        return [_copy_episode(e) for e in chosen[rank * n : (rank + 1) * n]]

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursor = int(state["cursor"])


def _copy_episode(episode: Episode) -> Episode:
    # Rewards and masks are written into episodes by the trainer; replaying must not see them.
    return Episode(
        messages=episode.messages,
        turns=episode.turns,
        reward=episode.reward,
        reward_components=dict(episode.reward_components),
        step_rewards=list(episode.step_rewards),
        group=episode.group,
        role=episode.role,
        truncated=episode.truncated,
        masked=episode.masked,
        info=dict(episode.info),
    )
