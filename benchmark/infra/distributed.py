"""Data-parallel training across processes: ``torchrun --nproc_per_node=N -m benchmark ...``.

torchrun starts N copies of the command and tells each its place through environment variables
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). Each process (a
*rank*) trains on its own 1/N of every global batch (``benchmark.training.trainer.fit``) on its own device
(``cuda:LOCAL_RANK``; the CPU with the gloo backend), the gradients are averaged across ranks
after every backward pass, and rank 0 alone writes the run directory. Without torchrun's
variables nothing here does anything: one process is world size 1, rank 0.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist


def launched() -> bool:
    """True when this process was started by torchrun (or another launcher setting its variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_world_size() -> int:
    """The number of processes torchrun started (1 without torchrun), readable before ``init``."""
    return int(os.environ.get("WORLD_SIZE", "1")) if launched() else 1


def active() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank: the process group's, or torchrun's ``RANK`` before the group exists."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ["RANK"]) if launched() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0, the one process that writes files and prints (True without torchrun)."""
    return rank() == 0


def rank_device(device: torch.device) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` when the run asked for CUDA, else ``device``."""
    if device.type == "cuda" and launched():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def init(device: torch.device) -> bool:
    """Join torchrun's process group (nccl on CUDA, gloo on the CPU); True if this call joined it.

    Does nothing without torchrun's variables or when a group already exists."""
    if not launched() or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)  # nccl uses the current device for its communicators
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. generating a dataset into the cache), the others after
    it (reading that cache instead of generating it again)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a small picklable object, e.g. the run directory)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Every rank starts from rank 0's weights (they are equal already when every rank seeded
    the same way; this makes it so, as DistributedDataParallel does at construction)."""
    if active():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The elementwise sum of ``tensor`` over all ranks (a new tensor; ``tensor`` itself alone
    without a process group)."""
    if not active():
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (one collective and one host sync)."""
    if not active():
        return flag
    return bool(sum_over_ranks(torch.tensor(int(flag), device=device)))


def average_gradients(parameters: Iterable[torch.nn.Parameter], loss: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Replace every rank's gradients by their weighted mean over ranks; return the weighted mean loss.

    Each rank's loss is a mean over its ``weight`` scored positions (a 0-d count), so the loss of
    the global batch is ``sum_r w_r * loss_r / sum_r w_r`` and its gradient the same weighted
    mean of the ranks' gradients: exactly what one process computes on the whole batch (up to
    rounding), even when the ranks' counts differ (shortest-path grids). One all-reduce of one
    flat buffer per step (gradients, ``w * loss`` and ``w``), asynchronous on the GPU: no host
    sync. Parameters without a gradient (the projection when the progressive loss detached it)
    are left out; the same ones on every rank, because every rank draws the same split.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    weight = weight.to(torch.float32)
    flat = torch.cat([*(g.flatten() * weight for g in grads), (loss.detach().float() * weight).reshape(1), weight.reshape(1)])
    dist.all_reduce(flat)
    total = flat[-1].clamp_min(1)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g) / total)
        offset += g.numel()
    return flat[-2] / total
