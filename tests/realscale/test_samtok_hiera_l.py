"""SAMTok on SAM2.1 Hiera-L (shrunk): a tokenizer trained from real SAM2 weights reloads exactly."""

from __future__ import annotations

import json

import numpy as np
import torch
from realscale_helpers import shrunk_sam2

from vlmrl.masktok.model import MaskTokenizer, MaskTokenizerConfig


def test_tokenizer_built_from_sam2_weights_saves_its_own_architecture_and_reloads(tmp_path):
    sam2 = shrunk_sam2(tmp_path / "sam2.1-hiera-large")
    tokenizer = MaskTokenizer(MaskTokenizerConfig(sam2=str(sam2), codebook_size=16, centre_skip=False))
    backbone = tokenizer.sam.config.vision_config.backbone_config
    assert backbone.blocks_per_stage == [1, 1, 3, 1] and tokenizer.config.image_size == 1024
    tokenizer.save(tmp_path / "tokenizer")
    saved = json.loads((tmp_path / "tokenizer" / "config.json").read_text())
    assert saved["sam2"] == ""  # the weights travel in model.safetensors, not by path
    assert saved["sam2_architecture"]["vision_config"]["backbone_config"]["blocks_per_stage"] == [1, 1, 3, 1]

    again = MaskTokenizer.load(tmp_path / "tokenizer")  # the strict load used to fail here
    for (name, value), (other, reloaded) in zip(tokenizer.state_dict().items(), again.state_dict().items()):
        assert name == other and torch.equal(value, reloaded), name
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8) for _ in range(2)]
    masks = [np.zeros((48, 64), bool) for _ in range(2)]
    masks[0][5:30, 10:40] = True
    masks[1][20:40, 30:60] = True
    codes = tokenizer.encode(images, masks)
    assert torch.equal(again.encode(images, masks), codes)
    assert all(
        np.array_equal(a, b) for a, b in zip(tokenizer.decode(images, codes), again.decode(images, codes))
    )
    # and a tokenizer reloaded once saves and reloads again the same (train --init, then save)
    again.save(tmp_path / "twice")
    assert json.loads((tmp_path / "twice" / "config.json").read_text()) == saved
