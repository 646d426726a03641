"""Data parallelism for the trainer: process group set-up and the few collectives it needs.

Under `torchrun` each process collects its own share of episodes, computes gradients on it,
and the gradients are averaged across processes before the optimizer step (what DDP's
all-reduce does), so every process holds identical weights. Loss normalisers (token and
sequence counts) are summed across processes first, so the averaged gradient equals the
single-process gradient of the same global batch.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return rank_and_world()[0] == 0


def initialise_from_environment(backend: str | None = None) -> bool:
    """Join the process group `torchrun` describes in the environment; False when alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist.is_available() and dist.is_initialized()
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def sum_across_processes(values: torch.Tensor) -> torch.Tensor:
    """Sum of `values` over all processes (a copy; the input is left unchanged)."""
    values = values.detach().clone()
    if rank_and_world()[1] > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def average_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over processes, in one flat all-reduce."""
    world = rank_and_world()[1]
    if world <= 1:
        return
    # A parameter unused on one process (no image in its share) but used on another must
    # still join the reduction, or the flat buffers would differ in size between processes.
    device = parameters[0].device if parameters else torch.device("cpu")
    present = torch.tensor([p.grad is not None for p in parameters], dtype=torch.int32, device=device)
    dist.all_reduce(present, op=dist.ReduceOp.MAX)
    for parameter, used in zip(parameters, present.tolist()):
        if used and parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
    with_grad = [p for p in parameters if p.grad is not None]
    if not with_grad:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in with_grad])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world
    offset = 0
    for parameter in with_grad:
        count = parameter.grad.numel()
        parameter.grad.copy_(flat[offset : offset + count].view_as(parameter.grad))
        offset += count


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Copy rank 0's weights to every process (start from identical weights)."""
    if rank_and_world()[1] <= 1:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)
