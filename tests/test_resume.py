"""Interruption and resume: the training state, Ctrl-C, kill -9, resume=<run dir>, non-finite losses.

The in-process tests interrupt ``fit`` at chosen steps (a regulariser that sends this process a
SIGINT, or returns NaN, at step s); the command-line tests run ``python -m benchmark`` in a
subprocess and stop it with a real ``kill -9`` or SIGINT once it has saved a training state.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmark.analysis import report
from benchmark.config.schema import ConfigError, TrainConfig
from benchmark.models.recurrent import RecurrentConvNet
from benchmark.infra.results import EvalResult
from benchmark.pipelines.algorithmic import main
from benchmark.training.trainer import NonFiniteLoss, fit
from benchmark.training.state import FORMAT, INCOMPLETE, STATE_FILE, RunInterrupted, TrainState, read_train_state
from tasks.prefix_sums import PrefixSumsTask

ROOT = Path(__file__).resolve().parents[1]


def strict_json_lines(path: Path) -> list[dict]:
    """The lines of a metrics.jsonl, refusing NaN and infinities (they are not JSON)."""
    def refuse(token: str) -> None:
        raise ValueError(f"{path} holds {token}, which is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


class StepHook:
    """A regulariser adding 0 to the loss that, at step ``interrupt_at``, sends this process a
    SIGINT (as Ctrl-C does), and at step ``nan_at`` returns NaN."""

    def __init__(self, interrupt_at: int | None = None, nan_at: int | None = None):
        self.step, self.interrupt_at, self.nan_at = 0, interrupt_at, nan_at

    def __call__(self, model: torch.nn.Module) -> torch.Tensor:
        self.step += 1
        if self.step == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        return torch.tensor(float("nan") if self.step == self.nan_at else 0.0)


# Three steps per epoch, two epochs; alpha 0.5 and detach_extra so that every kind of random
# draw (batch order, progressive split, extra detached iterations) happens.
TASK = PrefixSumsTask()
CFG = TrainConfig(epochs=2, batch_size=16, lr=1e-2, warmup_steps=2, iters=3, alpha=0.5, detach_extra=2, log_every=2,
                  checkpoint_every=0)


def train(state_path: Path | None = None, hook: StepHook | None = None, resume: dict | None = None, cfg: TrainConfig = CFG):
    torch.manual_seed(0)
    model = RecurrentConvNet(TASK.spec, width=6, templates=2)
    records = fit(model, TASK, TASK.dataset(8, 48, seed=0), cfg, torch.device("cpu"), seed=1, progress=False,
                  regulariser=hook or StepHook(), state_path=state_path, resume=resume, size=8)
    return model, records


def interrupted_then_resumed(path: Path, cfg: TrainConfig, step: int):
    """(model, records) of a run stopped by Ctrl-C at ``step`` and resumed from its saved state."""
    with pytest.raises(RunInterrupted):
        train(path, StepHook(interrupt_at=step), cfg=cfg)
    return train(path, resume=read_train_state(path), cfg=cfg)


def assert_same_weights(model: torch.nn.Module, expected: torch.nn.Module) -> None:
    for key, value in expected.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in records]


@pytest.mark.parametrize("step", [1, 3, 4], ids=["first step", "an epoch's last step", "mid-epoch"])
def test_ctrl_c_saves_a_state_that_resumes_to_the_uninterrupted_weights(tmp_path, step):
    expected_model, expected_records = train()
    path = tmp_path / STATE_FILE
    with pytest.raises(RunInterrupted) as interrupted:
        train(path, StepHook(interrupt_at=step))
    assert (interrupted.value.step, interrupted.value.run_dir) == (step, tmp_path)
    state = read_train_state(path)
    assert isinstance(state, TrainState) and state.step == step
    model, records = train(path, resume=state)
    for key, value in expected_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert without_timing(records) == without_timing(expected_records)
    assert read_train_state(path).step == 6  # the end is saved too


def test_the_length_curriculum_resumes_too(tmp_path):
    """The cut is a function of the step: interrupted mid-curriculum, the run resumes to the
    uninterrupted run's weights."""
    cfg = TrainConfig(**{**CFG.__dict__, "curriculum_steps": 5, "curriculum_start": 2})
    expected_model, expected_records = train(cfg=cfg)
    plain_model, _ = train()
    assert not torch.equal(expected_model.bank.coefficients, plain_model.bank.coefficients)  # the curriculum changes training
    model, records = interrupted_then_resumed(tmp_path / STATE_FILE, cfg, step=2)
    assert_same_weights(model, expected_model)
    assert without_timing(records) == without_timing(expected_records)


