"""Navigation worlds: MiniWorld (VL-DAC's 3-D rooms) and MiniGrid, through their packages.

MiniWorld renders with OpenGL. On a machine without a display it needs pyglet's headless
mode over EGL (Mesa's `libEGL`), which we switch on before pyglet is first imported; where
no EGL driver exists, making a MiniWorld world raises `NavigationUnavailable` naming the
cause, and MiniGrid (pure numpy drawing) is the navigation world that always works.

Both are wrapped to carry what every world of `vlmrl.envs` has: `action_names`,
`task_text()` and `info["success"]` (a positive reward: the goal was reached).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image

# MiniWorld's reference task sentences (VL-DAC prompts them as "to go to ..."), our words.
MINIWORLD_TASKS = {
    "MiniWorld-OneRoom-v0": "go to the red box",
    "MiniWorld-FourRooms-v0": "go to the red box",
    "MiniWorld-Hallway-v0": "go to the red box at the end of the hallway",
    "MiniWorld-WallGap-v0": "go through the gap in the wall to the red box",
}
MINIWORLD_ACTIONS = ["turn left", "turn right", "move forward", "move back"]
MINIGRID_ACTIONS = ["turn left", "turn right", "move forward"]


class NavigationUnavailable(RuntimeError):
    """The navigation package cannot run here (not installed, or no headless OpenGL)."""


def _load_triton_before_mesa() -> None:
    """Load triton's LLVM before Mesa's EGL driver brings its own.

    Measured here: once a MiniWorld context has loaded Mesa (whose llvmpipe links LLVM), the
    first import of triton (which torch._dynamo, torchvision.ops and lmms-eval pull in) dies
    with a segmentation fault; in the other order both work. Importing torch._dynamo first
    is harmless where triton is absent (CPU builds of torch).
    """
    try:
        import torch._dynamo  # noqa: F401
    except Exception:  # no triton, or a torch without dynamo: nothing to order
        pass


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    if frame.shape[0] == size and frame.shape[1] == size:
        return frame
    return np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR))


class MiniWorldNavigation(gym.Wrapper):
    """A MiniWorld task (default OneRoom) with square frames of `image_size` pixels."""

    def __init__(self, env_id: str = "MiniWorld-OneRoom-v0", image_size: int = 168, max_steps: int = 128):
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
        _load_triton_before_mesa()
        try:
            import pyglet

            pyglet.options["headless"] = True
            import miniworld  # noqa: F401  (registers the MiniWorld-* ids)
        except ImportError as error:
            raise NavigationUnavailable(f"MiniWorld needs the 'miniworld' package: {error}") from error
        try:
            env = gym.make(
                env_id,
                render_mode="rgb_array",
                obs_width=image_size,
                obs_height=image_size,
                max_episode_steps=max_steps,
            )
            env.reset(seed=0)
        except Exception as error:  # any OpenGL/EGL failure: name it, let the caller fall back
            raise NavigationUnavailable(
                f"MiniWorld '{env_id}' cannot render headless here ({type(error).__name__}: {error}); "
                "it needs an EGL driver (Debian: libegl-mesa0). Use a minigrid world instead."
            ) from error
        super().__init__(env)
        self.env_id = env_id
        self.image_size = image_size
        count = int(env.action_space.n)
        self.action_names = MINIWORLD_ACTIONS[:count]
        self.mission = MINIWORLD_TASKS.get(env_id, "go to the red box")

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        observation, info = self.env.reset(seed=seed, options=options)
        return _resize(observation, self.image_size), {**info, "success": False}

    def step(self, action: int):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return (
            _resize(observation, self.image_size),
            float(reward),
            terminated,
            truncated,
            {**info, "success": bool(terminated and reward > 0)},
        )

    def task_text(self) -> str:
        return ""


class MiniGridNavigation(gym.Wrapper):
    """A MiniGrid task (default the 5x5 empty room) seen from above as an RGB image.

    Actions are MiniGrid's first three (turn left, turn right, move forward), all that its
    navigation tasks need. The task sentence is MiniGrid's own `mission`.
    """

    def __init__(self, env_id: str = "MiniGrid-Empty-5x5-v0", image_size: int = 168, max_steps: int = 0):
        try:
            import minigrid  # noqa: F401  (registers the MiniGrid-* ids)
        except ImportError as error:
            raise NavigationUnavailable(f"MiniGrid needs the 'minigrid' package: {error}") from error
        options: dict[str, Any] = {"render_mode": "rgb_array"}
        if max_steps:
            options["max_steps"] = max_steps
        env = gym.make(env_id, **options)
        super().__init__(env)
        self.env_id = env_id
        self.image_size = image_size
        self.action_names = list(MINIGRID_ACTIONS)
        self.action_space = gym.spaces.Discrete(len(self.action_names))
        self.observation_space = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.mission = ""

    def _frame(self) -> np.ndarray:
        return _resize(self.env.render(), self.image_size)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        _, info = self.env.reset(seed=seed, options=options)
        self.mission = str(self.env.unwrapped.mission)
        return self._frame(), {**info, "success": False}

    def step(self, action: int):
        if not self.action_space.contains(action):
            raise ValueError(f"MiniGrid action must be in 0..{self.action_space.n - 1}, got {action!r}")
        _, reward, terminated, truncated, info = self.env.step(action)
        return self._frame(), float(reward), terminated, truncated, {**info, "success": bool(reward > 0)}

    def task_text(self) -> str:
        return ""
