import numpy as np
import pytest
import torch
from helpers import small_config, small_tokenizer

from vlmrl.masktok.model import MaskTokenizer, reconstruction_losses
from vlmrl.masktok.quantizer import EMACodebook, ResidualQuantizer


def _quantizer_with(codebooks):
    quantizer = ResidualQuantizer(dim=2, levels=len(codebooks), codebook_size=len(codebooks[0]))
    for module, codes in zip(quantizer.codebooks, codebooks):
        module.embedding.copy_(torch.tensor(codes, dtype=torch.float32))
    return quantizer.eval()


def test_residual_codes_and_cumulative_commitment_by_hand():
    quantizer = _quantizer_with([[[0.0, 0.0], [1.0, 1.0]], [[0.0, 0.5], [0.25, 0.0]]])
    x = torch.tensor([[1.2, 1.0]])
    output, codes, commitment = quantizer(x)
    # Level 0: nearest to (1.2, 1) is (1, 1); residual (0.2, 0); level 1: nearest is (0.25, 0).
    assert codes.tolist() == [[1, 1]]
    assert torch.allclose(output, torch.tensor([[1.25, 1.0]]))
    # Commitment on cumulative sums: mean(||x - (1,1)||^2 / 2, ||x - (1.25,1)||^2 / 2) per element.
    expected = ((0.2**2 + 0) / 2 + (0.05**2 + 0) / 2) / 2
    assert float(commitment) == pytest.approx(expected)
    assert torch.allclose(quantizer.embed(codes), output)
    assert torch.allclose(quantizer.embed(torch.tensor([[1, -1]])), torch.tensor([[1.0, 1.0]]))
    with pytest.raises(ValueError, match="must lie in"):
        quantizer.embed(torch.tensor([[2, 0]]))


def test_straight_through_gradient_reaches_the_input():
    quantizer = _quantizer_with([[[0.0, 0.0], [1.0, 1.0]], [[0.0, 0.5], [0.25, 0.0]]])
    x = torch.tensor([[1.2, 1.0]], requires_grad=True)
    output, _, _ = quantizer(x)
    output.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))


def test_ema_update_and_dead_code_restart_by_hand():
    torch.manual_seed(0)
    codebook = EMACodebook(size=2, dim=1, decay=0.5, eps=0.0)
    codebook.embedding.copy_(torch.tensor([[0.0], [10.0]]))
    codebook.embedding_sum.copy_(torch.tensor([[0.0], [10.0]]))
    codebook.cluster_size.copy_(torch.tensor([1.0, 1.0]))
    vectors = torch.tensor([[2.0], [4.0]])
    codebook.update(vectors, torch.tensor([0, 0]))
    # N = 0.5*1 + 0.5*2 = 1.5 for code 0; 0.5 for code 1 (dead: < 1). m_0 = 0.5*0 + 0.5*6 = 3.
    assert codebook.cluster_size[0].item() == pytest.approx(1.5)
    assert codebook.embedding[0].item() == pytest.approx(3.0 / 1.5)
    # Code 1 was restarted from a batch vector with count 1.
    assert codebook.embedding[1].item() in (2.0, 4.0) and codebook.cluster_size[1].item() == 1.0


def test_encode_decode_shapes_and_save_load(tmp_path):
    tokenizer = small_tokenizer()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size=(40, 50, 3), dtype=np.uint8) for _ in range(3)]
    masks = [np.zeros((40, 50), bool) for _ in range(3)]
    for i, mask in enumerate(masks):
        mask[5 + i : 20 + i, 10:30] = True
    codes = tokenizer.encode(images, masks)
    assert codes.shape == (3, 2) and int(codes.min()) >= 0 and int(codes.max()) < 16
    decoded = tokenizer.decode(images, codes)
    assert [d.shape for d in decoded] == [(40, 50)] * 3 and decoded[0].dtype == bool
    tokenizer.save(tmp_path / "tok")
    again = MaskTokenizer.load(tmp_path / "tok")
    assert torch.equal(again.encode(images, masks), codes)
    with pytest.raises(ValueError, match="one mask per image"):
        tokenizer.encode(images, masks[:2])
    with pytest.raises(ValueError, match="codes of shape"):
        tokenizer.decode(images, [[1, 2]])
    with pytest.raises(FileNotFoundError, match="not a mask tokenizer"):
        MaskTokenizer.load(tmp_path / "absent")


def test_losses_by_hand():
    logits = torch.zeros(1, 2, 2)
    masks = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    losses = reconstruction_losses(logits, masks, torch.tensor(0.4), (0.25, 2.0, 0.5))
    bce = float(torch.log(torch.tensor(2.0)))  # sigmoid(0) = 0.5 everywhere
    dice = 1 - (2 * 0.5 + 1) / (2.0 + 1.0 + 1)  # sum p = 2, sum t = 1
    assert float(losses["bce"]) == pytest.approx(bce)
    assert float(losses["dice"]) == pytest.approx(dice)
    assert float(losses["loss"]) == pytest.approx(0.25 * 0.4 + 2 * bce + 0.5 * dice)


def test_config_round_trip():
    config = small_config()
    assert type(config).from_dict(config.to_dict()) == config
