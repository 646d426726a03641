"""Our GRPO loss and gradients equal TRL 1.16 GRPOTrainer's `_compute_loss` on the same batch.

The batch (prompts with images, sampled completions, old and reference log-probs, advantages)
is built once; TRL's own loss code runs on it through its inputs dict, ours through
`vlm.score` + `policy_loss`.
"""

import tempfile

import pytest
import torch
from PIL import Image
from rl_helpers import tiny_policy

from vlmrl.model import SamplingParams
from vlmrl.rl.advantages import group_normalized_advantages
from vlmrl.rl.losses import LossSettings, policy_loss

MAX_COMPLETION = 8


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    vlm = tiny_policy()
    # TRL normalises log-probs over the whole vocabulary; match that support here.
    vlm.suppress_vision_placeholders = False
    prompts = [
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": Image.new("RGB", (56 + 28 * i, 56), (200 * i, 80, 30))},
                    {"type": "text", "text": f"What colour is it? {i}"},
                ],
            }
        ]
        for i in range(2)
    ]
    generations = vlm.generate(prompts, SamplingParams(max_new_tokens=MAX_COMPLETION, n=4, seed=3))
    conversations = [prompts[g.prompt_index] + [g.as_message()] for g in generations]
    rewards = torch.tensor([1.0, 0.0, 0.5, 2.0, 0.0, 0.0, 1.0, 3.0])
    advantages = group_normalized_advantages(rewards, [g.prompt_index for g in generations])
    generator = torch.Generator().manual_seed(1)
    # old and reference log-probs away from the current policy, so clipping and KL both act
    old = [
        torch.tensor(g.logprobs) + 0.3 * torch.randn(len(g.logprobs), generator=generator)
        for g in generations
    ]
    reference = [
        torch.tensor(g.logprobs) + 0.2 * torch.randn(len(g.logprobs), generator=generator)
        for g in generations
    ]
    return vlm, prompts, generations, conversations, advantages, old, reference


def _ours(vlm, conversations, advantages, old, reference, settings):
    vlm.model.zero_grad(set_to_none=True)
    scores = vlm.score(conversations, entropy=True)
    mask = scores.action_mask

    def spread(values):
        full = torch.zeros_like(scores.logprobs)
        full[mask] = torch.cat(values)
        return full

    loss, _ = policy_loss(
        scores.logprobs,
        spread(old),
        advantages,
        mask,
        settings,
        reference_logprobs=spread(reference),
        entropy=scores.entropy,
    )
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in vlm.model.named_parameters() if p.grad is not None}


def _trl_inputs(vlm, prompts, generations, advantages, old, reference):
    encoded = vlm.encode([prompts[g.prompt_index] for g in generations], add_generation_prompt=True)
    prompt = vlm._batch(encoded, padding_side="left")
    pad = vlm.tokenizer.pad_token_id
    rows = len(generations)
    completion_ids = torch.full((rows, MAX_COMPLETION), pad, dtype=torch.long)
    completion_mask = torch.zeros(rows, MAX_COMPLETION, dtype=torch.long)
    old_full = torch.zeros(rows, MAX_COMPLETION)
    reference_full = torch.zeros(rows, MAX_COMPLETION)
    for row, generation in enumerate(generations):
        length = len(generation.token_ids)
        completion_ids[row, :length] = torch.tensor(generation.token_ids)
        completion_mask[row, :length] = 1
        old_full[row, :length] = old[row]
        reference_full[row, :length] = reference[row]
    inputs = {
        "prompt_ids": prompt["input_ids"],
        "prompt_mask": prompt["attention_mask"],
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": advantages,
        "old_per_token_logps": old_full,
        "ref_per_token_logps": reference_full,
        "pixel_values": prompt["pixel_values"],
        "image_grid_thw": prompt["image_grid_thw"],
        "num_images": [1] * rows,
        "num_items_in_batch": completion_mask.sum(),
    }
    if "mm_token_type_ids" in prompt:
        inputs["mm_token_type_ids"] = torch.cat(
            [prompt["mm_token_type_ids"], torch.zeros_like(completion_ids)], 1
        )
    return inputs


def _trl(vlm, inputs, loss_type, beta, epsilon_high, entropy_coef, kl_correction):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    arguments = GRPOConfig(
        output_dir=tempfile.mkdtemp(),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=MAX_COMPLETION,
        loss_type=loss_type,
        beta=0.0,
        epsilon=0.2,
        epsilon_high=epsilon_high,
        entropy_coef=entropy_coef,
        use_bias_correction_kl=kl_correction,
        report_to=[],
    )
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": "x"}]}] * 8)
    trainer = GRPOTrainer(
        model=vlm.model,
        reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
        args=arguments,
        train_dataset=dataset,
        processing_class=vlm.processor,
    )
    trainer.current_gradient_accumulation_steps = 1
    # Built with beta 0 (TRL would load a reference model from the hub); the reference
    # log-probs come in the inputs, which is all its loss reads.
    trainer.beta = beta
    vlm.model.zero_grad(set_to_none=True)
    vlm.model.train()
    try:
        loss = trainer._compute_loss(vlm.model, inputs)
        loss.backward()
    finally:
        vlm.model.eval()
    return loss.detach(), {n: p.grad.clone() for n, p in vlm.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "loss_type, aggregation, beta, epsilon_high, entropy_coef, kl_correction",
    [
        ("grpo", "seq_mean", 0.0, 0.2, 0.0, False),
        ("bnpo", "token_mean", 0.04, 0.28, 0.0, False),
        ("bnpo", "token_mean", 0.04, 0.28, 0.0, True),
        ("dapo", "token_mean", 0.0, 0.28, 0.01, False),
        ("dr_grpo", "token_sum_norm", 0.04, 0.2, 0.0, True),
    ],
)
def test_loss_and_gradients_equal_trl(
    batch, loss_type, aggregation, beta, epsilon_high, entropy_coef, kl_correction
):
    vlm, prompts, generations, conversations, advantages, old, reference = batch
    settings = LossSettings(
        epsilon_low=0.2,
        epsilon_high=epsilon_high,
        beta=beta,
        entropy_coef=entropy_coef,
        aggregation=aggregation,
        max_length=MAX_COMPLETION,
        kl_ratio_correction=kl_correction,
    )
    our_loss, our_grads = _ours(vlm, conversations, advantages, old, reference, settings)
    inputs = _trl_inputs(vlm, prompts, generations, advantages, old, reference)
    trl_loss, trl_grads = _trl(vlm, inputs, loss_type, beta, epsilon_high, entropy_coef, kl_correction)
    assert abs(our_loss.item()) > 1e-3
    assert our_loss.item() == pytest.approx(trl_loss.item(), abs=1e-5)
    assert our_grads.keys() == trl_grads.keys()
    worst = max((our_grads[n] - trl_grads[n]).abs().max().item() for n in our_grads)
    assert worst < 1e-5, worst
    assert max(g.abs().max().item() for g in our_grads.values()) > 1e-3
