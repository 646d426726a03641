"""The VLM wrapper on the tiny Qwen2.5-VL: generate, score, action masks, tokens, copies, saving.

Two models are used: the random-init tiny (its near-uniform distributions make log-prob
agreement a hard check: every token is far from certain) and the shipped pretrained tiny
(its answers are predictable, so stop strings and greedy decoding can be checked on real text).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vlmrl.data_recipes.shapes import render_scene, sample_scene
from vlmrl.model import VLM, ConversationError, LoraSettings, ModelLoadError, SamplingParams
from vlmrl.model.tiny import build_random_tiny


def noise_image(seed: int, size: tuple[int, int]) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def scene_image(seed: int) -> Image.Image:
    return render_scene(sample_scene(np.random.default_rng(seed)), 112)[0]


def image_part(image: Image.Image) -> dict:
    return {"type": "image", "image": image}


def text_part(text: str) -> dict:
    return {"type": "text", "text": text}


def multi_image_conversation() -> list[dict]:
    """Three images over two user turns, with an assistant turn between them."""
    return [
        {"role": "system", "content": "You answer questions about images."},
        {"role": "user", "content": [image_part(noise_image(1, (80, 64))), text_part("What is here?")]},
        {"role": "assistant", "content": "a red cube"},
        {
            "role": "user",
            "content": [
                text_part("Compare these two:"),
                image_part(noise_image(2, (64, 96))),
                image_part(noise_image(3, (56, 56))),
            ],
        },
    ]


def short_conversation() -> list[dict]:
    return [{"role": "user", "content": [image_part(noise_image(4, (60, 60))), text_part("Hi?")]}]


def text_only_conversation() -> list[dict]:
    return [{"role": "user", "content": "Count to three and tell me a long story about cubes, please."}]


@pytest.fixture(scope="module")
def random_tiny() -> VLM:
    return build_random_tiny("tiny", seed=0)


@pytest.fixture(scope="module")
def pretrained_tiny() -> VLM:
    return VLM.load("tiny", dtype="float32", device="cpu")


def image_tokens_expected(vlm: VLM, images: list[Image.Image]) -> int:
    grid = vlm.processor.image_processor(images=images, return_tensors="pt")["image_grid_thw"]
    merge = vlm.processor.image_processor.merge_size
    return int(grid.prod(dim=1).sum()) // merge**2


def scored_sample(generation, scores, row: int) -> torch.Tensor:
    """The score log-probs of the generation's tokens (the last action tokens of its row)."""
    mask = scores.action_mask[row]
    return scores.logprobs[row][mask][-len(generation.token_ids) :]


# --------------------------------------------------------------------------- generate


def test_generate_batches_prompts_with_images_in_several_turns(random_tiny):
    conversations = [multi_image_conversation(), short_conversation(), text_only_conversation()]
    sampling = SamplingParams(n=3, seed=11, max_new_tokens=8)
    generations = random_tiny.generate(conversations, sampling)
    assert [(g.prompt_index, g.sample_index) for g in generations] == [
        (p, s) for p in range(3) for s in range(3)
    ]
    for generation in generations:
        assert 1 <= len(generation.token_ids) <= 8
        assert len(generation.logprobs) == len(generation.token_ids)
        assert all(value <= 0 and np.isfinite(value) for value in generation.logprobs)
        assert generation.finish_reason in ("stop", "length")
        assert (generation.finish_reason == "stop") == (
            generation.token_ids[-1] == random_tiny.end_of_turn_id
        )
        # the sampler never emits vision placeholders
        assert not set(generation.token_ids) & set(random_tiny._vision_placeholder_ids())
    # samples of one prompt differ (random tiny, temperature 1): n really draws n samples
    first_prompt = [tuple(g.token_ids) for g in generations[:3]]
    assert len(set(first_prompt)) > 1
    # all three images of the first conversation were expanded into image tokens
    images = [noise_image(1, (80, 64)), noise_image(2, (64, 96)), noise_image(3, (56, 56))]
    prompt = random_tiny.encode(conversations[:1], add_generation_prompt=True)[0]
    image_token = random_tiny.model.config.image_token_id
    assert prompt.input_ids.count(image_token) == image_tokens_expected(random_tiny, images)


