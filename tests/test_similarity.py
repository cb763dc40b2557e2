"""Tests of benchmark.analysis.similarity: the layer similarity matrix of every bank of a model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.models.bank import TemplateBank
from benchmark.analysis.similarity import layer_similarity, model_lsm, similarity_record
from nets import net, one_thread  # noqa: F401  (one_thread: autouse fixture)


def lsm_oracle(a: np.ndarray) -> np.ndarray:
    """The paper's formula, one pair at a time (zero rows: similar to nothing but themselves)."""
    n = len(a)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            ni, nj = np.sqrt(sum(x * x for x in a[i])), np.sqrt(sum(x * x for x in a[j]))
            dot = sum(x * y for x, y in zip(a[i], a[j]))
            out[i, j] = 1.0 if i == j else (abs(dot) / (ni * nj) if ni > 0 and nj > 0 else 0.0)
    return out


def test_layer_similarity_matches_the_formula_and_is_sign_blind():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 3))
    a[3] = -2.5 * a[1]  # anti-parallel: |cos| = 1
    a[5] = 0.0  # a zero row
    lsm = layer_similarity(torch.tensor(a)).numpy()
    np.testing.assert_allclose(lsm, lsm_oracle(a), atol=1e-12)
    np.testing.assert_allclose(lsm, lsm.T)
    np.testing.assert_allclose(np.diag(lsm), 1.0)
    assert lsm[1, 3] == pytest.approx(1.0) and lsm[5, 0] == 0.0
    assert ((lsm >= 0) & (lsm <= 1)).all()
    flipped = a * rng.choice([-1.0, 1.0], size=(7, 1)) * rng.uniform(0.1, 5, size=(7, 1))  # rows' sign and size
    np.testing.assert_allclose(layer_similarity(torch.tensor(flipped)).numpy(), lsm, atol=1e-12)


def test_model_lsm_finds_every_bank_including_fixed_identity():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.stage = nn.ModuleDict(dict(a=TemplateBank(5, 2, (3, 3)), b=TemplateBank(3, 3, (2, 2), learn_coefficients=False)))

    lsm = model_lsm(Two())
    assert set(lsm) == {"stage.a", "stage.b"}
    assert lsm["stage.a"].shape == (5, 5)
    np.testing.assert_array_equal(lsm["stage.b"], np.eye(3))
    np.testing.assert_array_equal(model_lsm(net(2, 3, None))["bank"], np.eye(12))  # the unshared baseline
    assert set(model_lsm(TemplateBank(4, 2, (3, 3)))) == {"bank"}


def test_similarity_record_holds_every_bank_with_its_layout(tmp_path):
    wrapped = nn.ModuleDict(dict(model=net(1, 2, 2), other=TemplateBank(3, 2, (2, 2))))
    record = similarity_record(wrapped)
    assert list(record.banks) == ["model.bank", "other"]
    bank, other = record.banks["model.bank"], record.banks["other"]
    assert bank.layers_per_position == 4 and other.layers_per_position is None and bank.learned
    coefficients = wrapped["model"].bank.coefficients.detach().double()
    assert bank.coefficients == coefficients.tolist()
    np.testing.assert_allclose(bank.lsm, lsm_oracle(coefficients.numpy()), atol=1e-12)
    record.write(tmp_path / "lsm.json")
    assert type(record).read(tmp_path / "lsm.json") == record
    assert similarity_record(net(2, 1, None)).banks["bank"].learned is False
