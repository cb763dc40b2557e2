"""Prefix sums of bit strings modulo 2 (easy-to-hard data, Schwarzschild et al. 2021).

Each puzzle is a string of ``size`` uniformly random bits ``b``. The input is float32
``(1, L)`` holding ``b - 0.5`` (so -0.5 for a 0 bit, +0.5 for a 1 bit); the target is int64
``(L,)`` holding the running parity ``t[i] = (b[0] + ... + b[i]) mod 2``. Every position is
scored. Sizes are bit lengths: any integer ``L >= 1``. The first ``l`` bits of a string are a
string of ``l`` bits with the first ``l`` targets (``truncate``), which the length curriculum uses.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from tasks.base import Task, TaskError, TaskSpec, is_integer
from tasks.registry import register_task


@register_task("prefix_sums", env_id="algoreason/PrefixSums-v0", env_size=32)
class PrefixSumsTask(Task):
    """Running parity of a random bit string (no options)."""

    name = "prefix_sums"
    spec = TaskSpec(dims=1, in_channels=1, num_classes=2)
    truncates = True

    def check_size(self, size: int) -> None:
        if not is_integer(size) or size < 1:
            raise TaskError(f"prefix_sums sizes are bit lengths, an integer >= 1, got {size!r}.")

    def shape(self, size: int) -> tuple[int]:
        return (int(size),)

    def sample(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        bits = rng.integers(0, 2, size=int(size), dtype=np.int64)
        inputs = (bits.astype(np.float32) - np.float32(0.5))[None, :]
        targets = np.bitwise_and(np.cumsum(bits), 1)
        return inputs, targets

    def truncate(self, inputs: torch.Tensor, targets: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``size`` bits: a running parity of a prefix is the prefix of the running parity."""
        return inputs[..., :size], targets[..., :size]

    def observation_space(self, size: int) -> spaces.Box:
        """Inputs are -0.5 (bit 0) or +0.5 (bit 1)."""
        return spaces.Box(-0.5, 0.5, shape=(1, *self.shape(size)), dtype=np.float32)
