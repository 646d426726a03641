"""`vlmrl plan`: what a bundled config needs per GPU at real scale, before renting GPUs.

The arithmetic is one pure function per memory term (integers in, bytes out), each tested on
hand-computed numbers in tests/test_plan.py. The model's shapes come from its public
`config.json` (tests/fixtures/real_configs/ when offline, the Hub otherwise, or
`--model-config`), built on the meta device: parameters are counted, no weights are read.

Conventions, as this suite trains: parameters are stored in bf16 on GPUs (vlmrl.model.precision),
so gradients are bf16 and AdamW's two moments are bf16 too; `mixed_precision_training_bytes`
adds accelerate's estimate for the common alternative (fp32 master weights). FSDP2 shards
parameters, gradients and optimizer states (and frozen copies) evenly over the GPUs; activations,
the rollout KV cache and the method's distributions belong to each GPU's own micro-batch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BF16 = 2
FP32 = 4
GIB = 1024**3
ROOT = Path(__file__).resolve().parents[1]
REAL_CONFIGS = ROOT / "tests" / "fixtures" / "real_configs"

# Model names the bundled configs use -> the fixture folder of the same architecture.
# Fine-tunes keep their base's shapes (Mini-o3-7B-SFT is Qwen2.5-VL-7B-Instruct fine-tuned;
# runs/samtok-sft/model is the SAMTok SFT config's output, without its 514 mask-token rows).
FIXTURES = {
    "Qwen/Qwen2.5-VL-7B-Instruct": "Qwen2.5-VL-7B-Instruct",
    "Qwen/Qwen2.5-VL-3B-Instruct": "Qwen2.5-VL-3B-Instruct",
    "Qwen/Qwen2-VL-7B-Instruct": "Qwen2-VL-7B-Instruct",
    "OpenGVLab/InternVL3-2B-hf": "InternVL3-2B",
    "facebook/sam2.1-hiera-large": "sam2.1-hiera-large",
    "Mini-o3/Mini-o3-7B-SFT": "Qwen2.5-VL-7B-Instruct",
    "runs/samtok-sft/model": "Qwen2.5-VL-7B-Instruct",
    "checkpoints/sam2.1-hiera-large": "sam2.1-hiera-large",
}


# ------------------------------------------------------------------ one function per term
def weight_bytes(parameters: int, bytes_per_parameter: int = BF16) -> int:
    """Weights held on the GPU."""
    return parameters * bytes_per_parameter


def gradient_bytes(trainable: int, bytes_per_parameter: int = BF16) -> int:
    """One gradient per trainable parameter, in the parameters' dtype."""
    return trainable * bytes_per_parameter


def adamw_state_bytes(trainable: int, bytes_per_state: int = BF16) -> int:
    """AdamW's two moments (exp_avg, exp_avg_sq) per trainable parameter, in its dtype."""
    return 2 * trainable * bytes_per_state


def mixed_precision_training_bytes(parameters: int) -> dict[str, int]:
    """accelerate's estimate (`accelerate estimate-memory`) for bf16 mixed precision with fp32
    master weights: model 4, gradients 6, optimizer 8 bytes per parameter."""
    from accelerate.commands.estimate import estimate_training_usage

    sizes = estimate_training_usage(parameters * FP32, "bfloat16")
    return {"model": sizes["model"], "gradients": sizes["gradients"], "optimizer": sizes["optimizer"]}


def fsdp_shard_bytes(total: int, gpus: int) -> int:
    """One GPU's share of a tensor set that FSDP2 shards evenly (rounded up)."""
    return math.ceil(total / gpus)


def lora_parameters(linear_shapes: Iterable[tuple[int, int]], rank: int) -> int:
    """LoRA's A [rank, in] and B [out, rank] for every adapted Linear(in, out)."""
    return sum(rank * (inputs + outputs) for inputs, outputs in linear_shapes)


