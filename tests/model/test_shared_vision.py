"""Repeated images and prompts in a batch (a GRPO group repeats its prompt) are computed once.

`VLM.generate`/`score` run the vision tower once per distinct image, and `score` runs a prompt
shared by several conversations once, with only the completions per conversation. Both must be
optimisations only: the same log-probs, entropies, gradients and samples as running every
conversation on its own.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vlmrl.model import SamplingParams
from vlmrl.model.families import tiny_random_vlm

QWEN_FAMILIES = ["qwen2_5_vl", "qwen2_vl", "qwen3_vl"]


def noise_image(seed: int, size: tuple[int, int]) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def prompt(image: Image.Image, question: str = "What is here?") -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]}
    ]


def group_batch() -> list[list[dict]]:
    """Two GRPO-like groups (one image each, different answers), a conversation whose image
    equals the first group's, and a two-image conversation repeating the second image."""
    first, second = noise_image(1, (80, 64)), noise_image(2, (64, 64))
    answers = ["a red cube", "two", "blue sphere and more", "no"]
    batch = [prompt(first) + [{"role": "assistant", "content": a}] for a in answers]
    batch += [prompt(second, "Count them.") + [{"role": "assistant", "content": a}] for a in answers[:3]]
    batch.append(prompt(first.copy(), "Other question?") + [{"role": "assistant", "content": "yes"}])
    batch.append(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": second},
                    {"type": "text", "text": "and"},
                    {"type": "image", "image": second},
                ],
            },
            {"role": "assistant", "content": "same"},
        ]
    )
    return batch


def vision_rows(vlm) -> list[int]:
    """Records the number of patch rows each vision tower call sees."""
    seen: list[int] = []
    vlm.model.model.visual.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    return seen


def text_tokens(vlm) -> list[int]:
    """Records the number of token positions each language-model call runs."""
    seen: list[int] = []

    def record(module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        seen.append(embeds.shape[0] * embeds.shape[1])

    vlm.model.model.language_model.register_forward_pre_hook(record, with_kwargs=True)
    return seen


def scores_and_gradients(vlm, conversations, share: bool, share_prompts: bool = False):
    vlm.share_vision_features = share
    vlm.share_prompts = share_prompts
    vlm.model.zero_grad(set_to_none=True)
    scores = vlm.score(conversations, entropy=True)
    loss = -(scores.logprobs * scores.action_mask).sum() / scores.action_mask.sum()
    (loss + scores.entropy[scores.action_mask].mean()).backward()
    gradients = {n: p.grad.clone() for n, p in vlm.model.named_parameters() if p.grad is not None}
    return scores, gradients


@pytest.mark.parametrize("family_name", QWEN_FAMILIES)
def test_shared_vision_gives_the_same_scores_and_gradients(family_name):
    vlm = tiny_random_vlm(family_name, seed=0)
    conversations = group_batch()
    rows = vision_rows(vlm)
    plain, plain_gradients = scores_and_gradients(vlm, conversations, share=False)
    plain_rows = list(rows)
    rows.clear()
    shared, shared_gradients = scores_and_gradients(vlm, conversations, share=True)
    # 10 images in the batch, 2 distinct: the tower saw a fifth of the patches
    assert len(plain_rows) == len(rows) == 1
    grid = vlm.processor.image_processor(
        images=[noise_image(1, (80, 64)), noise_image(2, (64, 64))], return_tensors="pt"
    )["image_grid_thw"]
    first, second = grid.prod(-1).tolist()
    assert plain_rows[0] == 5 * first + 5 * second
    assert rows[0] == first + second
    assert torch.equal(plain.input_ids, shared.input_ids)
    assert torch.equal(plain.action_mask, shared.action_mask)
    torch.testing.assert_close(shared.logprobs, plain.logprobs, atol=1e-5, rtol=0)
    torch.testing.assert_close(shared.entropy, plain.entropy, atol=1e-5, rtol=0)
    assert shared_gradients.keys() == plain_gradients.keys()
    assert any("visual" in name for name in shared_gradients)  # the tower is trained through copies
    for name, gradient in plain_gradients.items():
        torch.testing.assert_close(shared_gradients[name], gradient, rtol=1e-4, atol=1e-6, msg=name)


def test_images_that_differ_in_one_pixel_are_not_shared():
    vlm = tiny_random_vlm("qwen2_5_vl", seed=0)
    vlm.share_prompts = False  # one pass over all three conversations: count the images
    image = noise_image(3, (64, 64))
    pixels = np.array(image)
    pixels[10, 20, 1] ^= 0x80
    changed = Image.fromarray(pixels)
    conversations = [prompt(image) + [{"role": "assistant", "content": "x"}]] * 2
    conversations.append(prompt(changed) + [{"role": "assistant", "content": "x"}])
    rows = vision_rows(vlm)
    with torch.no_grad():
        shared = vlm.score(conversations).logprobs
        vlm.share_vision_features = False
        plain = vlm.score(conversations).logprobs
    per_image = rows[1] // 3
    assert rows[0] == 2 * per_image  # the two copies of `image` once, `changed` on its own
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=0)
    # the changed pixel matters to the model, so merging it would have changed the scores
    assert not torch.allclose(plain[1], plain[2], atol=1e-5)


