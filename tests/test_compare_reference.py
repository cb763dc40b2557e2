"""benchmark.devtools.compare_deep_thinking: the plumbing, against a tiny stand-in for the reference code.

The stand-in has the reference's module layout and function names (and a package ``__init__``
that cannot be imported, like the real one without its dataset package), and records how it is
called; the real comparison is a measurement, run by hand (README, "Speed").
"""

from __future__ import annotations

import json
import statistics
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from benchmark.infra import precision
from benchmark.devtools.bench import QUICK

import importlib


STAND_IN = {
    "deepthinking/__init__.py": "import easy_to_hard_data_is_not_installed  # the real one imports its datasets\n",
    "deepthinking/models/__init__.py": "raise ImportError('a package __init__ must not run')\n",
    "deepthinking/utils/__init__.py": "raise ImportError('a package __init__ must not run')\n",
    "deepthinking/models/dt_net_2d.py": """
        import torch
        from torch import nn

        CALLS = []

        class Net(nn.Module):
            def __init__(self, width, in_channels):
                super().__init__()
                self.projection = nn.Conv2d(in_channels, width, 3, padding=1)
                self.recur_block = nn.Conv2d(width + in_channels, width, 3, padding=1)
                self.head = nn.Conv2d(width, 2, 3, padding=1)

            def forward(self, x, iters_to_do, interim_thought=None, **kwargs):
                h = self.projection(x) if interim_thought is None else interim_thought
                outs = []
                for _ in range(iters_to_do):
                    h = torch.relu(self.recur_block(torch.cat([h, x], 1)))
                    outs.append(self.head(h))
                return (outs[-1], h) if self.training else torch.stack(outs, 1)

        def dt_net_recall_2d(width, **kwargs):
            CALLS.append((width, kwargs))
            return Net(width, kwargs["in_channels"])
        """,
    "deepthinking/utils/training.py": """
        from dataclasses import dataclass
        import torch

        CALLS = []

        @dataclass
        class TrainingSetup:
            optimizer: object
            scheduler: object
            warmup: object
            clip: object
            alpha: object
            max_iters: object
            problem: object

        def train_progressive(net, loaders, train_setup, device):
            net.train()
            for inputs, targets in loaders["train"]:
                out, _ = net(inputs, iters_to_do=train_setup.max_iters)
                loss = torch.nn.functional.cross_entropy(out, targets)
                train_setup.optimizer.zero_grad()
                loss.backward()
                train_setup.optimizer.step()
                CALLS.append((tuple(inputs.shape), train_setup.alpha, train_setup.max_iters, train_setup.problem, train_setup.clip))
            train_setup.scheduler.step()
            train_setup.warmup.dampen()
            return loss.item(), 0.0
        """,
    "deepthinking/utils/testing.py": """
        import torch

        CALLS = []

        def test_default(net, testloader, iters, problem, device):
            net.eval()
            corrects, total = torch.zeros(max(iters)), 0
            with torch.no_grad():
                for inputs, targets in testloader:
                    all_outputs = net(inputs, iters_to_do=max(iters))
                    for i in range(all_outputs.size(1)):
                        corrects[i] += (all_outputs[:, i].argmax(1) == targets).flatten(1).all(1).sum()
                    total += len(targets)
            CALLS.append((list(iters), problem, total))
            return {t: 100.0 * corrects[t - 1].item() / total for t in iters}
        """,
    "deepthinking/utils/warmup.py": """
        class ExponentialWarmup:
            def __init__(self, optimizer, warmup_period):
                self.optimizer, self.warmup_period, self.dampened = optimizer, warmup_period, 0

            def dampen(self):
                self.dampened += 1
        """,
}


def write_stand_in(root: Path, replace: dict[str, str] | None = None) -> Path:
    for name, text in {**STAND_IN, **(replace or {})}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture(scope="module")