def test_the_weight_average_resumes_too(tmp_path):
    """train.ema_horizon: the average is part of the state, so the resumed run ends with the
    uninterrupted run's averaged weights; a state without one is refused in one sentence."""
    cfg, plain = (TrainConfig(**{**CFG.__dict__, "ema_horizon": horizon}) for horizon in (1.0, None))
    expected_model, _ = train(cfg=cfg)
    plain_model, _ = train(cfg=plain)
    assert not torch.equal(expected_model.bank.coefficients, plain_model.bank.coefficients)  # the average is kept
    path = tmp_path / STATE_FILE
    model, _ = interrupted_then_resumed(path, cfg, step=4)
    assert_same_weights(model, expected_model)
    with pytest.raises(RunInterrupted):
        train(path, StepHook(interrupt_at=4), cfg=plain)  # a state saved without an average
    with pytest.raises(ConfigError, match="holds no weight average that fits this model"):
        train(path, resume=read_train_state(path), cfg=cfg)


@pytest.mark.parametrize("nan_at,kept", [(None, 6), (3, 2), (4, 2), (5, 4)])
def test_states_are_saved_every_checkpoint_every_steps_and_a_non_finite_loss_keeps_the_last_good_one(tmp_path, nan_at, kept):
    """checkpoint_every=2 over 6 steps: states at 2, 4 and 6, unless a NaN loss at step ``nan_at``
    stops training; the state on disk is then the last one saved before it, with finite weights."""
    path = tmp_path / STATE_FILE
    # log_every 100: between saves nothing is checked, yet the first bad step is the one named.
    cfg = TrainConfig(**{**CFG.__dict__, "checkpoint_every": 2, "log_every": 100})
    if nan_at is None:
        train(path, cfg=cfg)
    else:
        with pytest.raises(NonFiniteLoss) as err:
            train(path, StepHook(nan_at=nan_at), cfg=cfg)
        assert err.value.step == nan_at and f"the training loss was nan at step {nan_at}," in str(err.value)
        assert f"(step {kept}) is kept in {path}" in str(err.value)
    state = read_train_state(path)
    assert state.step == kept and all(torch.isfinite(t).all() for t in state.model.values())


def test_a_diverging_run_exits_3_with_one_sentence_and_no_nan_written(make_cfg, capsys, tmp_path):
    cfg = make_cfg("task=prefix_sums", "size.train=8", "size.test=[10]", "model.width=8", "train.lr=1e6",
                   "train.checkpoint_every=1", "run_id=div")
    with pytest.raises(SystemExit) as exit_:
        main(cfg)
    assert exit_.value.code == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the training loss was" in err and "lower train.lr" in err
    run_dir = tmp_path / "results" / "prefix_sums" / "train8_test10" / "shared" / "div"
    assert (run_dir / INCOMPLETE).exists() and not (run_dir / "model.pt").exists() and not (run_dir / "eval.json").exists()
    bad_step = int(err.split(" at step ")[1].split(",")[0])
    state = read_train_state(run_dir / STATE_FILE)
    assert state.step == bad_step - 1 and all(torch.isfinite(t).all() for t in state.model.values())
    if (run_dir / "metrics.jsonl").exists():
        strict_json_lines(run_dir / "metrics.jsonl")


def test_a_diverging_classification_run_stops_too(make_cfg, capsys, tmp_path):
    cfg = make_cfg("task=digits", "model=swrn", "model.widen=1", "model.depth=10", "train.epochs=2", "train.lr=1e12", "train.batch_size=16",
                   "size.n_train=64", "size.n_test=32", "run_id=div", "progress=false", tiny=False)
    from benchmark.pipelines.classification import main as classify_main

    with pytest.raises(SystemExit) as exit_:
        classify_main(cfg)
    assert exit_.value.code == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the training loss was" in err
    run_dir = next((tmp_path / "results" / "digits").rglob("div"))
    assert (run_dir / INCOMPLETE).exists() and not (run_dir / "model.pt").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", "pickle", "keys"])
