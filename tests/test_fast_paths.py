"""Every fast path gives the numbers of the plain path (exactly, or within a stated tolerance).

Tolerances: float32 convolutions summed in another order (the fused recall, channels-last, the
compiled iteration) agree to ``torch.testing.assert_close``'s float32 defaults (rtol 1.3e-6,
atol 1e-5); evaluation counts and everything whose arithmetic is unchanged agree exactly.
"""

from __future__ import annotations

import pytest
import torch

from benchmark.devtools.bench import evaluate_before
from benchmark.evaluation.extrapolation import accuracy_per_iteration
from benchmark.models.recurrent import CompiledFunction, RecurrentConvNet
from known_answer import CURVE_HOLD_5, EIGHT_BITS, TASK, KnownAnswerNet, bit_strings
from tasks.base import TaskSpec

SPECS = {1: TaskSpec(dims=1, in_channels=1, num_classes=2), 2: TaskSpec(dims=2, in_channels=3, num_classes=2)}
CPU = torch.device("cpu")


def _pair(dims: int, depth: int, templates: int | None) -> tuple[RecurrentConvNet, RecurrentConvNet]:
    """The same weights, fused recall and concatenating recall."""
    torch.manual_seed(0)
    fused = RecurrentConvNet(SPECS[dims], width=8, depth=depth, templates=templates)
    plain = RecurrentConvNet(SPECS[dims], width=8, depth=depth, templates=templates)
    plain.load_state_dict(fused.state_dict())
    plain.fuse_recall = False  # channels-last stays on in both: it is tested on its own below
    return fused, plain


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("depth,templates", [(1, 2), (1, None), (3, 2)])  # depth 3: positions change mid-run
def test_fused_recall_gives_the_concatenating_outputs_and_gradients(dims, depth, templates):
    fused, plain = _pair(dims, depth, templates)
    assert fused.fuse_recall and not plain.fuse_recall
    x = torch.randn(3, SPECS[dims].in_channels, *(9,) * dims)
    with torch.no_grad():
        for a, b in zip(fused.iter_logits(x, 6), plain.iter_logits(x, 6), strict=True):
            torch.testing.assert_close(a, b)
        # resumed mid-way, as the progressive loss does: the input's term is made for the start position
        state = plain.run(x, 2)
        torch.testing.assert_close(fused.run(x, 3, state=state, start=2), plain.run(x, 3, state=state, start=2))
    for model in (fused, plain):
        model(x, 5).square().mean().backward()
    for (name, a), (_, b) in zip(fused.named_parameters(), plain.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_fused_recall_is_the_default_and_keeps_the_checkpoint_keys():
    fused, plain = _pair(2, 1, 2)
    assert RecurrentConvNet.fuse_recall is True
    assert list(fused.state_dict()) == list(plain.state_dict())  # the recall conv's weight is one tensor still


def test_new_evaluator_counts_exactly_what_the_old_one_counted_without_a_host_sync(monkeypatch):
    data = bit_strings(*EIGHT_BITS)
    before = evaluate_before(KnownAnswerNet(hold=5), TASK, data, 7, 3, CPU)  # no_grad, int() per iteration
    syncs = []
    monkeypatch.setattr(torch.Tensor, "__int__", lambda self: syncs.append(1) or self.tolist())
    monkeypatch.setattr(torch.Tensor, "item", lambda self: syncs.append(1) or self.tolist())
    now = accuracy_per_iteration(KnownAnswerNet(hold=5), TASK, data, 7, 3, CPU)
    assert now == before == list(CURVE_HOLD_5)  # the same counts ...
    assert syncs == []  # ... with no int()/item() per iteration (one transfer at the end)


def test_evaluation_runs_in_inference_mode():
    seen = []

    class Spy(KnownAnswerNet):
        def iter_logits(self, x, iters):
            seen.append(torch.is_inference_mode_enabled())
            yield from super().iter_logits(x, iters)

    accuracy_per_iteration(Spy(hold=5), TASK, bit_strings(*EIGHT_BITS), 2, 4, CPU)
    assert seen == [True]


@pytest.mark.parametrize("dims", [1, 2])
def test_channels_last_changes_layout_not_results(dims):
    torch.manual_seed(0)
    fast = RecurrentConvNet(SPECS[dims], width=8, depth=2, templates=2)
    plain = RecurrentConvNet(SPECS[dims], width=8, depth=2, templates=2)
    plain.load_state_dict(fast.state_dict())
    plain.channels_last = False
    assert fast.channels_last  # the default
    x = torch.randn(3, SPECS[dims].in_channels, *(9,) * dims)
    with torch.no_grad():
        if dims == 2:  # the layout carries through every feature map; 1-D tensors have none to change
            assert fast.run(x, 2).is_contiguous(memory_format=torch.channels_last)
        assert plain.run(x, 2).is_contiguous()
        for a, b in zip(fast.iter_logits(x, 5), plain.iter_logits(x, 5), strict=True):
            torch.testing.assert_close(a, b)
        state = plain.run(x, 2)  # resumed from a state in the other layout, as the progressive loss may
        torch.testing.assert_close(fast.run(x, 3, state=state, start=2), plain.run(x, 3, state=state, start=2))
    for model in (fast, plain):
        model(x, 4).square().mean().backward()
    for (name, a), (_, b) in zip(fast.named_parameters(), plain.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def _outputs(model: RecurrentConvNet, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return list(model.iter_logits(x, 4))


def test_compile_falls_back_with_one_warning_when_torch_compile_refuses(monkeypatch):
    def refuse(fn, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", refuse)
    torch.manual_seed(0)
    eager = RecurrentConvNet(SPECS[2], width=8)
    x = torch.randn(2, 3, 7, 7)
    with pytest.warns(RuntimeWarning, match=r"^torch.compile is not available here \(Dynamo is not supported on this Python\); running eagerly.$"):
        torch.manual_seed(0)
        compiled = RecurrentConvNet(SPECS[2], width=8, compile=True)
    for a, b in zip(_outputs(compiled, x), _outputs(eager, x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_compile_falls_back_once_when_the_compiled_function_fails_on_first_use(monkeypatch, recwarn):
    calls = []

    def compile_that_fails_when_run(fn, **kwargs):
        def run(*args):
            calls.append(1)
            raise RuntimeError("BackendCompilerFailed: no working C++ compiler\nlong traceback ...")
        return run

    monkeypatch.setattr(torch, "compile", compile_that_fails_when_run)
    torch.manual_seed(0)
    eager = RecurrentConvNet(SPECS[1], width=8, depth=2)
    torch.manual_seed(0)
    model = RecurrentConvNet(SPECS[1], width=8, depth=2, compile=True)
    assert isinstance(model._compiled_step, CompiledFunction)
    assert list(model.state_dict()) == list(eager.state_dict())  # the module is not wrapped: same checkpoint keys
    x = torch.randn(2, 1, 12)
    for a, b in zip(_outputs(model, x), _outputs(eager, x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    _outputs(model, x)
    assert calls == [1]  # tried once, then eager for good
    messages = [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert messages == ["torch.compile is not available here (BackendCompilerFailed: no working C++ compiler); running eagerly."]


def test_use_compile_false_returns_to_eager():
    model = RecurrentConvNet(SPECS[1], width=4)
    model.use_compile()
    assert model._compiled_step is not None
    model.use_compile(False)
    assert model._compiled_step is None


@pytest.mark.slow
def test_torch_compile_gives_the_eager_outputs():
    """The real compiler (tens of seconds to compile on a CPU); where none works it falls back, same outputs."""
    torch.manual_seed(0)
    eager = RecurrentConvNet(SPECS[2], width=8).eval()
    torch.manual_seed(0)
    compiled = RecurrentConvNet(SPECS[2], width=8, compile=True).eval()
    x = torch.randn(2, 3, 9, 9)
    for a, b in zip(_outputs(compiled, x), _outputs(eager, x), strict=True):
        torch.testing.assert_close(a, b)
