"""The Wide ResNets: exact parameter counts, the layout, refusals, and folding of parallel banks."""

from __future__ import annotations

import re

import pytest
import torch

from baselines.wrn import UnsharedWideResNet
from benchmark.models.bank import FoldedBank, TemplateBank, fold_bank, fold_model_banks
from benchmark.config.schema import ConfigError
from benchmark.analysis.similarity import similarity_record
from benchmark.models.wide_resnet import WideResNet
from tasks.base import TaskSpec

CIFAR10 = TaskSpec(dims=2, in_channels=3, num_classes=10)


def layout_count(depth: int, widen: int, templates: int | None, classes: int = 10, in_channels: int = 3) -> int:
    """The parameters of the layout in reference.md, counted by hand (independent of the model code)."""
    n = (depth - 4) // 6
    bn = lambda c: 2 * c  # noqa: E731  (weight and bias)
    total = in_channels * 16 * 9  # stem conv 3x3, no bias
    c_in = 16
    for stage, c in enumerate((16 * widen, 32 * widen, 64 * widen)):
        stride = 1 if stage == 0 else 2
        total += bn(c_in) + c_in * c * 9 + bn(c) + c * c * 9  # the ordinary first block
        total += c_in * c if (c_in != c or stride != 1) else 0  # its 1x1 shortcut
        shared_convs = 2 * (n - 1)
        total += shared_convs * bn(c)  # every shared conv keeps its own batch norm
        if shared_convs:
            total += c * c * 9 * (shared_convs if templates is None else templates)  # templates
            total += 0 if templates is None else shared_convs * templates  # coefficients (fixed: buffers)
        c_in = c
    return total + bn(c_in) + c_in * classes + classes  # final norm, linear classifier


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(depth, widen, templates, classes=10, in_channels=3):
    with torch.device("meta"):  # no memory, no init cost: counts only
        return WideResNet(TaskSpec(2, in_channels, classes), depth=depth, widen=widen, templates=templates)


@pytest.mark.parametrize("depth,widen,templates,expected", [
    (28, 10, None, 36_479_194), (28, 10, 1, 12_287_212), (28, 10, 2, 17_125_630),
])
def test_parameter_counts_of_the_paper(depth, widen, templates, expected):
    assert count(meta_model(depth, widen, templates)) == expected == layout_count(depth, widen, templates)


@pytest.mark.parametrize("widen,templates,millions", [
    (10, None, 36.48), (10, 1, 12.29), (10, 2, 17.13), (10, 4, 26.80), (14, 1, 24.05), (14, 2, 33.54), (18, 1, 39.74),
    (18, 2, 55.41),
])
def test_parameter_counts_of_the_reference(widen, templates, millions):
    assert round(count(meta_model(28, widen, templates)) / 1e6, 2) == millions


@pytest.mark.parametrize("depth", [10, 16, 22, 40])
@pytest.mark.parametrize("widen", [1, 2, 4])
@pytest.mark.parametrize("templates", [None, 1, 3])
@pytest.mark.parametrize("classes,in_channels", [(10, 3), (100, 3), (10, 1)])
def test_parameter_counts_follow_the_layout(depth, widen, templates, classes, in_channels):
    model = meta_model(depth, widen, templates, classes, in_channels)
    assert count(model) == layout_count(depth, widen, templates, classes, in_channels)


def test_the_baseline_is_the_shared_code_unshared():
    spec = TaskSpec(2, 1, 10)
    torch.manual_seed(0)
    baseline = UnsharedWideResNet(spec, depth=16, widen=1)
    torch.manual_seed(0)
    plain = WideResNet(spec, depth=16, widen=1, templates=None)
    assert [(k, v.shape) for k, v in baseline.state_dict().items()] == [(k, v.shape) for k, v in plain.state_dict().items()]
    x = torch.randn(3, 1, 8, 8)
    baseline.eval(), plain.eval()
    assert torch.equal(baseline(x), plain(x))
    # Unshared: fixed identity coefficients (buffers, not parameters); every bank present.
    banks = [m for m in baseline.modules() if isinstance(m, TemplateBank)]
    assert len(banks) == 3 and not any(b.learns_coefficients for b in banks)
    assert baseline.unshared_parameter_count() == count(baseline)