def test_seeds_reproduce_and_leave_global_rng_alone(random_tiny):
    conversations = [multi_image_conversation(), short_conversation()]
    first = random_tiny.generate(conversations, SamplingParams(n=2, seed=5, max_new_tokens=6))
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    again = random_tiny.generate(conversations, SamplingParams(n=2, seed=5, max_new_tokens=6))
    # a seeded call restores the caller's random state
    assert torch.equal(torch.rand(3), expected_next)
    assert [g.token_ids for g in again] == [g.token_ids for g in first]
    assert [g.logprobs for g in again] == [g.logprobs for g in first]
    other = random_tiny.generate(conversations, SamplingParams(n=2, seed=6, max_new_tokens=6))
    assert [g.token_ids for g in other] != [g.token_ids for g in first]


def test_greedy_is_deterministic_and_independent_of_batch(pretrained_tiny):
    questions = ["What color is the cube?", "How many objects are there?", "Describe the image."]
    conversations = [
        [{"role": "user", "content": [image_part(scene_image(seed)), text_part(question)]}]
        for seed, question in enumerate(questions)
    ]
    greedy = SamplingParams(temperature=0, max_new_tokens=24)
    batched = pretrained_tiny.generate(conversations, greedy)
    assert [g.token_ids for g in pretrained_tiny.generate(conversations, greedy)] == [
        g.token_ids for g in batched
    ]
    # left padding in a batch does not change what greedy decoding picks
    for index, conversation in enumerate(conversations):
        (alone,) = pretrained_tiny.generate([conversation], greedy)
        assert alone.token_ids == batched[index].token_ids
        assert np.allclose(alone.logprobs, batched[index].logprobs, atol=1e-4)
    # the pretrained tiny answers questions in its answer format
    assert batched[0].text.startswith("<answer>") and batched[0].finish_reason == "stop"


def test_stop_strings_cut_text_and_ids_together(pretrained_tiny):
    tokenizer = pretrained_tiny.tokenizer
    caption = [{"role": "user", "content": [image_part(scene_image(0)), text_part("Describe the image.")]}]
    question = [{"role": "user", "content": [image_part(scene_image(1)), text_part("What color is it?")]}]
    (full,) = pretrained_tiny.generate([caption], SamplingParams(temperature=0, max_new_tokens=40))
    assert " objects" in full.text and "left" in full.text  # '5 objects. From left to right: ...'

    sampling = SamplingParams(temperature=0, max_new_tokens=40, stop=["left", "</answer>"])
    cut, answered = pretrained_tiny.generate([caption, question], sampling)
    for generation in (cut, answered):
        assert generation.finish_reason == "stop_string"
        assert generation.text == tokenizer.decode(generation.token_ids, skip_special_tokens=True)
        assert len(generation.logprobs) == len(generation.token_ids)
        assert pretrained_tiny.end_of_turn_id not in generation.token_ids
        # cut at the first token whose text completes a stop string, not later
        shorter = tokenizer.decode(generation.token_ids[:-1], skip_special_tokens=True)
        assert not any(stop in shorter for stop in sampling.stop)
    assert cut.text.endswith("left") and full.text.startswith(cut.text)
    assert cut.token_ids == full.token_ids[: len(cut.token_ids)]
    assert answered.text.startswith("<answer>") and answered.text.endswith("</answer>")
    # a completion cut by a stop string scores exactly its sampled ids; the end-of-turn token
    # the template adds after it is context, as it was never sampled
    with torch.no_grad():
        scores = pretrained_tiny.score([question + [answered.as_message()]])
    mask = scores.action_mask[0]
    assert scores.input_ids[0][mask].tolist() == answered.token_ids
    assert torch.allclose(scores.logprobs[0][mask], torch.tensor(answered.logprobs), atol=1e-4)

    # a stop string inside a token keeps that whole token in both text and ids
    (inside,) = pretrained_tiny.generate(
        [caption], SamplingParams(temperature=0, max_new_tokens=40, stop=["bjec"])
    )
    assert inside.finish_reason == "stop_string"
    assert inside.text == tokenizer.decode(inside.token_ids) and inside.text.endswith(" objects")

    # a stop string that never appears changes nothing
    (unused,) = pretrained_tiny.generate(
        [caption], SamplingParams(temperature=0, max_new_tokens=40, stop=["zebra"])
    )
    assert unused.token_ids == full.token_ids and unused.finish_reason == full.finish_reason

    # max_new_tokens cuts a completion with finish_reason "length"
    (short,) = pretrained_tiny.generate([caption], SamplingParams(temperature=0, max_new_tokens=3))
    assert short.finish_reason == "length" and short.token_ids == full.token_ids[:3]


