"""Teacher masking and the progressive schedule of Masters (Lee et al., 2025, §3.1-3.2).

The teacher is weakened temporarily by magnitude masking: in every masked weight matrix the
fraction `ratio` of weights with the smallest magnitude is set to zero (Eq. 1-2, the threshold
computed per matrix, because one global threshold empties some layers and breaks the
teacher). Masks are parametrisations (`torch.nn.utils.parametrize`): the stored weights never
change, so removing the masks gives back the exact teacher, and no copy of the model is made.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.nn.utils import parametrize


def magnitude_mask(weight: torch.Tensor, ratio: float) -> torch.Tensor:
    """Boolean keep-mask of `weight`: False on the round(ratio * N) smallest |w| (Eq. 1).

    Eq. 1 keeps m_n = 1 where |w_n| >= lambda_r, with lambda_r chosen so that about N(1 - r)
    weights survive; taking exactly the k smallest magnitudes makes the count exact even when
    magnitudes tie.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    count = round(ratio * weight.numel())
    keep = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
    if count:
        smallest = torch.topk(weight.detach().abs().flatten().float(), count, largest=False).indices
        keep[smallest] = False
    return keep.view_as(weight)


class _Masked(torch.nn.Module):
    """Parametrisation W -> M ⊙ W (Eq. 2) with a fixed mask."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask.to(weight.dtype)


def maskable_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Linear]]:
    """The weight matrices Masters masks: every linear layer except the output head.

    The output head is left alone because many VLMs tie it to the input embeddings (the tiny
    default does), and masking it would also mask the embedding table.
    """
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not output
    ]


def apply_masks(model: torch.nn.Module, ratio: float) -> int:
    """Mask every maskable matrix of `model` at `ratio` (per-matrix threshold); returns how many.

    Ratio 0 registers nothing, so the model is exactly the unmasked teacher. Masks already
    present are removed first (masks never stack).
    """
    remove_masks(model)
    if ratio == 0:
        return 0
    modules = maskable_modules(model)
    with torch.no_grad():
        for _, module in modules:
            parametrize.register_parametrization(
                module, "weight", _Masked(magnitude_mask(module.weight, ratio))
            )
    return len(modules)


def remove_masks(model: torch.nn.Module) -> None:
    """Remove every mask; the original weights come back bit for bit."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight") and any(
            isinstance(p, _Masked) for p in module.parametrizations["weight"]
        ):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)


@contextmanager
def masked(model: torch.nn.Module, ratio: float) -> Iterator[torch.nn.Module]:
    """`with masked(teacher.model, 0.2): ...` runs the masked teacher, then restores it."""
    apply_masks(model, ratio)
    try:
        yield model
    finally:
        remove_masks(model)


def stage_ratios(ratio_max: float = 0.20, ratio_step: float = 0.05) -> list[float]:
    """The masked teachers' ratios: r_max, r_max - s, ..., 0 (M = r_max / s + 1 stages, §3.2)."""
    if ratio_step <= 0 or ratio_max < 0 or ratio_max >= 1:
        raise ValueError(f"need 0 <= ratio_max < 1 and ratio_step > 0, got {ratio_max}, {ratio_step}")
    stages = math.floor(ratio_max / ratio_step + 1e-9) + 1
    return [round(ratio_max - ratio_step * i, 10) for i in range(stages - 1)] + [0.0]


def ratio_at(iteration: int, total: int, ratio_max: float = 0.20, ratio_step: float = 0.05) -> float:
    """Eq. 3: r[i] = r_max - s * floor(i * M / I), the ratio at training iteration i of I.

    The last stage is the unmasked teacher (ratio 0), also when s does not divide r_max; with
    fewer iterations than stages (I < M) the later stages are never reached, as in Eq. 3.
    """
    if not 0 <= iteration < total:
        raise ValueError(f"iteration must be in [0, {total}), got {iteration}")
    ratios = stage_ratios(ratio_max, ratio_step)
    return ratios[iteration * len(ratios) // total]
