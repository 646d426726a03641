"""Teacher masks: exact at ratio 0, magnitude-based per matrix, reversible; the schedule."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

from vlmrl.masters.masking import (
    apply_masks,
    magnitude_mask,
    maskable_modules,
    masked,
    ratio_at,
    remove_masks,
    stage_ratios,
)
from vlmrl.model.tiny import build_random_tiny


@pytest.fixture(scope="module")
def teacher():
    return build_random_tiny("tiny", seed=3)


def _logits(vlm) -> torch.Tensor:
    ids = torch.arange(5, 25).unsqueeze(0)
    with torch.no_grad():
        return vlm.model.model.language_model(input_ids=ids).last_hidden_state


def test_magnitude_mask_zeroes_exactly_the_smallest_fraction():
    weight = torch.tensor([[0.5, -0.1, 2.0, 0.05], [-3.0, 0.2, -0.01, 1.0]])
    keep = magnitude_mask(weight, 0.25)  # 2 of 8 weights: |-0.01| and |0.05|
    assert keep.tolist() == [[True, True, True, False], [True, True, False, True]]
    assert magnitude_mask(weight, 0.0).all()
    with pytest.raises(ValueError, match="ratio"):
        magnitude_mask(weight, 1.0)


def test_ratio_zero_is_the_exact_teacher(teacher):
    before = _logits(teacher)
    assert apply_masks(teacher.model, 0.0) == 0
    assert not any(parametrize.is_parametrized(m) for m in teacher.model.modules())
    assert torch.equal(_logits(teacher), before)


def test_each_matrix_loses_its_own_smallest_fraction_and_removal_restores(teacher):
    original = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    before = _logits(teacher)
    ratio = 0.2
    with masked(teacher.model, ratio):
        modules = maskable_modules(teacher.model)
        assert modules and all(parametrize.is_parametrized(m, "weight") for _, m in modules)
        for name, module in modules:
            effective = module.weight  # through the parametrisation
            stored = module.parametrizations["weight"].original
            zeroed = effective == 0
            assert int(zeroed.sum()) == round(ratio * stored.numel()), name
            # magnitude-based, threshold per matrix: every zeroed weight is no larger than any kept one
            assert stored.abs()[zeroed].max() <= stored.abs()[~zeroed].min(), name
        assert not torch.equal(_logits(teacher), before)
        # the output head (tied to the embeddings) is not masked
        assert not parametrize.is_parametrized(teacher.model.get_output_embeddings())
    restored = teacher.model.state_dict()
    assert set(restored) == set(original)
    assert all(torch.equal(restored[k], original[k]) for k in original)
    assert torch.equal(_logits(teacher), before)


def test_masks_do_not_stack_and_remove_is_idempotent(teacher):
    apply_masks(teacher.model, 0.1)
    apply_masks(teacher.model, 0.2)
    _, module = maskable_modules(teacher.model)[0]
    assert len(module.parametrizations["weight"]) == 1
    assert int((module.weight == 0).sum()) == round(0.2 * module.weight.numel())
    remove_masks(teacher.model)
    remove_masks(teacher.model)
    assert not parametrize.is_parametrized(module)


def test_schedule_is_the_papers_and_monotone():
    assert stage_ratios() == [0.2, 0.15, 0.1, 0.05, 0.0]
    assert stage_ratios(0.4, 0.1) == [0.4, 0.3, 0.2, 0.1, 0.0]
    # Eq. 3 with I = 10 iterations and M = 5 stages: two iterations per stage
    schedule = [ratio_at(i, 10) for i in range(10)]
    assert schedule == [0.2, 0.2, 0.15, 0.15, 0.1, 0.1, 0.05, 0.05, 0.0, 0.0]
    for total in (1, 3, 7, 40, 101):
        values = [ratio_at(i, total) for i in range(total)]
        assert all(a >= b for a, b in zip(values, values[1:]))
        # every stage is reached once there are at least as many iterations as stages
        if total >= 5:
            assert values[-1] == 0.0 and sorted(set(values), reverse=True) == stage_ratios()
    assert [ratio_at(i, 3) for i in range(3)] == [0.2, 0.15, 0.05]  # I < M skips stages, as Eq. 3 does
    with pytest.raises(ValueError):
        stage_ratios(0.2, 0.0)
