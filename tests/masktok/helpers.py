"""A tokenizer small enough for unit tests (32 px, 32-d) and tiny scenes."""

from __future__ import annotations


def small_config():
    from vlmrl.masktok.model import MaskTokenizerConfig

    return MaskTokenizerConfig(
        image_size=32,
        hidden_size=32,
        backbone_dims=(8, 16, 32),
        backbone_blocks=(1, 1, 2),
        backbone_heads=(1, 1, 1),
        window_sizes=(4, 2, 2),
        decoder_mlp_dim=32,
        decoder_layers=1,
        decoder_heads=2,
        codebook_size=16,
    )


def small_tokenizer(seed: int = 0):
    import torch

    from vlmrl.masktok.model import MaskTokenizer

    torch.manual_seed(seed)
    return MaskTokenizer(small_config())