@pytest.mark.parametrize("family_name", QWEN_FAMILIES)
def test_generate_with_shared_vision_and_prefill_samples_the_same(family_name):
    vlm = tiny_random_vlm(family_name, seed=0)
    conversations = [prompt(noise_image(1, (80, 64))), prompt(noise_image(2, (64, 64)), "Count them all.")]
    sampling = SamplingParams(n=4, seed=7, max_new_tokens=8)
    rows = vision_rows(vlm)
    tokens = text_tokens(vlm)
    results = {}
    for share_vision, share_prompts in ((False, False), (True, False), (True, True)):
        vlm.share_vision_features, vlm.share_prompts = share_vision, share_prompts
        rows.clear()
        tokens.clear()
        results[share_vision, share_prompts] = vlm.generate(conversations, sampling)
        encoded = vlm.encode(conversations, add_generation_prompt=True)
        prompt_span = max(len(e.input_ids) for e in encoded)
        images = vlm.processor.image_processor(
            images=[noise_image(1, (80, 64)), noise_image(2, (64, 64))], return_tensors="pt"
        )["image_grid_thw"]
        patches = int(images.prod(-1).sum())
        # the tower sees every sample's image, or each distinct image once
        assert rows == [patches if share_vision else 4 * patches]
        # the first model call: every sample's whole prompt, or each distinct prompt but its last token
        expected = 2 * (prompt_span - 1) if share_prompts else 8 * prompt_span
        assert tokens[0] == expected
        if share_prompts:
            assert tokens[1] == 8  # then the last prompt token of every sample, from the cache
    plain = results[False, False]
    for key, generations in results.items():
        assert [g.token_ids for g in generations] == [g.token_ids for g in plain], key
        for a, b in zip(generations, plain):
            assert np.allclose(a.logprobs, b.logprobs, atol=1e-5), key
    assert len({tuple(g.token_ids) for g in plain[:4]}) > 1  # the samples of a prompt differ