def test_forward_mixes_each_bank_once_and_keeps_the_layout(monkeypatch):
    model = WideResNet(CIFAR10, depth=22, widen=1, templates=2)
    calls = []
    original = TemplateBank.weights
    monkeypatch.setattr(TemplateBank, "weights", lambda self: calls.append(self) or original(self))
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert calls == [stage.bank for stage in model.stages]  # one mix per stage bank per forward
    # First block of each stage ordinary with its shortcut where width or stride changes (16 -> 16 at w=1: none).
    assert [stage.first.shortcut is None for stage in model.stages] == [True, False, False]
    assert [(s.bank.num_layers, s.bank.shape) for s in model.stages] == [(4, (16, 16, 3, 3)), (4, (32, 32, 3, 3)), (4, (64, 64, 3, 3))]
    # Depth 10: one block per stage, nothing to share.
    assert all(stage.bank is None for stage in WideResNet(CIFAR10, depth=10, widen=1).stages)


def test_dropout_is_applied_in_training_only():
    torch.manual_seed(0)
    model = WideResNet(TaskSpec(2, 1, 10), depth=16, widen=1, templates=1, dropout=0.5)
    x = torch.randn(4, 1, 8, 8)
    model.train()
    assert not torch.equal(model(x), model(x))  # dropout masks differ between passes
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("kwargs,message", [
    (dict(depth=27), "model.depth must be 6n + 4"), (dict(depth=4), "model.depth must be 6n + 4"),
    (dict(depth=16.0), "model.depth must be 6n + 4"), (dict(widen=0), "model.widen must be an integer >= 1"),
    (dict(templates=0), "model.templates must be an integer >= 1"), (dict(dropout=1.0), "model.dropout must lie in"),
])
def test_bad_settings_are_refused_with_one_sentence(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        WideResNet(CIFAR10, **kwargs)
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")


def test_a_one_dimensional_task_is_refused():
    with pytest.raises(ConfigError, match="2-D images"):
        WideResNet(TaskSpec(1, 1, 2), depth=16, widen=1)


def _parallel_swrn(rows_of: callable) -> WideResNet:
    """An SWRN-22-1-2 in eval mode with non-trivial norms and coefficient rows set by ``rows_of(v, w)``."""
    torch.manual_seed(0)
    model = WideResNet(CIFAR10, depth=22, widen=1, templates=2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
        for stage in model.stages:
            v, w = torch.randn(2), torch.randn(2)
            stage.bank.coefficients.copy_(rows_of(v, w))  # (4 layers, 2 templates)
    return model.eval()


def test_folding_parallel_rows_is_exact_and_saves_parameters():
    scales = torch.tensor([1.0, -0.5, 2.0, 0.25])
    model = _parallel_swrn(lambda v, w: scales[:, None] * v)  # every row of every bank parallel
    folded, reports = fold_model_banks(model, threshold=0.99)
    assert set(reports) == {"stages.0.bank", "stages.1.bank", "stages.2.bank"}
    for name, report in reports.items():
        assert (report.layers, report.distinct, report.index) == (4, 1, [0, 0, 0, 0])
        assert report.scales == pytest.approx(scales.tolist(), rel=1e-5)
        assert report.max_relative_error < 1e-6
        assert isinstance(folded.get_submodule(name), FoldedBank)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    # Each bank: 2 templates + 4x2 coefficients become 1 weight + 4 scales.
    c2 = [16 * 16 * 9, 32 * 32 * 9, 64 * 64 * 9]
    assert count(model) - count(folded) == sum(c2) + 3 * (8 - 4)
    assert isinstance(model.stages[0].bank, TemplateBank)  # the original is untouched
    # The LSM of such a network: every bank all ones, one panel (record) per stage bank.
    record = similarity_record(model).banks
    assert set(record) == set(reports)
    assert all(torch.allclose(torch.tensor(r.lsm, dtype=torch.float64), torch.ones(4, 4, dtype=torch.float64)) for r in record.values())


def test_folding_groups_by_the_first_member_and_keeps_what_is_not_parallel():
    model = _parallel_swrn(lambda v, w: torch.stack([v, w, -3 * v, 0.5 * w]))
    bank = model.stages[1].bank
    folded_bank, report = fold_bank(bank, threshold=0.999)
    assert (report.distinct, report.index) == (2, [0, 1, 0, 1])
    assert report.scales == pytest.approx([1.0, 1.0, -3.0, 0.5], rel=1e-5)
    torch.testing.assert_close(folded_bank.weights(), bank.weights(), rtol=1e-5, atol=1e-6)
    # Rows that are not parallel are not merged: an orthogonal bank folds into itself.
    torch.manual_seed(1)
    fresh = TemplateBank(4, 4, (3, 3, 3, 3))
    _, report = fold_bank(fresh, threshold=0.99)
    assert (report.distinct, report.index, report.max_relative_error) == (4, [0, 1, 2, 3], 0.0)


def test_unshared_banks_are_not_folded():
    model = UnsharedWideResNet(CIFAR10, depth=16, widen=1)
    folded, reports = fold_model_banks(model)
    assert reports == {} and count(folded) == count(model)