# --------------------------------------------------------------------------- score vs generate


def test_score_matches_sampler_logprobs_across_padded_batch(random_tiny):
    """Prompts of very different lengths: left padding when sampling, right padding when
    scoring; the log-probs agree within 1e-4, in a batch and alone."""
    conversations = [multi_image_conversation(), short_conversation(), text_only_conversation()]
    generations = random_tiny.generate(conversations, SamplingParams(n=2, seed=2, max_new_tokens=10))
    extended = [conversations[g.prompt_index] + [g.as_message()] for g in generations]
    lengths = {len(e.input_ids) for e in random_tiny.encode(extended, add_generation_prompt=False)}
    assert len(lengths) > 2  # the batch really is padded
    with torch.no_grad():
        scores = random_tiny.score(extended)
        alone = [random_tiny.score([conversation]) for conversation in extended[::2]]
    checked = 0
    for row, generation in enumerate(generations):
        sampled = scored_sample(generation, scores, row)
        assert torch.allclose(sampled, torch.tensor(generation.logprobs), atol=1e-4), (
            sampled.tolist(),
            generation.logprobs,
        )
        checked += len(generation.token_ids)
    for index, single in enumerate(alone):
        generation = generations[2 * index]
        sampled = scored_sample(generation, single, 0)
        assert torch.allclose(sampled, torch.tensor(generation.logprobs), atol=1e-4)
    assert checked >= 12


def test_score_matches_sampler_at_other_temperature_and_greedy(random_tiny):
    conversations = [multi_image_conversation(), short_conversation()]
    for sampling, temperature in (
        (SamplingParams(n=1, seed=4, temperature=0.7, max_new_tokens=6), 0.7),
        (SamplingParams(temperature=0, max_new_tokens=6), 1.0),
    ):
        generations = random_tiny.generate(conversations, sampling)
        extended = [conversations[g.prompt_index] + [g.as_message()] for g in generations]
        with torch.no_grad():
            scores = random_tiny.score(extended, temperature=temperature)
        for row, generation in enumerate(generations):
            sampled = scored_sample(generation, scores, row)
            assert torch.allclose(sampled, torch.tensor(generation.logprobs), atol=1e-4)


def test_score_gives_entropy_and_hidden_states(random_tiny):
    conversation = multi_image_conversation() + [{"role": "assistant", "content": "two cubes"}]
    with torch.no_grad():
        scores = random_tiny.score([conversation], entropy=True, hidden_states=True)
    hidden = random_tiny.model.config.text_config.hidden_size
    assert scores.hidden_states.shape == (*scores.input_ids.shape, hidden)
    mask = scores.action_mask
    vocabulary = random_tiny.model.config.text_config.vocab_size
    assert (scores.entropy[mask] > 0).all() and (scores.entropy[mask] <= np.log(vocabulary) + 1e-4).all()
    # a random model is close to uniform: entropy near log(V)
    assert float(scores.entropy[mask].mean()) > 0.9 * np.log(vocabulary)


# --------------------------------------------------------------------------- action mask


