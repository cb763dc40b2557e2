import collections

import numpy as np
import torch

from benchmark.config import TrainConfig
from benchmark.model import RecurrentConvNet
from benchmark.train import draw_progressive_split, fit, masked_cross_entropy, warmup_cosine
from tasks.maze import MazeTask


def test_progressive_split_trains_every_iteration_count_equally_often():
    g = torch.Generator().manual_seed(0)
    m, draws = 8, 16_000
    totals = collections.Counter()
    for _ in range(draws):
        n, k = draw_progressive_split(m, g)
        assert 0 <= n < n + k <= m and k >= 1
        totals[n + k] += 1
    freq = np.array([totals[t] for t in range(1, m + 1)]) / draws
    np.testing.assert_allclose(freq, 1 / m, atol=0.015)  # the reference's draw gives P(m) > 0.3 here


def test_masked_cross_entropy_ignores_invalid_positions():
    logits = torch.randn(2, 2, 3, 3)
    targets = torch.randint(0, 2, (2, 3, 3))
    valid = torch.zeros(2, 3, 3, dtype=torch.bool)
    valid[:, 1, 1] = True
    expected = torch.nn.functional.cross_entropy(logits[:, :, 1, 1], targets[:, 1, 1])
    torch.testing.assert_close(masked_cross_entropy(logits, targets, valid), expected)


def test_warmup_then_cosine_decay():
    assert warmup_cosine(0, 100, 10) == 0.1
    assert warmup_cosine(9, 100, 10) == 1.0
    assert abs(warmup_cosine(100, 100, 10)) < 1e-9


def test_fit_learns_and_logs(tmp_path):
    torch.manual_seed(0)
    task = MazeTask()
    data = task.dataset(5, 256, seed=0)
    model = RecurrentConvNet(task.spec, width=16, templates=2)
    cfg = TrainConfig(epochs=6, batch_size=32, lr=1e-2, warmup_steps=5, iters=6, alpha=1.0, log_every=8)
    records = fit(model, task, data, cfg, torch.device("cpu"), metrics_path=tmp_path / "m.jsonl", progress=False)
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == len(records) == 6
    assert records[-1]["loss"] < 0.9 * records[0]["loss"]  # it learns (loss 0.71 -> 0.58 when measured)
    assert {"step", "epoch", "loss", "train_acc", "lr", "samples_per_s"} <= records[0].keys()


def test_training_is_reproducible_on_cpu():
    task = MazeTask()
    data = task.dataset(5, 64, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=16, iters=4, warmup_steps=1, log_every=100)
    states = []
    for _ in range(2):
        torch.manual_seed(3)
        model = RecurrentConvNet(task.spec, width=8, templates=2)
        fit(model, task, data, cfg, torch.device("cpu"), seed=3, progress=False)
        states.append(model.state_dict())
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_extra_detached_iterations_only_lengthen_the_no_grad_prefix():
    g = torch.Generator().manual_seed(1)
    draws = [draw_progressive_split(6, g, detach_extra=10) for _ in range(4000)]
    assert max(n + k for n, k in draws) > 6 and max(n + k for n, k in draws) <= 16
    assert all(1 <= k <= 6 for _, k in draws)  # the trained part costs what it did without extra