def activation_bytes(
    layers: int,
    sequence: int,
    micro_batch: int,
    hidden: int,
    heads: int,
    checkpointing: bool,
    attention_scores: bool = False,
) -> int:
    """Activations kept for the backward pass of a transformer stack, 16-bit.

    Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models"),
    Eq. 1 without tensor or sequence parallelism: s b h (34 + 5 a s / h) bytes per layer. The
    5 a s / h term is the stored attention matrix: eager attention keeps it, SDPA/FlashAttention
    (transformers' default) do not, leaving 34 s b h (the paper's selective recomputation). With
    full activation checkpointing each layer keeps only its 2 s b h-byte input, and one layer's
    activations exist again while it is recomputed.
    """
    per_layer = 34 * sequence * micro_batch * hidden
    if attention_scores:
        per_layer += 5 * heads * sequence * sequence * micro_batch
    if not checkpointing:
        return layers * per_layer
    return layers * 2 * sequence * micro_batch * hidden + per_layer


def logits_bytes(sequence: int, micro_batch: int, vocabulary: int, bytes_per_value: int = FP32) -> int:
    """The output logits of a micro-batch (float32, as the log-softmax reads them)."""
    return sequence * micro_batch * vocabulary * bytes_per_value


def kv_cache_bytes(
    layers: int, kv_heads: int, head_dim: int, tokens: int, bytes_per_value: int = BF16
) -> int:
    """Rollout KV cache: a key and a value per layer, KV head and token."""
    return 2 * layers * kv_heads * head_dim * tokens * bytes_per_value


def distribution_bytes(micro_batch: int, length: int, vocabulary: int, bytes_per_value: int = FP32) -> int:
    """Full next-token distributions of a micro-batch (Masters' teacher or student)."""
    return micro_batch * length * vocabulary * bytes_per_value


def value_head_parameters(hidden: int, widths: Iterable[int]) -> int:
    """VL-DAC's critic MLP hidden -> widths... -> 1, weights and biases."""
    total, previous = 0, hidden
    for width in [*widths, 1]:
        total += previous * width + width
        previous = width
    return total


# ------------------------------------------------------------------ the model's shapes
@dataclass
class ModelFacts:
    """What the terms need from a model: counts and the language model's shapes."""

    name: str
    parameters: int
    linear_shapes: list[tuple[int, int]] = field(default_factory=list)
    layers: int = 0
    hidden: int = 0
    heads: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    vocabulary: int = 0
    image_tokens_per_tile: int = 0
    tile: int = 0

    @property
    def is_language_model(self) -> bool:
        return self.layers > 0


def resolve_model_config(name: str, model_config: Path | None = None) -> Path:
    """The folder (or file) holding `name`'s config.json: `model_config`, a local directory,
    the fixture of the same architecture, else the Hub (online)."""
    if model_config is not None:
        return Path(model_config)
    if (Path(name) / "config.json").is_file():
        return Path(name)
    if name in FIXTURES and (REAL_CONFIGS / FIXTURES[name] / "config.json").is_file():
        return REAL_CONFIGS / FIXTURES[name]
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(name, "config.json")).parent
    except Exception as error:  # offline, gated or unknown: say what to pass instead
        raise ValueError(
            f"no config.json for '{name}' here or on the Hub ({type(error).__name__}); "
            "pass --model-config PATH (a config.json or its folder)"
        ) from error