def tool_conversation() -> list[dict]:
    """A Mini-o3-like episode: question with an image, a tool call, a tool observation with a
    new image, then the answer."""
    return [
        {"role": "system", "content": "Use the zoom tool when needed."},
        {
            "role": "user",
            "content": [image_part(noise_image(7, (84, 84))), text_part("What is in the corner?")],
        },
        {
            "role": "assistant",
            "content": '<tool_call>{"name": "zoom", "arguments": {"bbox": [0, 0, 40, 40]}}</tool_call>',
        },
        {"role": "tool", "content": [image_part(noise_image(8, (56, 56))), text_part("zoomed region")]},
        {"role": "assistant", "content": "<answer>a blue sphere</answer>"},
    ]


def test_action_mask_is_exactly_the_assistant_tokens(random_tiny):
    vlm = random_tiny
    conversations = [tool_conversation(), short_conversation() + [{"role": "assistant", "content": "yes"}]]
    with torch.no_grad():
        scores = vlm.score(conversations)
    tokenizer = vlm.tokenizer
    end = vlm.end_of_turn_id
    assistant_texts = [[m["content"] for m in c if m["role"] == "assistant"] for c in conversations]
    for row, texts in enumerate(assistant_texts):
        ids = scores.input_ids[row]
        mask = scores.action_mask[row]
        # the masked tokens are each assistant turn's tokens followed by its end-of-turn token
        expected: list[int] = []
        for text in texts:
            expected += tokenizer(text, add_special_tokens=False)["input_ids"] + [end]
        assert ids[mask].tolist() == expected
        # never an image, a padding position, or any token of the system/user/tool turns
        assert not mask[ids == vlm.model.config.image_token_id].any()
        assert not mask[~scores.attention_mask[row]].any()
        # end-of-turn tokens of the system/user/tool turns are context
        all_ends = (ids == end) & scores.attention_mask[row]
        assert int(all_ends.sum()) == len([m for m in conversations[row]])
        assert int((all_ends & mask).sum()) == len(texts)
    # the shorter conversation is right-padded; its padding is outside every mask
    padding = ~scores.attention_mask[1]
    assert padding.any() and (scores.turn_index[1][padding] == -1).all()
    # the tool observation's text and image are present but not actions
    tool_ids = tokenizer("zoomed region", add_special_tokens=False)["input_ids"]
    row_ids = scores.input_ids[0].tolist()
    start = next(i for i in range(len(row_ids)) if row_ids[i : i + len(tool_ids)] == tool_ids)
    assert not scores.action_mask[0, start : start + len(tool_ids)].any()
    images = [noise_image(7, (84, 84)), noise_image(8, (56, 56))]
    assert row_ids.count(vlm.model.config.image_token_id) == image_tokens_expected(vlm, images)


def test_turn_index_and_decision_positions(random_tiny):
    vlm = random_tiny
    with torch.no_grad():
        scores = vlm.score([tool_conversation()])
    ids = scores.input_ids[0].tolist()
    mask = scores.action_mask[0].tolist()
    turns = scores.turn_index[0].tolist()
    assert {t for t, m in zip(turns, mask) if m} == {0, 1}
    assert all((t >= 0) == m for t, m in zip(turns, mask))
    assert turns.index(1) > len(turns) - 1 - turns[::-1].index(0)  # turn 0 before turn 1
    header = vlm.tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    (positions,) = scores.decision_positions
    assert len(positions) == 2
    for turn, position in enumerate(positions):
        # the last context token before the turn: the assistant header ends there
        assert not mask[position] and mask[position + 1] and turns[position + 1] == turn
        assert ids[position + 1 - len(header) : position + 1] == header


def test_completion_cut_by_length_scores_only_its_sampled_tokens(random_tiny):
    conversation = short_conversation()
    (generation,) = random_tiny.generate([conversation], SamplingParams(seed=0, max_new_tokens=2))
    assert generation.finish_reason == "length" and len(generation.token_ids) == 2
    with torch.no_grad():
        scores = random_tiny.score([conversation + [generation.as_message()]])
    mask = scores.action_mask[0]
    assert scores.input_ids[0][mask].tolist() == generation.token_ids
    # the template still closes the turn, but that end-of-turn token was never sampled
    last_action = int(mask.nonzero().max())
    assert scores.input_ids[0, last_action + 1] == random_tiny.end_of_turn_id


