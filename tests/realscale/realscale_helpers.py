"""Where the real configs live, and the shrunk models built from them."""

from __future__ import annotations

import json
from pathlib import Path

REAL_CONFIGS = Path(__file__).resolve().parents[1] / "fixtures" / "real_configs"


def real_config(name: str) -> dict:
    """The public config.json of `name` (a folder of tests/fixtures/real_configs/)."""
    return json.loads((REAL_CONFIGS / name / "config.json").read_text())


def shrunk_sam2(directory: Path, seed: int = 0) -> Path:
    """SAM2.1 Hiera-L, shrunk, random weights, saved as `Sam2Model.save_pretrained` writes it."""
    import torch
    from transformers import Sam2Config, Sam2Model

    from vlmrl.model.realscale import shrink_config

    torch.manual_seed(seed)
    model = Sam2Model(Sam2Config.from_dict(shrink_config(real_config("sam2.1-hiera-large"))))
    model.save_pretrained(directory)
    return directory
