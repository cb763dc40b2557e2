"""Small template-shared networks and coefficient rows shared by the similarity, regulariser and folding tests."""

from __future__ import annotations

import pytest
import torch

from benchmark.models.recurrent import RecurrentConvNet
from tasks.base import TaskSpec

SPECS = {1: TaskSpec(dims=1, in_channels=1, num_classes=2), 2: TaskSpec(dims=2, in_channels=3, num_classes=2)}
WIDTH = 8


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on 2 busy cores a second thread costs 10x.

    Autouse in every test module that imports it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def inputs(dims: int, n: int = 3, side: int = 7, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    spec = SPECS[dims]
    return torch.randn(n, spec.in_channels, *(side,) * dims, generator=g)


def net(dims: int, depth: int, templates: int | None, seed: int = 0, recall: bool = True) -> RecurrentConvNet:
    torch.manual_seed(seed)
    return RecurrentConvNet(SPECS[dims], width=WIDTH, depth=depth, templates=templates, recall=recall).eval()


def set_rows(model: RecurrentConvNet, rows: torch.Tensor) -> None:
    with torch.no_grad():
        model.bank.coefficients.copy_(rows)


def parallel_rows(depth: int, directions: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Row 4p + c = s * directions[c], a random scale of either sign: one loop of all positions."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.rand(depth, 4, generator=g) * 1.5 + 0.25
    signs = torch.where(torch.rand(depth, 4, generator=g) < 0.5, -1.0, 1.0)
    return ((scales * signs)[..., None] * directions[None]).reshape(4 * depth, -1)
