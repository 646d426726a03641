import math

import pytest
import torch

from vlmrl.rl.losses import LossSettings, aggregate, kl_k3, policy_loss

LOG = math.log


def _single(advantage: float, settings: LossSettings):
    logprobs = torch.tensor([[LOG(1.5), LOG(0.5), 0.0]], requires_grad=True)
    old = torch.zeros(1, 3)
    mask = torch.tensor([[True, True, False]])
    loss, metrics = policy_loss(logprobs, old, torch.tensor([advantage]), mask, settings)
    return logprobs, loss, metrics


def test_ppo_clip_positive_advantage_by_hand():
    logprobs, loss, metrics = _single(1.0, LossSettings())
    # token 0: ratio 1.5 clipped to 1.2 -> -1.2; token 1: ratio 0.5 unclipped -> -0.5
    assert loss.item() == pytest.approx(-0.85)
    assert metrics["clip_fraction_high"] == pytest.approx(0.5)
    assert metrics["clip_fraction_low"] == 0.0
    assert metrics["ratio_mean"] == pytest.approx(1.0)
    loss.backward()
    # clipped token has no gradient; unclipped: d(-ratio)/dlogp / 2 tokens = -0.5 / 2
    assert torch.allclose(logprobs.grad, torch.tensor([[0.0, -0.25, 0.0]]))


def test_ppo_clip_negative_advantage_by_hand():
    _, loss, metrics = _single(-1.0, LossSettings())
    # token 0: min(-1.5, -1.2) = -1.5 -> 1.5; token 1: min(-0.5, -0.8) = -0.8 -> 0.8
    assert loss.item() == pytest.approx(1.15)
    assert metrics["clip_fraction_low"] == pytest.approx(0.5)
    assert metrics["clip_fraction_high"] == 0.0


def test_clip_higher_widens_the_upper_range_only():
    _, loss, metrics = _single(1.0, LossSettings(epsilon_low=0.2, epsilon_high=0.6))
    assert loss.item() == pytest.approx((-1.5 - 0.5) / 2)
    assert metrics["clip_fraction_high"] == 0.0


def _two_rows():
    logprobs = torch.tensor([[LOG(1.5), LOG(0.5), 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    return logprobs, torch.zeros(2, 3), torch.tensor([1.0, 1.0]), mask


@pytest.mark.parametrize(
    "aggregation, expected",
    [
        ("token_mean", (-1.2 - 0.5 - 1.0) / 3),
        ("seq_mean", (-0.85 - 1.0) / 2),
        ("token_sum_norm", (-1.2 - 0.5 - 1.0) / (2 * 4)),
    ],
)
def test_aggregations_by_hand(aggregation, expected):
    logprobs, old, advantages, mask = _two_rows()
    settings = LossSettings(aggregation=aggregation, max_length=4)
    loss, _ = policy_loss(logprobs, old, advantages, mask, settings)
    assert loss.item() == pytest.approx(expected)


def test_episode_mask_drops_whole_episodes():
    logprobs, old, advantages, mask = _two_rows()
    loss, metrics = policy_loss(
        logprobs, old, advantages, mask, LossSettings(), episode_mask=torch.tensor([True, False])
    )
    assert loss.item() == pytest.approx(-0.85)
    assert metrics["tokens"] == 2


def test_micro_batches_with_global_counts_sum_to_the_whole_batch():
    logprobs, old, advantages, mask = _two_rows()
    for aggregation in ("token_mean", "seq_mean", "token_sum_norm"):
        settings = LossSettings(aggregation=aggregation, max_length=4)
        whole, _ = policy_loss(logprobs, old, advantages, mask, settings)
        parts = [
            policy_loss(
                logprobs[i : i + 1],
                old[i : i + 1],
                advantages[i : i + 1],
                mask[i : i + 1],
                settings,
                token_count=3,
                sequence_count=2,
            )[0]
            for i in range(2)
        ]
        assert (parts[0] + parts[1]).item() == pytest.approx(whole.item())


def test_kl_k3_and_beta():
    assert kl_k3(torch.tensor([0.0]), torch.tensor([LOG(2.0)])).item() == pytest.approx(1 - LOG(2.0))
    assert kl_k3(torch.tensor([0.3]), torch.tensor([0.3])).item() == 0.0
    logprobs = torch.zeros(1, 2)
    reference = torch.tensor([[LOG(2.0), 0.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, metrics = policy_loss(
        logprobs, logprobs, torch.tensor([0.0]), mask, LossSettings(beta=0.5), reference_logprobs=reference
    )
    # advantage 0: only the KL term, 0.5 * mean(0.30685, 0)
    assert loss.item() == pytest.approx(0.5 * (1 - LOG(2.0)) / 2)
    assert metrics["kl"] == pytest.approx((1 - LOG(2.0)) / 2)
    with pytest.raises(ValueError, match="reference_logprobs"):
        policy_loss(logprobs, logprobs, torch.tensor([0.0]), mask, LossSettings(beta=0.1))


def test_entropy_bonus_lowers_the_loss():
    logprobs = torch.zeros(1, 2)
    mask = torch.tensor([[True, False]])
    entropy = torch.tensor([[2.0, 100.0]])
    loss, metrics = policy_loss(
        logprobs, logprobs, torch.tensor([0.0]), mask, LossSettings(entropy_coef=0.1), entropy=entropy
    )
    assert loss.item() == pytest.approx(-0.2)
    assert metrics["entropy"] == pytest.approx(2.0)


def test_per_token_advantages_and_bad_input():
    logprobs = torch.zeros(1, 3)
    loss, _ = policy_loss(
        logprobs,
        logprobs,
        torch.tensor([[0.0, 2.0, 4.0]]),
        torch.ones(1, 3, dtype=torch.bool),
        LossSettings(),
    )
    assert loss.item() == pytest.approx(-2.0)
    with pytest.raises(ValueError, match="one shape"):
        policy_loss(
            logprobs, torch.zeros(1, 2), torch.zeros(1), torch.ones(1, 3, dtype=torch.bool), LossSettings()
        )
    with pytest.raises(ValueError, match="max_length"):
        LossSettings(aggregation="token_sum_norm")
    with pytest.raises(ValueError, match="not one of"):
        LossSettings(aggregation="mean")
    with pytest.raises(ValueError, match="not one of"):
        aggregate(logprobs, torch.ones(1, 3), "sum")


def test_kl_ratio_correction_weights_kl_by_the_ratio():
    logprobs, old = torch.zeros(1, 1), torch.full((1, 1), LOG(0.5))  # ratio 2
    reference = torch.full((1, 1), LOG(2.0))
    mask = torch.ones(1, 1, dtype=torch.bool)
    for correction, expected in ((False, 1 - LOG(2.0)), (True, 2 * (1 - LOG(2.0)))):
        settings = LossSettings(beta=1.0, kl_ratio_correction=correction)
        loss, _ = policy_loss(
            logprobs, old, torch.tensor([0.0]), mask, settings, reference_logprobs=reference
        )
        assert loss.item() == pytest.approx(expected)