# --------------------------------------------------------------------------- tokens


def test_add_tokens_are_single_ids_with_mean_embedding():
    vlm = build_random_tiny("tiny", seed=0)
    embeddings = vlm.model.get_input_embeddings().weight
    vocabulary = len(vlm.tokenizer)
    mean = embeddings[:vocabulary].detach().mean(dim=0)
    new_tokens = ["<mask_0>", "<mask_1>", "<mask_2>"]
    ids = vlm.add_tokens(new_tokens)
    assert ids == list(range(vocabulary, vocabulary + 3))
    embeddings = vlm.model.get_input_embeddings().weight
    for token_id in ids:
        assert torch.allclose(embeddings[token_id], mean, atol=1e-6)
    text = "mask <mask_1> and<mask_0><mask_2>"
    encoded = vlm.tokenizer(text, add_special_tokens=False)["input_ids"]
    for token, token_id in zip(new_tokens, ids):
        assert encoded.count(token_id) == 1
        assert vlm.tokenizer(token, add_special_tokens=False)["input_ids"] == [token_id]
    # adding an existing token again returns its id and leaves its row alone
    with torch.no_grad():
        embeddings[ids[0]] += 1.0
    assert vlm.add_tokens(["<mask_0>"]) == [ids[0]]
    assert not torch.allclose(vlm.model.get_input_embeddings().weight[ids[0]], mean)
    # many tokens grow the embedding matrix past its padded size
    many = vlm.add_tokens([f"<extra_{i}>" for i in range(100)])
    assert vlm.model.get_input_embeddings().weight.shape[0] > max(many)
    assert vlm.model.get_output_embeddings().weight.shape[0] > max(many)
    # the model still runs: sample, and score a completion that uses the new tokens
    conversation = short_conversation()
    generations = vlm.generate([conversation], SamplingParams(seed=0, max_new_tokens=4))
    assert generations[0].token_ids
    answer = {"role": "assistant", "content": "the <mask_1><mask_2>"}
    with torch.no_grad():
        scores = vlm.score([conversation + [answer]])
    assert set(ids[1:]) <= set(scores.input_ids[0][scores.action_mask[0]].tolist())
    assert torch.isfinite(scores.logprobs).all()


# --------------------------------------------------------------------------- copies, gradients


def action_loss(vlm: VLM, conversations) -> torch.Tensor:
    scores = vlm.score(conversations)
    return -(scores.logprobs * scores.action_mask).sum() / scores.action_mask.sum()


def answered_conversations() -> list[list[dict]]:
    return [
        multi_image_conversation() + [{"role": "assistant", "content": "the first is larger"}],
        short_conversation() + [{"role": "assistant", "content": "hello"}],
    ]


def test_reference_is_frozen_and_independent():
    vlm = build_random_tiny("tiny", seed=0)
    conversations = answered_conversations()
    with torch.no_grad():
        before = vlm.score(conversations).logprobs
    reference = vlm.reference()
    assert all(not p.requires_grad for p in reference.model.parameters())
    assert all(p.requires_grad for p in vlm.model.parameters())
    assert not any(
        a.data_ptr() == b.data_ptr() for a, b in zip(vlm.model.parameters(), reference.model.parameters())
    )
    optimizer = torch.optim.SGD(vlm.model.parameters(), lr=0.5)
    vlm.model.train()
    action_loss(vlm, conversations).backward()
    optimizer.step()
    vlm.model.eval()
    with torch.no_grad():
        after = vlm.score(conversations).logprobs
        frozen = reference.score(conversations).logprobs
    assert not torch.allclose(after, before, atol=1e-3)  # the policy moved
    assert torch.equal(frozen, before)  # the reference did not