def script():
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    yield importlib.import_module("benchmark.devtools.compare_deep_thinking")
    sys.path[:] = saved_path
    for name in set(sys.modules) - saved_modules:
        del sys.modules[name]


@pytest.fixture(scope="module")
def quick(script, tmp_path_factory):
    reference = write_stand_in(tmp_path_factory.mktemp("deep-thinking"))
    out = tmp_path_factory.mktemp("compare") / "compare.json"
    report = script.main(["--reference", str(reference), "--quick", "--out", str(out)])
    modules = {name: sys.modules[f"deepthinking.{name}"] for name in ("models.dt_net_2d", "utils.training", "utils.testing")}
    return report, json.loads(out.read_text()), modules


def test_the_reference_is_trained_and_scored_by_its_own_functions(quick):
    report, _, modules = quick
    assert modules["models.dt_net_2d"].CALLS == [(QUICK.width, {"in_channels": 3})]
    steps = modules["utils.training"].CALLS  # one warm-up step, then one per repeat
    assert len(steps) == 1 + QUICK.repeats * QUICK.train_steps
    assert all(s == ((QUICK.train_batch, 3, QUICK.train_size + 2, QUICK.train_size + 2), QUICK.alpha, QUICK.train_iters, "mazes", None)
               for s in steps)
    scored = modules["utils.testing"].CALLS  # warm-up on one batch at 2 iterations, then every iteration 1..T
    assert scored == [([1, 2], "mazes", QUICK.eval_batch)] + [(list(range(1, QUICK.eval_iters + 1)), "mazes", QUICK.eval_n)] * QUICK.repeats
    assert report["results"]["reference (Deep Thinking)"]["eval_accuracy_final"] in {i / QUICK.eval_n for i in range(QUICK.eval_n + 1)}


def test_the_report_holds_every_row_with_paired_ratios_against_the_reference(quick, script):
    report, written, _ = quick
    bf16 = precision.resolve("auto", torch.device("cpu")) == "bf16"
    names = ["reference (Deep Thinking)", "recurrent, fp32", "shared k=2, fp32"] + (["recurrent, bf16", "shared k=2, bf16"] if bf16 else [])
    assert list(written["results"]) == names and written["bf16_native"] == bf16
    assert [s["precision"] for s in written["settings"]] == ["fp32"] * 3 + ["bf16"] * (2 if bf16 else 0)
    assert set(written["machine"]) >= {"cpu", "cores", "torch", "threads", "device", "load_average_1min"}
    assert written["machine"]["threads"] == 1 and written["scale"]["repeats"] == QUICK.repeats
    base = written["results"]["reference (Deep Thinking)"]
    for name in names:
        r = written["results"][name]
        for key in ("train_samples_per_s", "eval_samples_per_s"):
            assert len(r[key]) == QUICK.repeats and all(v > 0 for v in r[key])
            assert r[f"{key}_median"] == statistics.median(r[key])
            paired = statistics.median(a / b for a, b in zip(r[key], base[key]))
            assert written["ratios"][name][key] == pytest.approx(paired, rel=1e-12)
            assert written["ratios"][name]["versus"] == "reference (Deep Thinking)"
    table = script.markdown(report)
    for name in names:
        q = report["ratios"][name]
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
        assert f"| {q['train_samples_per_s']:.2f}x |" in row and f"| {q['eval_samples_per_s']:.2f}x |" in row


def test_a_path_without_the_reference_is_refused_in_one_sentence(script, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--reference", str(tmp_path), "--quick", "--out", str(tmp_path / "c.json")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --reference must be a checkout of") and err[0].endswith(".")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_reference_dependency_is_named_in_one_sentence(script, tmp_path, capsys):
    reference = write_stand_in(tmp_path / "ref", {"deepthinking/utils/testing.py": "import icecream_is_not_installed_here\n"})
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--reference", str(reference), "--quick"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the reference code imports icecream_is_not_installed_here, which this suite does not depend on: "
                   "install it for the comparison only (pip install icecream_is_not_installed_here)."]