def prompt_groups() -> list[list[dict]]:
    """Groups of different prompt lengths (one text-only), a conversation alone with its
    prompt, and completions of different lengths (so both passes are padded)."""
    answers = ["a red cube", "two", "a blue sphere and a green cone behind it", "no"]
    long_question = "Describe every object you can see, from left to right, and count them."
    batch = [prompt(noise_image(1, (80, 64))) + [{"role": "assistant", "content": a}] for a in answers]
    batch += [
        prompt(noise_image(2, (64, 96)), long_question) + [{"role": "assistant", "content": a}]
        for a in answers[1:]
    ]
    batch += [
        [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": a}] for a in answers[:2]
    ]
    batch.append(prompt(noise_image(1, (80, 64)), "Alone?") + [{"role": "assistant", "content": "yes"}])
    return batch


@pytest.mark.parametrize("family_name", QWEN_FAMILIES)
def test_shared_prompts_give_the_same_scores_and_gradients(family_name):
    vlm = tiny_random_vlm(family_name, seed=0)
    conversations = prompt_groups()
    tokens = text_tokens(vlm)
    plain, plain_gradients = scores_and_gradients(vlm, conversations, share=False)
    plain_tokens = list(tokens)
    tokens.clear()
    shared, shared_gradients = scores_and_gradients(vlm, conversations, share=True, share_prompts=True)
    # one pass over the whole batch, or one over the 4 distinct prompts and one over the completions
    assert len(plain_tokens) == 1 and len(tokens) == 2
    encoded = vlm.encode(conversations, add_generation_prompt=False)
    prompt_lengths = [item.action_mask.index(True) for item in encoded]
    distinct = sorted({(p, tuple(e.input_ids[:p])) for p, e in zip(prompt_lengths, encoded)})
    assert len(distinct) == 4
    assert tokens[0] == 4 * max(p for p, _ in distinct)
    completion_span = max(len(e.input_ids) - p for p, e in zip(prompt_lengths, encoded))
    assert tokens[1] == len(conversations) * completion_span
    assert plain_tokens[0] == len(conversations) * max(len(e.input_ids) for e in encoded)
    assert torch.equal(plain.input_ids, shared.input_ids)
    assert torch.equal(plain.attention_mask, shared.attention_mask)
    assert torch.equal(plain.action_mask, shared.action_mask)
    real = plain.attention_mask  # padding positions hold no meaningful values on either path
    torch.testing.assert_close(shared.logprobs[real], plain.logprobs[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(shared.entropy[real], plain.entropy[real], atol=1e-5, rtol=0)
    assert shared_gradients.keys() == plain_gradients.keys()
    assert any("visual" in name for name in shared_gradients)
    for name, gradient in plain_gradients.items():
        torch.testing.assert_close(shared_gradients[name], gradient, rtol=1e-4, atol=1e-6, msg=name)


def test_shared_prompts_fall_back_when_an_image_follows_the_first_answer():
    vlm = tiny_random_vlm("qwen2_5_vl", seed=0)
    later_image = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": noise_image(5, (56, 56))},
                {"type": "text", "text": "And?"},
            ],
        },
        {"role": "assistant", "content": "more"},
    ]
    first = prompt(noise_image(1, (80, 64))) + [{"role": "assistant", "content": "one"}]
    conversations = [
        first + later_image,
        first + [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "b"}],
    ]
    tokens = text_tokens(vlm)
    with torch.no_grad():
        shared = vlm.score(conversations).logprobs
        vlm.share_prompts = False
        plain = vlm.score(conversations).logprobs
    assert len(tokens) == 2  # one pass each: the image in the completion part keeps the plain path
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=0)


def test_shared_prompts_match_the_sampler_logprobs():
    vlm = tiny_random_vlm("qwen2_5_vl", seed=0)
    conversations = [prompt(noise_image(1, (80, 64))), prompt(noise_image(2, (64, 64)), "Count them all.")]
    generations = vlm.generate(conversations, SamplingParams(n=4, seed=3, max_new_tokens=10))
    extended = [conversations[g.prompt_index] + [g.as_message()] for g in generations]
    tokens = text_tokens(vlm)
    with torch.no_grad():
        scores = vlm.score(extended)
    assert len(tokens) == 2
    for row, generation in enumerate(generations):
        sampled = scores.logprobs[row][scores.action_mask[row]][-len(generation.token_ids) :]
        assert torch.allclose(sampled, torch.tensor(generation.logprobs), atol=1e-4)