def model_facts(path: Path, name: str) -> ModelFacts:
    """Build the model `path` describes on the meta device and read off its shapes."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

    folder = path.parent if path.is_file() else path
    config = AutoConfig.from_pretrained(str(folder))
    with torch.device("meta"):  # accelerate's init_empty_weights unties tied embeddings
        if config.model_type == "sam2":
            model = AutoModel.from_config(config)
        else:
            model = AutoModelForImageTextToText.from_config(config)
    parameters = sum(p.numel() for p in model.parameters())  # tied weights once
    facts = ModelFacts(name=name, parameters=parameters)
    if config.model_type == "sam2":
        return facts
    output = model.get_output_embeddings()
    facts.linear_shapes = [
        (module.in_features, module.out_features)
        for module in model.modules()
        if isinstance(module, torch.nn.Linear) and module is not output
    ]
    text = config.get_text_config()
    facts.layers = text.num_hidden_layers
    facts.hidden = text.hidden_size
    facts.heads = text.num_attention_heads
    facts.kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    facts.head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    facts.vocabulary = output.weight.shape[0]
    settings = (
        json.loads((folder / "preprocessor_config.json").read_text())
        if (folder / "preprocessor_config.json").is_file()
        else {}
    )
    if config.model_type == "internvl":
        facts.image_tokens_per_tile = config.image_seq_length
        facts.tile = settings.get("size", {}).get("height", 448)
    else:  # Qwen-VL: one token per merge_size x merge_size patches
        vision = config.vision_config
        facts.tile = vision.patch_size * vision.spatial_merge_size
    return facts


def image_tokens(facts: ModelFacts, resolution: int) -> int:
    """Tokens of one square image of `resolution` pixels."""
    if facts.image_tokens_per_tile:  # InternVL: a tile per 448 px, a thumbnail once tiled
        tiles = math.ceil(resolution / facts.tile) ** 2
        return facts.image_tokens_per_tile * (tiles + (1 if tiles > 1 else 0))
    return max(1, round(resolution / facts.tile)) ** 2


# ------------------------------------------------------------------ a config's plan
PROMPT_TEXT_TOKENS = 128  # question and chat template around the image
DEFAULT_RESOLUTION = 448  # configs that set no image size


def sequence_length(settings: dict[str, Any], facts: ModelFacts) -> int:
    """Prompt (one image + PROMPT_TEXT_TOKENS) plus the longest response the config allows;
    a config with a whole-trajectory budget (`context_budget`) uses that."""
    if settings.get("context_budget"):
        return int(settings["context_budget"])
    response = max(
        int(settings.get(key) or 0)
        for key in ("max_length", "max_new_tokens", "clue_tokens", "decision_tokens")
    )
    resolution = int(settings.get("resolution") or settings.get("tile") or DEFAULT_RESOLUTION)
    return image_tokens(facts, resolution) + PROMPT_TEXT_TOKENS + (response or 1024)


def rollout_sequences(settings: dict[str, Any]) -> int:
    """Sequences decoded together: one group (group_size, responses or samples), else 1."""
    for key in ("group_size", "responses", "samples"):
        if settings.get(key):
            return int(settings[key])
    return 1


@dataclass
class Row:
    term: str
    one_gpu: int | None  # bytes; None: does not apply
    sharded: int | None
    note: str = ""


def plan_rows(
    settings: dict[str, Any],
    package: str,
    facts: ModelFacts,
    gpus: int,
    method_facts: ModelFacts | None = None,
) -> tuple[list[Row], dict[str, Any]]:
    """Per-GPU bytes of every term for one bundled config (`settings`, its YAML as a dict)."""
    rows: list[Row] = []
    parameters = facts.parameters

    def add(term: str, total: int | None, shard: bool, note: str = "") -> None:
        sharded = None if total is None else (fsdp_shard_bytes(total, gpus) if shard else total)
        rows.append(Row(term, total, sharded, note))

    add("weights (bf16)", weight_bytes(parameters), True)
    add("full FT: gradients (bf16)", gradient_bytes(parameters), True)
    add("full FT: AdamW moments (bf16)", adamw_state_bytes(parameters), True)
    accelerate_sizes = mixed_precision_training_bytes(parameters)
    add(
        "full FT, fp32 master (accelerate): model+gradients+optimizer",
        sum(accelerate_sizes.values()),
        True,
        "replaces the three rows above",
    )
    rank = int(settings.get("lora_rank") or 0)
    lora_note = "" if rank else "rank 16 shown; this config trains in full"
    lora = lora_parameters(facts.linear_shapes, rank or 16) if facts.linear_shapes else 0
    if lora:
        add(
            f"LoRA r={rank or 16} ({lora:,} params): weights+gradients+AdamW",
            weight_bytes(lora) + gradient_bytes(lora) + adamw_state_bytes(lora),
            True,
            lora_note,
        )
    if float(settings.get("beta") or 0) > 0:
        add("reference policy (beta > 0), full FT", weight_bytes(parameters), True, "LoRA: adapters off, 0")
    details: dict[str, Any] = {"parameters": parameters, "lora_parameters": lora}
    totals: dict[str, int] = {}
    if facts.is_language_model:
        sequence = sequence_length(settings, facts)
        micro_batch = int(settings.get("micro_batch_size") or 1)
        checkpointing = bool(settings.get("gradient_checkpointing"))
        sequences = rollout_sequences(settings)
        details.update(sequence=sequence, micro_batch=micro_batch, rollout_sequences=sequences)
        shape = (facts.layers, sequence, micro_batch, facts.hidden, facts.heads)
        with_checkpointing = activation_bytes(*shape, checkpointing=True)
        without = activation_bytes(*shape, checkpointing=False)
        eager = activation_bytes(*shape, checkpointing=False, attention_scores=True)
        add("activations, checkpointing (Korthikanti Eq. 1, SDPA)", with_checkpointing, False)
        add("activations, no checkpointing (Korthikanti Eq. 1, SDPA)", without, False)
        add("activations, no checkpointing, eager attention", eager, False, "+ 5 a s^2 b per layer")
        add("output logits (fp32)", logits_bytes(sequence, micro_batch, facts.vocabulary), False)
        kv = kv_cache_bytes(facts.layers, facts.kv_heads, facts.head_dim, sequences * sequence)
        add(f"rollout KV cache ({sequences} x {sequence} tokens)", kv, False)
        activations = with_checkpointing if checkpointing else without
        transient = activations + logits_bytes(sequence, micro_batch, facts.vocabulary) + kv
    else:
        rows.append(Row("activations, logits, KV cache", None, None, "image model: not estimated"))
        transient = 0
    method = _method_rows(settings, package, facts, method_facts, details)
    for term, total, shard, note in method:
        add(term, total, shard, note)
    reference = weight_bytes(parameters) if float(settings.get("beta") or 0) > 0 else 0
    full = weight_bytes(parameters) + gradient_bytes(parameters) + adamw_state_bytes(parameters) + reference
    adapters = weight_bytes(parameters) + weight_bytes(lora) + gradient_bytes(lora) + adamw_state_bytes(lora)
    for key, shards in (("one_gpu", 1), ("sharded", gpus)):
        method_bytes = sum(
            fsdp_shard_bytes(total, shards) if shard else total for _, total, shard, _ in method
        )
        totals[f"full_{key}"] = fsdp_shard_bytes(full, shards) + transient + method_bytes
        totals[f"lora_{key}"] = fsdp_shard_bytes(adapters, shards) + transient + method_bytes
    details["totals"] = totals
    return rows, details


def _method_rows(
    settings: dict[str, Any],
    package: str,
    facts: ModelFacts,
    method_facts: ModelFacts | None,
    details: dict[str, Any],
) -> list[tuple[str, int, bool, str]]:
    """(term, bytes, sharded by FSDP2, note) of the tensors only this method holds."""
    rows: list[tuple[str, int, bool, str]] = []
    if package == "masters" and method_facts is not None:
        micro_batch, sequence = details["micro_batch"], details["sequence"]
        vocabulary = min(facts.vocabulary, method_facts.vocabulary)
        rows.append(
            (
                f"teacher weights ({method_facts.parameters:,} params, bf16)",
                weight_bytes(method_facts.parameters),
                True,
                "frozen",
            )
        )
        rows.append(
            (
                "teacher distributions (fp32)",
                distribution_bytes(micro_batch, sequence, vocabulary),
                False,
                "micro-batch x length x vocab",
            )
        )
        rows.append(
            (
                "student distributions (fp32)",
                distribution_bytes(micro_batch, sequence, vocabulary),
                False,
                "for the JSD",
            )
        )
    if package == "vldac":
        widths = [int(w) for w in str(settings.get("value_widths") or "256,256").split(",") if w]
        head = value_head_parameters(facts.hidden, widths)
        total = weight_bytes(head, FP32) + gradient_bytes(head, FP32) + adamw_state_bytes(head, FP32)
        rows.append((f"value head ({head:,} params, fp32 + grads + AdamW)", total, True, ""))
    if package == "masktok" and method_facts is not None and facts.is_language_model:
        rows.append(
            (
                f"SAM2 ({method_facts.parameters:,} params, bf16)",
                weight_bytes(method_facts.parameters),
                True,
                "frozen mask decoder",
            )
        )
    return rows


# ------------------------------------------------------------------ the command
def bundled_configs() -> list[Path]:
    return sorted(Path(__file__).parent.glob("*/configs/*.yaml"))


def find_config(name: str) -> Path:
    """A YAML file, `PACKAGE/NAME` or a bundled NAME that only one package has."""
    if Path(name).is_file():
        return Path(name)
    stem = name.removesuffix(".yaml")
    matches = [p for p in bundled_configs() if f"{p.parent.parent.name}/{p.stem}" == stem or p.stem == stem]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(f"{p.parent.parent.name}/{p.stem}" for p in bundled_configs())
    problem = "is ambiguous" if matches else "is neither a file nor a bundled config"
    raise ValueError(f"config '{name}' {problem}; bundled: {known}")


def run_plan(config: str, gpus: int = 1, gpu_memory: float = 80.0, model_config: Path | None = None) -> None:
    """Print the table for one config."""
    import yaml
    from rich.console import Console
    from rich.table import Table

    path = find_config(config)
    settings = yaml.safe_load(path.read_text()) or {}
    package = path.parent.parent.name
    name = settings.get("student") or settings.get("model") or settings.get("sam2")
    source = resolve_model_config(name, model_config)
    facts = model_facts(source, name)
    method_facts = None
    if package == "masters":
        teacher = settings["teacher"]
        method_facts = model_facts(resolve_model_config(teacher), teacher)
    elif package == "masktok" and facts.is_language_model:
        sam2 = "facebook/sam2.1-hiera-large"
        method_facts = model_facts(resolve_model_config(sam2), sam2)
    rows, details = plan_rows(settings, package, facts, gpus, method_facts)

    title = f"vlmrl plan: {package}/{path.stem} ({name}, {facts.parameters:,} parameters)"
    table = Table(title=title)
    table.add_column("per GPU (GiB)")
    table.add_column("1 GPU / DDP replica", justify="right")
    table.add_column(f"FSDP2 over {gpus}", justify="right")
    table.add_column("note")

    def gib(value: int | None) -> str:
        return "-" if value is None else f"{value / GIB:.2f}"

    for row in rows:
        table.add_row(row.term, gib(row.one_gpu), gib(row.sharded), row.note)
    totals = details["totals"]
    budget = gpu_memory * GIB
    for kind, label in (("full", "total, full fine-tuning"), ("lora", "total, LoRA")):
        if kind == "lora" and not details["lora_parameters"]:
            continue
        fits = "fits" if totals[f"{kind}_sharded"] <= budget else "does not fit"
        table.add_row(
            f"[bold]{label}[/bold]",
            gib(totals[f"{kind}_one_gpu"]),
            gib(totals[f"{kind}_sharded"]),
            f"{fits} in {gpu_memory:g} GiB (FSDP2)",
        )
    console = Console(width=140)
    console.print(table)
    shown = source.resolve()
    console.print(f"model config: {shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown}")
    if facts.is_language_model:
        sequence = (
            "the config's context_budget"
            if settings.get("context_budget")
            else f"one image + {PROMPT_TEXT_TOKENS} prompt tokens + the longest response"
        )
        console.print(
            f"sequence {details['sequence']} tokens ({sequence}), micro-batch {details['micro_batch']}, "
            f"{details['rollout_sequences']} sequence(s) decoded together; totals use "
            f"{'checkpointed' if settings.get('gradient_checkpointing') else 'full'} SDPA activations. "
            "Not counted: the vision tower's activations, CUDA context and allocator slack, "
            "a rollout engine (vLLM) beside the trainer."
        )
