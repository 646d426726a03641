"""Supervised fine-tuning as a thin loop over `vlm.score` (DESIGN 3.2: no third SFT loop).

The loss is the mean negative log-likelihood of the assistant's tokens, selected by the
wrapper's `action_mask`, so SFT trains exactly the tokens RL later samples and scores. Used
by the tiny model's pretraining, cold starts and SAMTok token learning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from vlmrl.model import VLM, Conversation, TokenScores, precision


@dataclass
class SFTSettings:
    steps: int = 1000
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    micro_batches: int = 1  # split each step's batch into this many forward/backward passes
    seed: int = 0
    log_every: int = 10
    # Compute dtype (weights stay as loaded): "auto" asks vlmrl.model.precision, which picks
    # bf16 autocast only where the device runs it natively (about 2x faster on such CPUs,
    # about 100x slower where bf16 is emulated); "float32" turns autocast off.
    dtype: str = "auto"
    # Build the next step's batch in a background thread while this step trains (rendering
    # and tokenising generated data costs about half a step on 2 CPU cores). Batches are a
    # function of the step, so prefetching changes no result.
    prefetch: bool = True


def sft_loss(scores: TokenScores) -> torch.Tensor:
    """Mean negative log-likelihood over action tokens: -(1/|A|) sum_{t in A} log p(x_t | x_<t)."""
    mask = scores.action_mask.float()
    count = mask.sum().clamp(min=1.0)
    return -(scores.logprobs * mask).sum() / count


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, floor: float = 0.1) -> float:
    """Learning-rate multiplier: linear warmup to 1, then cosine decay to `floor`."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_sft(
    vlm: VLM,
    batch_for_step: Callable[[int], list[Conversation]],
    settings: SFTSettings,
    *,
    log: Callable[[int, dict[str, Any]], None] | None = None,
    evaluate: Callable[[int], dict[str, Any]] | None = None,
    evaluate_every: int = 0,
    progress_description: str = "sft",
) -> list[dict[str, Any]]:
    """Train `vlm` for `settings.steps` steps; `batch_for_step(step)` gives each step's batch.

    Batches are a function of the step so a run is reproducible by seed and can restart at
    any step. Returns the logged history.
    """
    from concurrent.futures import ThreadPoolExecutor

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    torch.manual_seed(settings.seed)
    parameters = [p for p in vlm.model.parameters() if p.requires_grad]
    decay = [p for p in parameters if p.dim() >= 2]
    no_decay = [p for p in parameters if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.learning_rate,
        betas=(0.9, 0.98),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, settings.warmup_steps, settings.steps)
    )
    history: list[dict[str, Any]] = []
    compute_dtype = precision.autocast_dtype(vlm.device, settings.dtype)  # warns on emulated bf16
    vlm.model.train()
    running_loss, running_tokens, started = 0.0, 0, time.time()
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    ]
    executor = ThreadPoolExecutor(max_workers=1) if settings.prefetch else None
    upcoming = executor.submit(batch_for_step, 0) if executor is not None and settings.steps else None
    try:
        with Progress(*columns, transient=False) as progress:
            task = progress.add_task(progress_description, total=settings.steps, status="")
            for step in range(settings.steps):
                if upcoming is not None:
                    conversations = upcoming.result()  # re-raises the batch builder's error, if any
                    upcoming = (
                        executor.submit(batch_for_step, step + 1) if step + 1 < settings.steps else None
                    )
                else:
                    conversations = batch_for_step(step)
                optimizer.zero_grad(set_to_none=True)
                chunks = [conversations[i :: settings.micro_batches] for i in range(settings.micro_batches)]
                total_tokens = 0
                step_loss = 0.0
                for chunk in chunks:
                    if not chunk:
                        continue
                    with torch.autocast(
                        vlm.device.type, dtype=compute_dtype, enabled=compute_dtype != torch.float32
                    ):
                        scores = vlm.score(chunk)
                    # Sum over tokens here and divide by the step's token count below, so
                    # micro-batching gives exactly the gradient of one big batch's token mean.
                    summed = -(scores.logprobs * scores.action_mask).sum()
                    summed.backward()
                    step_loss += float(summed.detach())
                    total_tokens += int(scores.action_mask.sum())
                for parameter in parameters:
                    if parameter.grad is not None:
                        parameter.grad /= max(1, total_tokens)
                grad_norm = torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                running_loss += step_loss
                running_tokens += total_tokens
                if (step + 1) % settings.log_every == 0 or step + 1 == settings.steps:
                    record = {
                        "loss": running_loss / max(1, running_tokens),
                        "grad_norm": float(grad_norm),
                        "learning_rate": scheduler.get_last_lr()[0],
                        "tokens_per_second": running_tokens / max(1e-9, time.time() - started),
                    }
                    running_loss, running_tokens, started = 0.0, 0, time.time()
                    if evaluate is not None and evaluate_every and ((step + 1) % evaluate_every == 0):
                        vlm.model.eval()
                        record.update(evaluate(step + 1))
                        vlm.model.train()
                    history.append({"step": step + 1, **record})
                    if log is not None:
                        log(step + 1, record)
                    progress.update(task, status=f"loss {record['loss']:.3f}")
                progress.advance(task)
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    vlm.model.eval()
    return history