def test_a_damaged_or_crafted_training_state_is_refused(tmp_path, content):
    path = tmp_path / STATE_FILE
    if content == "pickle":  # an object torch.load(weights_only=True) must not build
        torch.save({"format": FORMAT, "step": 1, "payload": Path("/tmp")}, path)
    elif content == "keys":
        torch.save({"format": FORMAT, "step": 1, "model": {}, "optimizer": {}, "scheduler": {}, "rng": {}, "loop": {},
                    "extra": 1}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        read_train_state(path)
    assert str(err.value).count(".") >= 1 and "\n" not in str(err.value)


def _files(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.parametrize("what", ["missing", "not a run", "finished", "other settings", "damaged state"])
def test_resume_refuses_what_it_cannot_continue_with_one_sentence(make_cfg, capsys, tmp_path, what):
    base = ["task=prefix_sums", "size.train=8", "size.test=[10]", "model.width=8", "run_id=r"]
    run_dir = tmp_path / "results" / "prefix_sums" / "train8_test10" / "shared" / "r"
    if what != "missing":
        run_dir.mkdir(parents=True)
        if what != "not a run":
            from omegaconf import OmegaConf

            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(make_cfg(*base), resolve=True))
            if what != "finished":
                (run_dir / INCOMPLETE).write_text("\n")
            if what == "damaged state":
                (run_dir / STATE_FILE).write_bytes(b"\x00" * 10)
    before = _files(tmp_path)
    overrides = [*base, f"resume={run_dir}", *(["train.lr=0.5"] if what == "other settings" else [])]
    with pytest.raises(SystemExit) as exit_:
        main(make_cfg(*overrides))
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    expected = {"missing": "is not a run directory", "not a run": "is not a run directory", "finished": "finished run",
                "other settings": "was run with train.lr=0.002, not 0.5", "damaged state": "cannot read the training state"}
    assert expected[what] in err
    assert _files(tmp_path) == before  # nothing written


# ---------------------------------------------------------------------------- the command line
# 2 epochs of 150 steps (prefix sums of 8 bits, a width-8 network): long enough to be stopped
# after the first saved state (step 7) and well before the end.
CLI = ["task=prefix_sums", "size.train=8", "size.test=[10]", "size.n_train=1200", "size.n_test=32", "train.epochs=2",
       "train.batch_size=8", "train.iters=3", "train.warmup_steps=2", "train.log_every=10", "train.checkpoint_every=7",
       "eval.iters=4", "model.width=8", "progress=false"]
TOTAL_STEPS = 300


def start(tmp_path: Path, *overrides: str, base: bool = True) -> subprocess.Popen:
    """``python -m benchmark`` with the settings above (``base``) and ``overrides``, one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    settings = [*CLI, f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}"] if base else []
    return subprocess.Popen([sys.executable, "-m", "benchmark", *settings, *overrides],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def stop_once_saved(proc: subprocess.Popen, run_dir: Path, sig: int) -> None:
    """Send ``sig`` as soon as the run has written its first training state."""
    deadline = time.monotonic() + 240
    while not (run_dir / STATE_FILE).exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before saving a training state"
        time.sleep(0.005)
    proc.send_signal(sig)


def run_dir_of(tmp_path: Path, run_id: str) -> Path:
    return tmp_path / "results" / "prefix_sums" / "train8_test10" / "shared" / run_id


def without_seconds(data):
    """A JSON value with every timing field ("seconds", "samples_per_s") left out, at any depth."""
    if isinstance(data, dict):
        return {k: without_seconds(v) for k, v in data.items() if k not in ("seconds", "samples_per_s")}
    return [without_seconds(v) for v in data] if isinstance(data, list) else data


def same_results(run_dir: Path, reference: Path) -> None:
    """The same weights, and the same eval.json, fold.json, lsm.json and metrics but for timing fields."""
    a, b = (torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (run_dir, reference))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for name in ("eval.json", "fold.json", "lsm.json"):
        x, y = (without_seconds(json.loads((d / name).read_text())) for d in (run_dir, reference))
        assert x == y, name
    assert without_timing(strict_json_lines(run_dir / "metrics.jsonl")) == without_timing(strict_json_lines(reference / "metrics.jsonl"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run the interrupted ones must end equal to."""
    tmp_path = tmp_path_factory.mktemp("reference")
    rc, _, err = finish(start(tmp_path, "run_id=whole"))
    assert rc == 0, err
    return run_dir_of(tmp_path, "whole")


def resumed_step(out: str) -> int:
    line = next(line for line in out.splitlines() if line.startswith("resuming "))
    return int(line.rsplit(" ", 1)[1])


def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path, reference):
    run_dir = run_dir_of(tmp_path, "killed")
    proc = start(tmp_path, "run_id=killed")
    stop_once_saved(proc, run_dir, signal.SIGKILL)
    rc, _, _ = finish(proc)
    assert rc == -signal.SIGKILL and (run_dir / INCOMPLETE).exists() and not (run_dir / "eval.json").exists()
    rc, out, err = finish(start(tmp_path, f"resume={run_dir}"))
    assert rc == 0, err
    assert 0 < resumed_step(out) < TOTAL_STEPS and resumed_step(out) % 7 == 0
    assert not (run_dir / INCOMPLETE).exists()
    same_results(run_dir, reference)