def test_gradient_checkpointing_gives_the_same_gradients():
    vlm = build_random_tiny("tiny", seed=0)
    conversations = answered_conversations()
    vlm.model.train()

    def gradients() -> dict[str, torch.Tensor]:
        vlm.model.zero_grad(set_to_none=True)
        action_loss(vlm, conversations).backward()
        return {n: p.grad.clone() for n, p in vlm.model.named_parameters() if p.grad is not None}

    plain = gradients()
    vlm.gradient_checkpointing(True)
    assert vlm.model.is_activation_checkpointing
    checkpointed = gradients()
    vlm.gradient_checkpointing(False)
    assert not vlm.model.is_activation_checkpointing
    assert plain.keys() == checkpointed.keys()
    assert any("visual" in name for name in plain)  # gradients reach the vision tower
    for name, gradient in plain.items():
        assert torch.allclose(gradient, checkpointed[name], rtol=1e-4, atol=1e-6), name


def test_lora_step_changes_only_adapters_and_reference_is_the_base_model(tmp_path):
    base = VLM.load("tiny", dtype="float32", device="cpu")
    conversations = answered_conversations()
    with torch.no_grad():
        base_scores = base.score(conversations).logprobs
    vlm = VLM.load("tiny", dtype="float32", device="cpu", lora=LoraSettings(rank=4, alpha=8))
    assert vlm.uses_lora
    trainable = {n for n, p in vlm.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    before = {n: p.detach().clone() for n, p in vlm.model.named_parameters()}
    with torch.no_grad():  # LoRA starts as the identity (B = 0)
        assert torch.allclose(vlm.score(conversations).logprobs, base_scores, atol=1e-5)
    optimizer = torch.optim.AdamW([p for p in vlm.model.parameters() if p.requires_grad], lr=1e-2)
    vlm.model.train()
    action_loss(vlm, conversations).backward()
    optimizer.step()
    vlm.model.eval()
    changed = {n for n, p in vlm.model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and changed <= trainable
    with torch.no_grad():
        tuned = vlm.score(conversations).logprobs
        reference = vlm.reference().score(conversations).logprobs
        tuned_again = vlm.score(conversations).logprobs
    assert not torch.allclose(tuned, base_scores, atol=1e-4)
    assert torch.allclose(reference, base_scores, atol=1e-5)  # adapters off: the base model
    assert torch.equal(tuned_again, tuned)  # the reference view left the adapters on here
    # saving merges the adapters: the loaded plain model scores like the tuned one
    vlm.save(tmp_path / "merged")
    loaded = VLM.load(tmp_path / "merged", dtype="float32", device="cpu")
    assert not loaded.uses_lora
    with torch.no_grad():
        assert torch.allclose(loaded.score(conversations).logprobs, tuned, atol=1e-4)


# --------------------------------------------------------------------------- saving


def test_save_load_round_trip_is_atomic(random_tiny, tmp_path):
    conversations = answered_conversations()
    with torch.no_grad():
        expected = random_tiny.score(conversations)
    target = tmp_path / "model"
    random_tiny.save(target)
    assert (target / "model.safetensors").is_file() and (target / "config.json").is_file()
    assert not list(target.glob("*.bin")) and not list(target.glob("*.pt"))
    loaded = VLM.load(target, dtype="float32", device="cpu")
    assert loaded.family.name == "qwen2_5_vl"
    with torch.no_grad():
        reloaded = loaded.score(conversations)
    assert torch.equal(reloaded.input_ids, expected.input_ids)
    assert torch.equal(reloaded.action_mask, expected.action_mask)
    assert torch.allclose(reloaded.logprobs, expected.logprobs, atol=1e-6)
    generations = loaded.generate(conversations[:1], SamplingParams(seed=1, max_new_tokens=4))
    same = random_tiny.generate(conversations[:1], SamplingParams(seed=1, max_new_tokens=4))
    assert generations[0].token_ids == same[0].token_ids

    # a save that fails half way leaves the previous model whole and no temporary files
    snapshot = {p.name: p.read_bytes() for p in target.iterdir()}
    other = build_random_tiny("tiny", seed=1)

    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full (injected)")

    other.processor.save_pretrained = broken_save
    with pytest.raises(RuntimeError, match="injected"):
        other.save(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == snapshot
    assert sorted(os.listdir(tmp_path)) == ["model"]
    # a successful save over it replaces the whole directory
    (target / "stale.txt").write_text("left over")
    build_random_tiny("tiny", seed=1).save(target)
    assert not (target / "stale.txt").exists()
    assert (target / "model.safetensors").read_bytes() != snapshot["model.safetensors"]
    assert sorted(os.listdir(tmp_path)) == ["model"]


# --------------------------------------------------------------------------- bad input


def test_load_errors_name_the_directory_and_the_expectation(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelLoadError, match=rf"'{missing}': no such directory"):
        VLM.load(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=rf"'{empty}': directory has no config.json"):
        VLM.load(empty)
    malformed = tmp_path / "malformed"
    malformed.mkdir()
    (malformed / "config.json").write_text('{"model_type": "qwen2_5_vl", ')
    with pytest.raises(ModelLoadError, match=rf"'{malformed}': config.json is not valid JSON"):
        VLM.load(malformed)
    text_model = tmp_path / "text_model"
    text_model.mkdir()
    (text_model / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(
        ValueError, match=r"unknown model family 'bert'; supported model types are \[.*qwen2_5_vl"
    ):
        VLM.load(text_model)
    invented = tmp_path / "invented"
    invented.mkdir()
    (invented / "config.json").write_text(json.dumps({"model_type": "no_such_architecture"}))
    with pytest.raises(ModelLoadError, match=rf"'{invented}': cannot read its config"):
        VLM.load(invented)


def test_image_errors_name_the_part_and_the_expectation(random_tiny, tmp_path):
    def ask(image) -> list[dict]:
        return [{"role": "user", "content": [text_part("Look:"), {"type": "image", "image": image}]}]

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    with pytest.raises(
        ConversationError, match=rf"conversation 0, message 0, part 1: image file {corrupt} cannot be decoded"
    ):
        random_tiny.generate([ask(corrupt)])
    with pytest.raises(ConversationError, match=r"message 0, part 1: image file .*absent.png does not exist"):
        random_tiny.score([ask(tmp_path / "absent.png")])
    with pytest.raises(ConversationError, match=r"image bytes cannot be decoded"):
        random_tiny.generate([ask(b"garbage bytes")])
    with pytest.raises(
        ConversationError, match=r"part 1: image mode 'HSV' is not supported; expected one of \[.*'RGB'"
    ):
        random_tiny.generate([ask(Image.new("HSV", (16, 16)))])
    with pytest.raises(
        ConversationError, match=r"part 1: expected a PIL image, a path or bytes, got ndarray"
    ):
        random_tiny.generate([ask(np.zeros((8, 8, 3), dtype=np.uint8))])
    # decodable images in other modes are converted, not rejected
    for mode in ("L", "RGBA", "P", "I;16", "CMYK"):
        assert random_tiny.encode([ask(Image.new(mode, (32, 32)))], add_generation_prompt=True)


def test_conversation_errors_name_the_input(random_tiny):
    placeholder = [{"role": "user", "content": [{"type": "image"}, text_part("What is this?")]}]
    with pytest.raises(
        ConversationError, match="conversation 0, message 0, part 0: image placeholder without an image"
    ):
        random_tiny.generate([placeholder])
    typed_marker = [
        {"role": "user", "content": "Here: <|vision_start|><|image_pad|><|vision_end|> what is it?"}
    ]
    with pytest.raises(ConversationError, match="conversation 1: more image markers than images"):
        random_tiny.score([short_conversation(), typed_marker])
    with pytest.raises(ConversationError, match="expected a list of conversations"):
        random_tiny.generate(short_conversation()[0])
    with pytest.raises(
        ConversationError, match="message 0: role 'robot' is not one of system/user/assistant/tool"
    ):
        random_tiny.generate([[{"role": "robot", "content": "beep"}]])
    with pytest.raises(ConversationError, match="message 1: assistant messages cannot contain images"):
        random_tiny.score(
            [short_conversation() + [{"role": "assistant", "content": [image_part(noise_image(0, (8, 8)))]}]]
        )


def test_prompt_beyond_the_context_is_an_error_not_a_truncation(random_tiny):
    context = random_tiny.context_length()
    long_text = " ".join(["cube"] * (context + 10))
    conversation = [{"role": "user", "content": long_text}]
    with pytest.raises(
        ConversationError,
        match=rf"conversation 0: prompt of \d+ tokens plus max_new_tokens=4 exceeds the model's context of {context} tokens",
    ):
        random_tiny.generate([conversation], SamplingParams(max_new_tokens=4))
    with pytest.raises(
        ConversationError, match=rf"conversation 1: \d+ tokens exceed the model's context of {context}"
    ):
        random_tiny.score([short_conversation(), conversation])
    # a prompt that fits only without the new tokens is refused too
    (encoded,) = random_tiny.encode([short_conversation()], add_generation_prompt=True)
    room = context - len(encoded.input_ids)
    with pytest.raises(ConversationError, match=f"max_new_tokens={room + 1} exceeds"):
        random_tiny.generate([short_conversation()], SamplingParams(max_new_tokens=room + 1))


def test_unreachable_hub_id_says_what_was_tried():
    """A hub id goes through the hub code path; offline it fails with an error naming the id
    and suggesting a local directory (a subprocess, so the offline switch is read at import)."""
    script = (
        "from vlmrl.model import VLM\n"
        "try:\n"
        "    VLM.load('nobody-here/no-such-model', device='cpu')\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    environment = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.startswith(
        "ModelLoadError model 'nobody-here/no-such-model': cannot read its config as a hub id "
        "(is the hub reachable? use a local directory offline)"
    ), result.stdout + result.stderr


# --------------------------------------------------------------------------- repetition penalty, distributions


def test_repetition_penalty_is_off_at_one_and_forbids_repeats_when_large(random_tiny):
    conversation = [text_only_conversation()]
    plain = random_tiny.generate(conversation, SamplingParams(temperature=0, max_new_tokens=12))[0]
    at_one = random_tiny.generate(
        conversation, SamplingParams(temperature=0, max_new_tokens=12, repetition_penalty=1.0)
    )[0]
    assert at_one.token_ids == plain.token_ids
    # A huge penalty pushes every id already seen (prompt or completion) below the unseen ones,
    # so greedy decoding never repeats an id.
    penalised = random_tiny.generate(
        conversation, SamplingParams(temperature=0, max_new_tokens=12, repetition_penalty=1e4)
    )[0]
    prompt_ids = set(random_tiny.encode(conversation, add_generation_prompt=True)[0].input_ids)
    ids = penalised.token_ids
    assert len(set(ids)) == len(ids)
    assert not set(ids) & prompt_ids
    with pytest.raises(ValueError, match="repetition_penalty"):
        SamplingParams(repetition_penalty=0.0)


def test_score_returns_full_distributions_at_action_tokens(random_tiny):
    conversations = [
        multi_image_conversation() + [{"role": "assistant", "content": "two cubes"}],
        short_conversation() + [{"role": "assistant", "content": "yes"}],
    ]
    with torch.no_grad():
        scores = random_tiny.score(conversations, distributions=True)
        plain = random_tiny.score(conversations)
    assert plain.action_log_distributions is None
    distributions = scores.action_log_distributions
    mask = scores.action_mask
    assert distributions.shape == (int(mask.sum()), random_tiny.model.config.text_config.vocab_size)
    # Each row is a distribution whose value at the actual token is that token's log-prob.
    assert torch.allclose(distributions.exp().sum(-1), torch.ones(distributions.shape[0]), atol=1e-4)
    picked = distributions.gather(1, scores.input_ids[mask].unsqueeze(1)).squeeze(1)
    assert torch.allclose(picked, scores.logprobs[mask], atol=1e-5)
