"""Model families the wrapper knows: how their chat templates mark images and end turns.

Qwen2-VL, Qwen2.5-VL and Qwen3-VL are first-class (M-RoPE with `image_grid_thw`); the other
families go through transformers' Auto classes. What differs between families and matters to
the wrapper is small and lives in this table: the text the chat template writes for one
image, the string that ends an assistant turn, and how per-image tensors are batched.

`tiny_random_vlm(name)` builds a random-init tiny model of each family's real transformers
class from config, with the project tokenizer, for tests (no download).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vlmrl.model.vlm import VLM


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    image_marker: str  # what the chat template writes for one image part
    end_of_turn: str  # the token string that closes an assistant turn
    # How per-image tensors of several conversations are joined: along the first dimension,
    # or (Idefics3/SmolVLM) along the images dimension of a [1, images, ...] tensor.
    images_dimension: int = 0
    token_type_ids: bool = False  # Gemma3 marks image tokens for bidirectional attention
    # The Qwen-VL models read `mm_token_type_ids` (0 text, 1 image, 2 video) to place M-RoPE.
    modality_type_ids: bool = False
    first_class: bool = False


FAMILIES = [
    Family(
        "qwen2_vl",
        ("qwen2_vl",),
        "<|vision_start|><|image_pad|><|vision_end|>",
        "<|im_end|>",
        modality_type_ids=True,
        first_class=True,
    ),
    Family(
        "qwen2_5_vl",
        ("qwen2_5_vl",),
        "<|vision_start|><|image_pad|><|vision_end|>",
        "<|im_end|>",
        modality_type_ids=True,
        first_class=True,
    ),
    Family(
        "qwen3_vl",
        ("qwen3_vl",),
        "<|vision_start|><|image_pad|><|vision_end|>",
        "<|im_end|>",
        modality_type_ids=True,
        first_class=True,
    ),
    Family("idefics3", ("idefics3", "smolvlm"), "<image>", "<end_of_utterance>", images_dimension=1),
    Family("llava_onevision", ("llava_onevision",), "<image>", "<|im_end|>"),
    Family("internvl", ("internvl",), "<IMG_CONTEXT>", "<|im_end|>"),
    Family("gemma3", ("gemma3",), "<start_of_image>", "<end_of_turn>", token_type_ids=True),
]


FAMILY_BY_NAME = {family.name: family for family in FAMILIES}


def family_for(model_type: str, source: str = "model") -> Family:
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    known = sorted(t for f in FAMILIES for t in f.model_types)
    raise ValueError(f"{source}: unknown model family '{model_type}'; supported model types are {known}")


# ---------------------------------------------------------------------------------------------
# Tiny random models of every family, built from config (no download), for tests and smoke runs.
#
# Each builder makes the real transformers config/model/processor classes with tiny sizes and
# puts the project tokenizer behind the processor, with the family's special tokens added and
# a chat template in the family's style (image parts rendered as `Family.image_marker`,
# assistant turns closed by `Family.end_of_turn`). Image sizes are kept small so that a
# two-image conversation is a few dozen visual tokens.

TINY_HIDDEN = 64
TINY_LAYERS = 2


def _qwen_style_template(image_marker: str, end_of_turn: str = "<|im_end|>") -> str:
    """ChatML turns (Qwen, LLaVA-OneVision, InternVL) with images written as `image_marker`."""
    return (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' }}"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for part in message['content'] %}"
        "{% if part['type'] == 'image' %}{{ '" + image_marker + "' }}"
        "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
        "{% endfor %}{% endif %}"
        "{{ '" + end_of_turn + "\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


def _tokenizer_with(tokens: list[str]):
    """The project tokenizer with `tokens` added as special tokens (those it lacks)."""
    from vlmrl.model.tokenizer import train_tokenizer

    tokenizer = train_tokenizer()
    missing = [t for t in tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": missing}, replace_extra_special_tokens=False
        )
    return tokenizer


def _ids(tokenizer, names: list[str]) -> dict[str, int]:
    return dict(zip(names, tokenizer.convert_tokens_to_ids(names)))


def _vocab_size(tokenizer) -> int:
    return (len(tokenizer) + 63) // 64 * 64


def _text_ids(tokenizer, end_of_turn: str, bos: str | None = None) -> dict[str, int | None]:
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.convert_tokens_to_ids(end_of_turn),
        "bos_token_id": tokenizer.convert_tokens_to_ids(bos) if bos else None,
    }


QWEN_VISION_TOKENS = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]


def _qwen_text_config(tokenizer, head_dim: int = 32) -> dict:
    half = head_dim // 2
    sections = [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]
    return {
        "vocab_size": _vocab_size(tokenizer),
        "hidden_size": TINY_HIDDEN,
        "intermediate_size": 2 * TINY_HIDDEN,
        "num_hidden_layers": TINY_LAYERS,
        "num_attention_heads": TINY_HIDDEN // head_dim,
        "num_key_value_heads": 1,
        "max_position_embeddings": 2048,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": sections},
        **_text_ids(tokenizer, "<|im_end|>"),
    }


def _tiny_qwen2_vl():
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = _tokenizer_with(QWEN_VISION_TOKENS)
    ids = _ids(tokenizer, QWEN_VISION_TOKENS)
    config = Qwen2VLConfig(
        text_config=_qwen_text_config(tokenizer),
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": TINY_HIDDEN,
            "mlp_ratio": 2,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            min_pixels=56 * 56, max_pixels=84 * 84, patch_size=14, merge_size=2, temporal_patch_size=2
        ),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=_qwen_style_template(FAMILY_BY_NAME["qwen2_vl"].image_marker),
    )
    return Qwen2VLForConditionalGeneration, config, processor


def _tiny_qwen3_vl():
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer = _tokenizer_with(QWEN_VISION_TOKENS)
    ids = _ids(tokenizer, QWEN_VISION_TOKENS)
    text = _qwen_text_config(tokenizer)
    text["head_dim"] = 32
    text["rope_parameters"]["mrope_interleaved"] = True
    config = Qwen3VLConfig(
        text_config=text,
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": TINY_HIDDEN,
            "num_position_embeddings": 36,  # a 6x6 grid of learned positions, interpolated
            "deepstack_visual_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            min_pixels=64 * 64, max_pixels=96 * 96, patch_size=16, merge_size=2, temporal_patch_size=2
        ),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(),
        chat_template=_qwen_style_template(FAMILY_BY_NAME["qwen3_vl"].image_marker),
    )
    return Qwen3VLForConditionalGeneration, config, processor


def _llama_text_config(tokenizer, end_of_turn: str, bos: str | None = None) -> dict:
    return {
        "model_type": "llama",
        "vocab_size": _vocab_size(tokenizer),
        "hidden_size": TINY_HIDDEN,
        "intermediate_size": 2 * TINY_HIDDEN,
        "num_hidden_layers": TINY_LAYERS,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 2048,
        **_text_ids(tokenizer, end_of_turn, bos),
    }


IDEFICS3_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
    f"<row_{row}_col_{column}>" for row in range(1, 7) for column in range(1, 7)
]
# Idefics3/SmolVLM chat style: "User:<image>question<end_of_utterance>\nAssistant: answer...".
IDEFICS3_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize + ':' }}"
    "{% if message['content'] is string %}{{ ' ' + message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}"
    "{% elif part['type'] == 'text' %}{{ ' ' + part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<end_of_utterance>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def _tiny_idefics3():
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    tokenizer = _tokenizer_with(IDEFICS3_TOKENS)
    image_size, patch_size, scale_factor = 32, 8, 2
    config = Idefics3Config(
        text_config=_llama_text_config(tokenizer, "<end_of_utterance>"),
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch_size,
        },
        scale_factor=scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    # One global image per picture, no tiling: (32 / 8)^2 / 2^2 = 4 image tokens each.
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": image_size},
        max_image_size={"longest_edge": image_size},
        do_image_splitting=False,
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=(image_size // patch_size) ** 2 // scale_factor**2,
        chat_template=IDEFICS3_TEMPLATE,
    )
    return Idefics3ForConditionalGeneration, config, processor


def _siglip_config(image_size: int, patch_size: int) -> dict:
    return {
        "model_type": "siglip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": patch_size,
        "vision_use_head": False,
    }


def _qwen2_text_config(tokenizer, end_of_turn: str = "<|im_end|>") -> dict:
    return {
        "model_type": "qwen2",
        "vocab_size": _vocab_size(tokenizer),
        "hidden_size": TINY_HIDDEN,
        "intermediate_size": 2 * TINY_HIDDEN,
        "num_hidden_layers": TINY_LAYERS,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 2048,
        **_text_ids(tokenizer, end_of_turn),
    }


def _tiny_llava_onevision():
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    tokenizer = _tokenizer_with(["<image>", "<video>"])
    image_size, patch_size = 32, 8
    # anyres: the base view plus at most a 2x2 grid of 32-pixel tiles
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    config = LlavaOnevisionConfig(
        text_config=_qwen2_text_config(tokenizer),
        vision_config=_siglip_config(image_size, patch_size),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size={"height": image_size, "width": image_size}, image_grid_pinpoints=pinpoints
        ),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size={"height": image_size, "width": image_size}),
        num_image_tokens=(image_size // patch_size) ** 2,
        vision_feature_select_strategy="full",
        chat_template=_qwen_style_template("<image>"),
    )
    return LlavaOnevisionForConditionalGeneration, config, processor


def _with_named_tokens(tokenizer, named: dict[str, str]):
    """`tokenizer` reloaded with named special tokens (`tokenizer.<name>` / `<name>_id`).

    InternVL's and Gemma3's processors read their image tokens from such attributes; a
    save/reload with `extra_special_tokens` is the public way to set them, and they persist
    when the processor is saved.
    """
    import tempfile

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as directory:
        tokenizer.save_pretrained(directory)
        return AutoTokenizer.from_pretrained(directory, extra_special_tokens=named)


INTERNVL_NAMED = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}


def _tiny_internvl():
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    tokenizer = _with_named_tokens(_tokenizer_with(list(INTERNVL_NAMED.values())), INTERNVL_NAMED)
    image_size, patch_size, downsample_ratio = 32, 8, 0.5
    config = InternVLConfig(
        text_config=_qwen2_text_config(tokenizer),
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": [image_size, image_size],
            "patch_size": [patch_size, patch_size],
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        downsample_ratio=downsample_ratio,
        image_seq_length=int((image_size // patch_size) ** 2 * downsample_ratio**2),
    )
    processor = InternVLProcessor(
        # dynamic tiling into at most 2 tiles of 32 pixels, plus the thumbnail
        image_processor=GotOcr2ImageProcessor(
            size={"height": image_size, "width": image_size}, crop_to_patches=True, max_patches=2
        ),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size={"height": image_size, "width": image_size}),
        image_seq_length=config.image_seq_length,
        chat_template=_qwen_style_template("<IMG_CONTEXT>"),
    )
    return InternVLForConditionalGeneration, config, processor


GEMMA3_NAMED = {
    "boi_token": "<start_of_image>",
    "eoi_token": "<end_of_image>",
    "image_token": "<image_soft_token>",
}
# Gemma's turns: "<start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n...".
GEMMA3_TEMPLATE = (
    "{{ '<bos>' }}{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<end_of_turn>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)


def _tiny_gemma3():
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
    )

    tokens = ["<bos>", "<start_of_turn>", "<end_of_turn>", *GEMMA3_NAMED.values()]
    tokenizer = _with_named_tokens(_tokenizer_with(tokens), GEMMA3_NAMED)
    tokenizer.bos_token = "<bos>"
    image_size, patch_size, tokens_per_image = 32, 8, 4
    ids = _ids(tokenizer, list(GEMMA3_NAMED.values()))
    config = Gemma3Config(
        text_config={
            "vocab_size": _vocab_size(tokenizer),
            "hidden_size": TINY_HIDDEN,
            "intermediate_size": 2 * TINY_HIDDEN,
            "num_hidden_layers": TINY_LAYERS,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "query_pre_attn_scalar": 32,
            "sliding_window": 64,
            "layer_types": ["sliding_attention", "full_attention"],
            "max_position_embeddings": 2048,
            **_text_ids(tokenizer, "<end_of_turn>", bos="<bos>"),
        },
        vision_config=_siglip_config(image_size, patch_size),
        mm_tokens_per_image=tokens_per_image,  # the 4x4 patch grid pooled to 2x2
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
        image_seq_length=tokens_per_image,
        chat_template=GEMMA3_TEMPLATE,
    )
    return Gemma3ForConditionalGeneration, config, processor


_BUILDERS = {
    "qwen2_vl": _tiny_qwen2_vl,
    "qwen3_vl": _tiny_qwen3_vl,
    "idefics3": _tiny_idefics3,
    "llava_onevision": _tiny_llava_onevision,
    "internvl": _tiny_internvl,
    "gemma3": _tiny_gemma3,
}


def tiny_random_vlm(family_name: str, seed: int = 0) -> VLM:
    """A random-init tiny model of `family_name`'s real transformers class, with its processor.

    Qwen2.5-VL is the project's own tiny model (`vlmrl.model.tiny`); the others are built here.
    """
    import torch

    from vlmrl.model.vlm import VLM

    if family_name == "qwen2_5_vl":
        from vlmrl.model.tiny import build_random_tiny

        return build_random_tiny("tiny", seed=seed)
    if family_name not in _BUILDERS:
        raise ValueError(
            f"no tiny builder for family '{family_name}'; known: {sorted(_BUILDERS) + ['qwen2_5_vl']}"
        )
    model_class, config, processor = _BUILDERS[family_name]()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config).to(torch.float32)
        # Gemma3 zero-initialises its image projection (images are ignored until trained); a
        # test model should see its pixels, so that one matrix is drawn at random too.
        for name, parameter in model.named_parameters():
            if name.endswith("mm_input_projection_weight"):
                with torch.no_grad():
                    parameter.normal_(std=config.get_text_config().initializer_range)
    tokenizer = processor.tokenizer
    text_config = config.get_text_config()
    model.generation_config.pad_token_id = text_config.pad_token_id
    model.generation_config.eos_token_id = text_config.eos_token_id
    model.generation_config.bos_token_id = text_config.bos_token_id
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return VLM(model, processor, FAMILY_BY_NAME[family_name], name=f"tiny random {family_name}")
