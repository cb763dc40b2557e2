"""bf16 autocast (``precision=``): what ``auto`` picks, outputs within a stated tolerance of fp32,
training that still learns, the option recorded and validated."""

import pytest
import torch

from benchmark.infra import precision
from benchmark.models.recurrent import RecurrentConvNet
from tasks.maze import MazeTask
from tasks.prefix_sums import PrefixSumsTask


def test_resolve_picks_fp32_or_bf16_and_refuses_other_names(monkeypatch):
    cpu = torch.device("cpu")
    assert precision.resolve("fp32", cpu) == "fp32" and precision.resolve("bf16", cpu) == "bf16"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve("auto", cpu) == "fp32"  # emulated bf16 is slower than fp32: auto keeps fp32
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve("auto", cpu) == "bf16"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        precision.resolve("fp16", cpu)


@pytest.mark.parametrize("task", [MazeTask(), PrefixSumsTask()], ids=["2d", "1d"])
def test_bf16_logits_are_float32_and_close_to_fp32(task):
    """Tolerance: bf16 keeps 8 bits of mantissa, so after 10 iterations of a freshly initialised
    model the logits agree with fp32 to 5% of their spread, and 97% of the argmax predictions agree."""
    torch.manual_seed(0)
    model = RecurrentConvNet(task.spec, name="shared", width=16, templates=2)
    x = task.dataset(9 if task.spec.dims == 2 else 16, 16, seed=0).tensors[0]
    with torch.no_grad():
        reference = model(x, 10)
        model.precision = "bf16"
        low = model(x, 10)
        states = list(model.iter_logits(x, 3))
    assert low.dtype == torch.float32 and all(s.dtype == torch.float32 for s in states)
    assert not torch.is_autocast_enabled("cpu")  # nothing leaks out of the model's per-step contexts
    assert (low - reference).abs().max() <= 0.05 * reference.std()
    assert (low.argmax(1) == reference.argmax(1)).float().mean() >= 0.97
    assert not torch.equal(low, reference)  # bf16 really ran


def test_bf16_training_step_updates_float32_weights_like_fp32():
    """One optimizer step in bf16 moves the float32 weights in the same direction as in fp32."""
    task = MazeTask()
    x, y = task.dataset(9, 8, seed=0).tensors
    deltas = {}
    for name in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = RecurrentConvNet(task.spec, name="recurrent", width=8, templates=None)
        model.precision = name
        before = [p.detach().clone() for p in model.parameters()]
        loss = torch.nn.functional.cross_entropy(model(x, 3), y)
        loss.backward()
        torch.optim.SGD(model.parameters(), lr=0.1).step()
        assert all(p.dtype == torch.float32 for p in model.parameters())
        deltas[name] = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
    cos = torch.nn.functional.cosine_similarity(deltas["fp32"], deltas["bf16"], dim=0)
    assert cos > 0.99