def test_ctrl_c_exits_130_with_how_to_resume_and_the_report_lists_the_run_until_resumed(tmp_path, reference, capsys):
    run_dir = run_dir_of(tmp_path, "stopped")
    proc = start(tmp_path, "run_id=stopped")
    stop_once_saved(proc, run_dir, signal.SIGINT)
    rc, out, err = finish(proc)
    assert rc == 130, err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("interrupted (training state saved at step ")
    assert last.endswith(f"resume={run_dir}") and "python -m benchmark task=prefix_sums" in last
    step = int(last.split("at step ")[1].split(")")[0])
    assert 0 < step < TOTAL_STEPS and read_train_state(run_dir / STATE_FILE).step == step
    assert (run_dir / INCOMPLETE).exists()

    # The report lists the interrupted run (one line) and tabulates only finished ones.
    with pytest.raises(SystemExit):
        report.main([str(tmp_path / "results")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line for line in lines if line.startswith("incomplete run")] == [
        f"incomplete run, not tabulated (interrupted, diverged or crashed; resume=<it> continues it): {run_dir}"]
    assert report.find_runs([tmp_path / "results"]) == []

    command = shlex.split(last.split("resume with: ")[1])  # the printed command, run as printed
    assert command[:3] == ["python", "-m", "benchmark"]
    rc, out, err = finish(start(tmp_path, *command[3:], base=False))
    assert rc == 0, err
    assert resumed_step(out) == step and not (run_dir / INCOMPLETE).exists()
    same_results(run_dir, reference)
    assert report.incomplete_runs([tmp_path / "results"]) == [] and report.find_runs([tmp_path / "results"]) == [run_dir]
    assert EvalResult.read(run_dir / "eval.json").run.task == "prefix_sums"


def test_an_interrupted_classification_run_resumes_from_its_last_epoch(make_cfg, tmp_path, monkeypatch):
    """Ctrl-C in epoch 2 of 3: the state of epoch 1 is kept, and resume=<run dir> ends with the
    weights and the per-epoch accuracies of the uninterrupted run."""
    from benchmark.pipelines import classification as classify

    settings = ["task=digits", "model=swrn", "model.widen=1", "model.depth=10", "train.epochs=3", "train.batch_size=16",
                "size.n_train=64", "size.n_test=32", "progress=false"]
    whole = classify.run(make_cfg(*settings, "run_id=whole", tiny=False))

    saves, original = [], classify.save_train_state

    def save_then_interrupt(*args, **kwargs):
        saves.append(args[1])  # the step
        if len(saves) == 2:  # Ctrl-C during epoch 2's save: the state on disk stays epoch 1's
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(classify, "save_train_state", save_then_interrupt)
    with pytest.raises(RunInterrupted) as interrupted:
        classify.run(make_cfg(*settings, "run_id=cut", tiny=False))
    run_dir = interrupted.value.run_dir
    assert interrupted.value.step == saves[0] == 4 and (run_dir / INCOMPLETE).exists()
    monkeypatch.setattr(classify, "save_train_state", original)
    resumed = classify.run(make_cfg(*settings, "run_id=other", f"resume={run_dir}", tiny=False))
    assert resumed.curve == whole.curve and resumed.accuracy == whole.accuracy
    a, b = (torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (run_dir, run_dir.parent / "whole"))
    assert all(torch.equal(a[k], b[k]) for k in a) and not (run_dir / INCOMPLETE).exists()
    assert [r["epoch"] for r in strict_json_lines(run_dir / "metrics.jsonl")] == [1, 2, 3]
