"""The CPU miniature's student: the teacher with most of its language layers dropped.

Masters needs a student that shares the teacher's tokenizer and starts clearly weaker (the
paper distils e.g. Qwen2.5-VL-72B/32B into 7B). On a CPU the teacher is the shipped `tiny`
(4 language layers); `tiny-student` keeps its embeddings, vision tower and the language
layers named by `keep_layers` (default: only the first), the layer-dropping initialisation of
DistilBERT (Sanh et al., 2019). It is built in a second from the shipped weights, so nothing
extra ships, and it reads shapes scenes clearly worse than the teacher (see the README).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

TINY_STUDENT = "tiny-student"


def parse_layers(text: str) -> list[int]:
    """'0,3' -> [0, 3]; an error names the input."""
    try:
        layers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise ValueError(f"--student-layers '{text}': expected comma-separated layer numbers") from error
    if not layers or len(set(layers)) != len(layers) or min(layers) < 0:
        raise ValueError(f"--student-layers '{text}': expected distinct non-negative layer numbers")
    return layers


def drop_layers(vlm: Any, keep_layers: Sequence[int]) -> Any:
    """Keep only `keep_layers` of a Qwen-VL language model, in place; returns the VLM."""
    base = vlm.model.get_base_model() if getattr(vlm, "uses_lora", False) else vlm.model
    language = base.model.language_model
    total = len(language.layers)
    if max(keep_layers) >= total:
        raise ValueError(f"student layers {list(keep_layers)}: the teacher has only {total} language layers")
    language.layers = torch.nn.ModuleList([language.layers[i] for i in keep_layers])
    for index, layer in enumerate(language.layers):
        layer.self_attn.layer_idx = index  # the KV cache is indexed by position in the stack
    for config in {id(c): c for c in (base.config.text_config, language.config)}.values():
        config.num_hidden_layers = len(keep_layers)
        if getattr(config, "layer_types", None):
            config.layer_types = [config.layer_types[i] for i in keep_layers]
    vlm.name = f"{vlm.name} (layers {','.join(map(str, keep_layers))})"
    return vlm


def load_student(spec: str, teacher_spec: str, keep_layers: str) -> Any:
    """`tiny-student` (the teacher with layers dropped) or any model spec `VLM.load` takes."""
    from vlmrl.model import VLM

    if spec == TINY_STUDENT:
        return drop_layers(VLM.load(teacher_spec), parse_layers(keep_layers))
    return VLM.load(spec)
