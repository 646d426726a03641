"""Residual vector quantizer with EMA codebooks and dead-code restart (SAMTok's RVQ).

Why our own and not vector-quantize-pytorch's `ResidualVQ`: the reference computes the
commitment loss on the *cumulative* reconstructions, mean_i ||x - sg(sum_{j<=i} q_j)||^2,
while `ResidualVQ` sums per-level losses ||r_{i-1} - sg(q_i)||^2 on the residuals; it also
restarts dead codes with its own thresholds and reset sizes and smooths the EMA differently
(Laplace over the whole codebook). The differences are small but they change what the
tokenizer learns, and the quantizer is 80 lines, so it is written here to match the reference
exactly (see README, "reference | ours | why").

The algorithm (SAMTok, after SoundStream's RVQ with VQ-VAE-2's EMA updates):
    r_0 = x;  k_i = argmin_k ||r_{i-1} - e^i_k||;  q_i = e^i_{k_i};  r_i = r_{i-1} - q_i
    quantized = sum_i q_i,  output = x + sg(quantized - x)        (straight-through)
    commitment = mean_i mean ||x - sg(sum_{j<=i} q_j)||^2
EMA (decay d, eps): N_k <- d N_k + (1-d) n_k;  m_k <- d m_k + (1-d) sum_{r: k(r)=k} r;
    e_k = m_k / N~_k with Laplace-smoothed N~ = (N + eps) / (sum N + K eps) * sum N.
Codes whose EMA count N_k drops below 1 are restarted from random vectors of the batch.
"""

from __future__ import annotations

import torch
from torch import nn


class EMACodebook(nn.Module):
    """One level: `size` codes of `dim` numbers, updated by exponential moving averages."""

    def __init__(self, size: int, dim: int, decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        self.size, self.dim, self.decay, self.eps = size, dim, decay, eps
        embedding = torch.randn(size, dim) / dim**0.5
        self.register_buffer("embedding", embedding)
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("embedding_sum", embedding.clone())

    def nearest(self, vectors: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (L2) of each row of `vectors` [n, dim]."""
        codes = self.embedding.to(vectors.dtype)
        distances = (
            vectors.pow(2).sum(1, keepdim=True) - 2 * vectors @ codes.t() + codes.pow(2).sum(1)[None, :]
        )
        return distances.argmin(1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return self.embedding[indices]

    @torch.no_grad()
    def update(self, vectors: torch.Tensor, indices: torch.Tensor) -> None:
        """One EMA step on this batch's assignments, then restart of dead codes."""
        vectors = vectors.float()
        onehot = torch.nn.functional.one_hot(indices, self.size).float()
        counts = onehot.sum(0)
        sums = onehot.t() @ vectors
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embedding_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.size * self.eps) * total
        self.embedding.copy_(self.embedding_sum / smoothed[:, None])
        dead = self.cluster_size < 1.0
        if dead.any():
            self._restart(dead, vectors)

    def _restart(self, dead: torch.Tensor, vectors: torch.Tensor) -> None:
        # Dead codes take random vectors of the current batch (tiled with a little noise when
        # the batch is smaller than the number of dead codes), so every code stays in use.
        count = int(dead.sum())
        if vectors.shape[0] < count:
            repeats = (count + vectors.shape[0] - 1) // vectors.shape[0]
            vectors = vectors.repeat(repeats, 1)
            vectors = vectors + 0.01 * torch.randn_like(vectors) / self.dim**0.5
        chosen = vectors[torch.randperm(vectors.shape[0], device=vectors.device)[:count]]
        self.embedding[dead] = chosen
        self.embedding_sum[dead] = chosen
        self.cluster_size[dead] = 1.0


class ResidualQuantizer(nn.Module):
    """`levels` EMA codebooks (not shared) applied to successive residuals."""

    def __init__(self, dim: int = 256, levels: int = 2, codebook_size: int = 256, decay: float = 0.99):
        super().__init__()
        self.dim, self.levels, self.codebook_size = dim, levels, codebook_size
        self.codebooks = nn.ModuleList(EMACodebook(codebook_size, dim, decay) for _ in range(levels))

    def forward(
        self, vectors: torch.Tensor, bypass: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(straight-through quantized [n, dim], codes [n, levels], commitment loss).

        With `bypass` the codes are still chosen and the codebooks still follow the inputs by
        EMA, but the input goes out unquantized (the training warm-up, see `train.py`).
        """
        residual = vectors.detach()
        cumulative = torch.zeros_like(residual)
        codes, commitment = [], vectors.new_zeros(())
        for codebook in self.codebooks:
            indices = codebook.nearest(residual)
            quantized = codebook.lookup(indices).to(residual.dtype)
            if self.training:
                codebook.update(residual, indices)
            cumulative = cumulative + quantized
            commitment = commitment + (vectors - cumulative.detach()).pow(2).mean()
            residual = residual - quantized
            codes.append(indices)
        output = vectors if bypass else vectors + (cumulative - vectors).detach()
        return output, torch.stack(codes, 1), commitment / self.levels

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of the codes' embeddings: codes [n, levels] -> [n, dim]; -1 skips a level."""
        if codes.dim() != 2 or codes.shape[1] > self.levels:
            raise ValueError(f"codes must be [n, <= {self.levels}], got shape {tuple(codes.shape)}")
        total = torch.zeros(codes.shape[0], self.dim, device=codes.device)
        for level in range(codes.shape[1]):
            column = codes[:, level]
            if ((column >= self.codebook_size) | (column < -1)).any():
                raise ValueError(f"level {level} codes must lie in [0, {self.codebook_size}) or be -1")
            used = column >= 0
            total[used] += self.codebooks[level].lookup(column[used]).float()
        return total
