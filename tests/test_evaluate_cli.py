"""``python -m benchmark.evaluate``: re-scoring a run, on generated sizes or an external .npz file;
every bad input is one sentence, exit status 2, and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from benchmark.infra.checkpoint import save_checkpoint
from benchmark.config.schema import data_seeds
from benchmark.evaluation.extrapolation import accuracy_per_iteration, settle_and_score
from benchmark.evaluation.extrapolation import main as evaluate_main
from benchmark.models.recurrent import RecurrentConvNet
from benchmark.infra.results import EvalResult
from tasks.maze import MazeTask
from tasks.prefix_sums import PrefixSumsTask

REPO = Path(__file__).resolve().parents[1]
MAZE = {"_target_": "tasks.maze.MazeTask", "rendering": "compact"}
PREFIX = {"_target_": "tasks.prefix_sums.PrefixSumsTask"}
SEED, TRAIN_ITERS = 3, 2


def _make_run(run_dir: Path, task_cfg: dict, task_cls, config_task: dict | None = None) -> RecurrentConvNet:
    """A run directory as a run leaves it: model.pt and config.yaml (an untrained tiny model)."""
    run_dir.mkdir(parents=True)
    model_cfg = {"_target_": "benchmark.models.recurrent.RecurrentConvNet", "name": "shared", "width": 4, "depth": 1}
    torch.manual_seed(0)
    model = RecurrentConvNet(task_cls.spec, name="shared", width=4, depth=1)
    save_checkpoint(model, OmegaConf.create({"model": model_cfg, "task": task_cfg}), run_dir / "model.pt")
    config = {"seed": SEED, "task": config_task or task_cfg, "model": model_cfg, "train": {"iters": TRAIN_ITERS}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return model.eval()


@pytest.fixture
def maze_run(tmp_path):
    run_dir = tmp_path / "run"
    return run_dir, _make_run(run_dir, MAZE, MazeTask)


def _evaluate(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        evaluate_main([*argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _refused(capsys, root: Path, *argv: str) -> str:
    before = _listing(root)
    code, out, err = _evaluate(capsys, *argv)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and err.rstrip().endswith("."), err
    assert _listing(root) == before  # nothing written
    return err


# ---------------------------------------------------------------------------- generated sizes
def test_sizes_are_scored_and_named_by_every_setting(maze_run, capsys):
    run_dir, model = maze_run
    code, out, _ = _evaluate(capsys, str(run_dir), "--sizes", "7", "5", "--iters", "3", "--n", "4", "--device", "cpu")
    assert code == 0
    results = json.loads((run_dir / "eval_sizes7-5_iters3_n4.json").read_text())
    expected = {str(s): accuracy_per_iteration(model, MazeTask(), MazeTask().dataset(s, 4, seed=data_seeds(SEED)[1]),
                                               3, 2, torch.device("cpu")) for s in (7, 5)}
    assert results["accuracy"] == expected
    assert (results["iterations"], results["train_iters"], results["task"]) == (3, TRAIN_ITERS, "maze")
    assert results["summary"]["7"]["train_depth"] == TRAIN_ITERS
    assert "oracle iter" in out and "eval_sizes7-5_iters3_n4.json" in out

    # Another n is another file: reruns with other settings never overwrite each other.
    _evaluate(capsys, str(run_dir), "--sizes", "7", "5", "--iters", "3", "--n", "5", "--device", "cpu")
    assert (run_dir / "eval_sizes7-5_iters3_n5.json").is_file()
    assert json.loads((run_dir / "eval_sizes7-5_iters3_n4.json").read_text()) == results


def test_halting_writes_where_samples_settled_compares_the_time_and_draws_the_histogram(maze_run, tmp_path, capsys):
    run_dir, model = maze_run
    argv = [str(run_dir), "--sizes", "7", "5", "--iters", "12", "--n", "6", "--batch-size", "4", "--device", "cpu", "--halt", "2"]
    code, out, _ = _evaluate(capsys, *argv, "--compare-halting", "--histogram", str(tmp_path / "settling.png"))
    assert code == 0
    written = EvalResult.read(run_dir / "eval_sizes7-5_iters12_n6_halt2.json")
    for size in (7, 5):
        data = MazeTask().dataset(size, 6, seed=data_seeds(SEED)[1])
        curve, halting = settle_and_score(model, MazeTask(), data, 12, 4, torch.device("cpu"), halt_after=2)
        assert written.accuracy[size] == tuple(curve) and written.halting[size] == halting
        # This untrained model's predictions reach fixed points and stay there, so halting changes
        # no figure: the accuracy of every iteration is the one without halting.
        assert halting.kind == ("fixed",) * 6 and curve == accuracy_per_iteration(model, MazeTask(), data, 12, 4, torch.device("cpu"))
        run = halting.iterations_run(2, 12)
        assert max(run) < 12  # every sample stopped early
        row = next(line.split() for line in out.splitlines() if line.split()[:1] == [str(size)] and "x" in line)
        assert row[3].endswith("x") and row[4].endswith("x") and row[-1] == "equal" and row[5] == f"{sum(run) / len(run):.1f}"
    assert "(time without / with halting after 2" in out and "median settled at" in out
    assert f"written {tmp_path / 'settling.png'}" in out and (tmp_path / "settling.png").read_bytes()[:4] == b"\x89PNG"

    # Halting is off by default: the file and its name are what they always were.
    _evaluate(capsys, *argv[:-2])
    assert "halting" not in json.loads((run_dir / "eval_sizes7-5_iters12_n6.json").read_text())


# ---------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("argv,message", [
    (["--sizes", "7", "--batch-size", "-3"], "--batch-size must be a positive integer, got -3"),
    (["--sizes", "7", "--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    (["--sizes", "7", "--iters", "0"], "--iters must be a positive integer"),
    (["--sizes", "7", "--n", "0"], "--n must be a positive integer"),
    (["--sizes", "7", "--iters", "abc"], "invalid int value"),
    (["--sizes", "8"], "maze size must be an odd integer"),
    (["--sizes", "7", "--device", "meta"], "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (["--sizes", "7", "--device", "mps"], "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (["--sizes", "7", "--device", "cuda"], "CUDA is not available"),
    (["--sizes", "7", "--device", "gpu"], "device must be"),
    ([], "one of the arguments --sizes --data --splits is required"),
    (["--sizes", "7", "--halt", "-1"], "--halt must be an integer >= 0"),
    (["--sizes", "7", "--compare-halting"], "need halting: give --halt K"),
    (["--sizes", "7", "--histogram", "h.png"], "need halting: give --halt K"),
    (["--sizes", "7", "--halt", "2", "--histogram", "h.gif"], "--histogram must name a .png file"),
    (["--sizes", "7", "--halt", "2", "--histogram", "no/such/dir/h.png"], "--histogram must name a .png file"),
    (["--sizes", "7", "--data", "x.npz"], "not allowed with argument"),
])
def test_bad_options_are_one_sentence(maze_run, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # "without a GPU", on any machine
    run_dir, _ = maze_run
    assert message in _refused(capsys, run_dir.parent, str(run_dir), *argv)


@pytest.mark.parametrize("damage", ["empty", "truncated", "random"])
def test_damaged_checkpoint_is_one_sentence(maze_run, capsys, damage):
    run_dir, _ = maze_run
    ckpt = run_dir / "model.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes({"empty": b"", "truncated": data[: len(data) // 3], "random": os.urandom(len(data))}[damage])
    assert "cannot read checkpoint" in _refused(capsys, run_dir.parent, str(run_dir), "--sizes", "7")


@pytest.mark.parametrize("config", [None, "just a string\n", "seed: 1\n", "{seed: -1, task: {}, train: {iters: 2}}\n",
                                    "seed: [unclosed\n"], ids=["missing", "scalar", "no-task", "negative-seed", "bad-yaml"])
def test_missing_or_bad_config_is_one_sentence(maze_run, capsys, config):
    run_dir, _ = maze_run
    if config is None:
        (run_dir / "config.yaml").unlink()
    else:
        (run_dir / "config.yaml").write_text(config)
    assert "config.yaml" in _refused(capsys, run_dir.parent, str(run_dir), "--sizes", "7")


def test_run_dir_without_a_checkpoint_is_one_sentence(tmp_path, capsys):
    assert "has no model.pt" in _refused(capsys, tmp_path, str(tmp_path), "--sizes", "7")
    assert "is not a directory" in _refused(capsys, tmp_path, str(tmp_path / "nope"), "--sizes", "7")


def test_checkpoint_of_another_task_is_refused_naming_both(tmp_path, capsys):
    run_dir = tmp_path / "maze_run"
    _make_run(run_dir, PREFIX, PrefixSumsTask, config_task=MAZE)  # a prefix-sums model.pt in a maze run
    err = _refused(capsys, tmp_path, str(run_dir), "--sizes", "7")
    assert "trained on task prefix_sums" in err and "names task maze" in err


def test_checkpoint_with_other_task_options_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _make_run(run_dir, {**MAZE, "rendering": "e2h"}, MazeTask, config_task=MAZE)
    err = _refused(capsys, tmp_path, str(run_dir), "--sizes", "7")
    assert "'rendering': 'e2h'" in err and "'rendering': 'compact'" in err


def test_config_naming_an_unregistered_target_is_refused(maze_run, capsys):
    run_dir, _ = maze_run
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["task"] = {"_target_": "pathlib.Path.write_text", "self": str(run_dir / "pwned"), "data": "x"}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    assert "is not one of the registered task classes" in _refused(capsys, run_dir.parent, str(run_dir), "--sizes", "7")


def test_crafted_checkpoint_writes_nothing(maze_run, capsys):
    run_dir, _ = maze_run
    raw = torch.load(run_dir / "model.pt", weights_only=True)
    victim = run_dir.parent / "precious.txt"
    victim.write_text("precious")
    raw.update(format="algoreason-checkpoint-1",
               model={"_target_": "pathlib.Path.write_text", "self": str(victim), "data": "pwned"},
               task={"_target_": "builtins.open", "file": str(victim), "mode": "w"})
    torch.save(raw, run_dir / "model.pt")
    assert "is not a benchmark checkpoint" in _refused(capsys, run_dir.parent, str(run_dir), "--sizes", "7")
    assert victim.read_text() == "precious"


# ---------------------------------------------------------------------------- external data
def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_external_data_is_scored_like_the_other_evaluations(maze_run, tmp_path, capsys):
    run_dir, model = maze_run
    # Mazes "from another generator": other seeds, float64 inputs and int32 targets (both accepted).
    # The first four targets are the model's own answers after 2 iterations, so it scores >= 4/6 there.
    x, y = MazeTask().generate(9, 6, seed=123)
    with torch.no_grad():
        y[:4] = model(torch.from_numpy(x[:4]), 2).argmax(1).numpy()
    data = _npz(tmp_path / "other mazes.npz", inputs=x.astype(np.float64), targets=y.astype(np.int32))
    code, out, err = _evaluate(capsys, str(run_dir), "--data", str(data), "--iters", "4", "--device", "cpu")
    assert code == 0, err
    (written,) = run_dir.glob("eval_data-*.json")
    assert written.name.startswith("eval_data-other_mazes-") and written.name.endswith("_iters4.json")
    results = json.loads(written.read_text())
    expected = accuracy_per_iteration(model, MazeTask(), torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                                      4, 3, torch.device("cpu"))
    assert list(results["accuracy"]) == ["9"] and results["accuracy"]["9"] == pytest.approx(expected)
    assert results["accuracy"]["9"][1] >= 4 / 6
    assert set(results) >= {"iterations", "train_iters", "accuracy", "summary", "task", "model", "data"}
    assert results["data"]["samples"] == 6 and len(results["data"]["sha256"]) == 64
    assert "oracle iter" in out and "6 samples of size 9" in out

    # A file of the same name with other contents is another result file.
    _npz(tmp_path / "other mazes.npz", inputs=x[:3], targets=y[:3])
    _evaluate(capsys, str(run_dir), "--data", str(data), "--iters", "4", "--device", "cpu")
    assert len(list(run_dir.glob("eval_data-*.json"))) == 2


def _bad_data(kind: str) -> dict:
    x, y = MazeTask().generate(7, 3, seed=0)
    nan = x.copy()
    nan[0, 1, 2, 2] = np.nan
    return {
        "extra-array": dict(inputs=x, targets=y, seeds=np.arange(3)),
        "no-targets": dict(inputs=x),
        "channels": dict(inputs=x[:, :2], targets=y),
        "ndim": dict(inputs=x[:, 0], targets=y),
        "no-size": dict(inputs=x[:, :, :8, :8], targets=y[:, :8, :8]),
        "target-shape": dict(inputs=x, targets=y[:, :-1]),
        "target-count": dict(inputs=x, targets=y[:2]),
        "nan": dict(inputs=nan, targets=y),
        "target-range": dict(inputs=x, targets=y * 2),
        "int-inputs": dict(inputs=x.astype(np.int64), targets=y),
        "float-targets": dict(inputs=x, targets=y.astype(np.float32)),
        "empty": dict(inputs=x[:0], targets=y[:0]),
        "objects": dict(inputs=np.array([x], dtype=object), targets=y),
    }[kind]


@pytest.mark.parametrize("kind,message", [
    ("extra-array", "exactly the arrays 'inputs' and 'targets'"),
    ("no-targets", "exactly the arrays 'inputs' and 'targets'"),
    ("channels", "inputs must be (N >= 1, 3, S, S)"),
    ("ndim", "inputs must be (N >= 1, 3, S, S)"),
    ("no-size", "no maze size has puzzles of spatial shape (8, 8)"),
    ("target-shape", "need inputs (n, 3, 9, 9) and targets (n, 9, 9)"),
    ("target-count", "need inputs"),
    ("nan", "inputs must be finite"),
    ("target-range", "targets must be class indices in [0, 1]"),
    ("int-inputs", "inputs must be floats and targets integers"),
    ("float-targets", "inputs must be floats and targets integers"),
    ("empty", "inputs must be (N >= 1"),
    ("objects", "is not a readable .npz file"),
])
def test_bad_external_data_is_one_sentence(maze_run, tmp_path, capsys, kind, message):
    run_dir, _ = maze_run
    data = _npz(tmp_path / "bad.npz", **_bad_data(kind))
    assert message in _refused(capsys, tmp_path, str(run_dir), "--data", str(data))


@pytest.mark.parametrize("content", [None, b"", b"not a zip"], ids=["missing", "empty", "garbage"])
def test_unreadable_external_data_is_one_sentence(maze_run, tmp_path, capsys, content):
    run_dir, _ = maze_run
    data = tmp_path / "data.npz"
    if content is not None:
        data.write_bytes(content)
    assert "is not a readable .npz file" in _refused(capsys, tmp_path, str(run_dir), "--data", str(data))


def test_module_entry_point_exits_2_in_one_line(maze_run):
    """``python -m benchmark.evaluate`` itself, as a user runs it."""
    run_dir, _ = maze_run
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "benchmark.evaluate", str(run_dir), "--sizes", "7", "--batch-size", "-3"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr == "error: --batch-size must be a positive integer, got -3.\n"


def test_the_settling_histogram_counts_each_size_in_its_legend(tmp_path, monkeypatch):
    import benchmark.analysis.plots as plot
    from benchmark.infra.results import SizeHalting

    result = EvalResult(iterations=10, train_iters=2, accuracy={33: (0.0,) * 9 + (0.5,), 59: (0.0,) * 10}, halt_after=2,
                        halting={33: SizeHalting((3, 4, None, 5), ("fixed", "2-cycle", "none", "fixed"), (True, False, True, False)),
                                 59: SizeHalting((None, None), ("none", "none"), (False, False))})
    drawn = {}
    monkeypatch.setattr(plot, "save_figure", lambda fig, path: drawn.setdefault("fig", fig) and path)
    assert plot.plot_settling(result, tmp_path / "s.png") == tmp_path / "s.png"
    ax = drawn["fig"].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["33: 2 fixed, 1 2-cycle, 1 never"]  # 59 never settled
    assert ax.get_xlabel() == "first iteration of the settled state" and "after 2 settled iterations" in ax.get_title()
    (outline,) = ax.collections  # one filled step outline, of size 33's three settled samples
    xy = outline.get_paths()[0].vertices
    assert (xy[:, 0].min(), xy[:, 0].max(), xy[:, 1].max()) == (3.0, 5.0, 1.0)  # iterations 3..5, one sample per bin


def test_fold_scores_the_runs_own_fold_under_its_own_name(tmp_path, capsys):
    """``--fold``: the trained reference model folded at its run's threshold, scored on the run's
    own test samples: the same curves as folding and evaluating it directly; the file is new."""
    import shutil

    from benchmark.evaluation.extrapolation import evaluate
    from benchmark.evaluation.rescore import load_run
    from benchmark.analysis.folding import fold

    source = next((REPO / "results" / "reference" / "checkpoints" / "maze" / "train9_test15" / "shared").iterdir())
    run_dir = Path(shutil.copytree(source, tmp_path / "run"))
    code, out, _ = _evaluate(capsys, str(run_dir), "--sizes", "9", "--iters", "6", "--n", "16", "--fold", "--device", "cpu",
                             "--precision", "fp32")
    assert code == 0 and "folded into 1 loop(s)" in out
    written = EvalResult.read(run_dir / "eval_sizes9_iters6_n16_fp32_folded.json")  # trained in bf16, scored in fp32
    model, ckpt, cfg, device = load_run(run_dir, "cpu", "fp32")
    folded, report = fold(model, cfg["eval"]["fold_threshold"])
    assert len(report.loops) == 1
    data = {9: ckpt.task.dataset(9, 16, seed=data_seeds(cfg["seed"])[1])}
    with torch.no_grad():
        assert written.accuracy == evaluate(folded, ckpt.task, data, 6, cfg["train"]["iters"], 100, device).accuracy
    assert max(written.accuracy[9]) > 0.5  # a trained model, so the equality is not between zeros

    # --fold-threshold: the fold at another threshold (here low enough to merge the block's
    # slots into fewer weights), under a name that holds the threshold; the first file stays.
    code, out, _ = _evaluate(capsys, str(run_dir), "--sizes", "9", "--iters", "6", "--n", "16", "--fold",
                             "--fold-threshold", "0.2", "--device", "cpu", "--precision", "fp32")
    assert code == 0
    looser, looser_report = fold(model, 0.2)
    assert looser_report.block_weights_after < report.block_weights_after  # a different fold, not the run's
    with torch.no_grad():
        expected = evaluate(looser, ckpt.task, data, 6, cfg["train"]["iters"], 100, device).accuracy
    assert EvalResult.read(run_dir / "eval_sizes9_iters6_n16_fp32_folded0.2.json").accuracy == expected
    assert EvalResult.read(run_dir / "eval_sizes9_iters6_n16_fp32_folded.json").accuracy == written.accuracy


@pytest.mark.parametrize("flags, said", [
    (("--fold-threshold", "0.9"), "without --fold"),
    (("--fold", "--fold-threshold", "1.5"), "got 1.5"),
    (("--fold", "--fold-threshold", "0"), "got 0.0"),
    (("--fold", "--fold-threshold", "nan"), "got nan"),
])
def test_fold_threshold_outside_its_range_or_without_fold_is_refused(maze_run, tmp_path, capsys, flags, said):
    run_dir, _ = maze_run
    err = _refused(capsys, run_dir, str(run_dir), "--sizes", "5", "--iters", "2", "--n", "2", "--device", "cpu", *flags)
    assert "--fold-threshold needs --fold and a value in (0, 1]" in err and said in err



def test_fold_refuses_a_model_without_a_learned_bank(tmp_path, capsys):
    """As a run does not fold them: the feed-forward and hard-recurrent baselines have no coefficients."""
    from baselines.feedforward import FeedForwardNet

    run_dir = tmp_path / "ff"
    run_dir.mkdir()
    model_cfg = {"_target_": "baselines.feedforward.FeedForwardNet", "name": "feedforward", "width": 4, "depth": 2}
    save_checkpoint(FeedForwardNet(MazeTask.spec, name="feedforward", width=4, depth=2),
                    OmegaConf.create({"model": model_cfg, "task": MAZE}), run_dir / "model.pt")
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"seed": SEED, "task": MAZE, "model": model_cfg, "train": {"iters": 2}}))
    err = _refused(capsys, tmp_path, str(run_dir), "--sizes", "5", "--iters", "2", "--n", "2", "--fold", "--device", "cpu")
    assert "--fold needs a model whose template bank learns its mixing coefficients" in err and "'feedforward'" in err


# ---------------------------------------------------------------------------- bounded reading of --data
def _bomb(path: Path, shape: tuple[int, ...] = (10**6, 3, 1000, 1000)) -> Path:
    """A tiny .npz whose 'inputs' header declares ``shape`` float32s (12 TB for the default), with
    hardly any data behind it: reading it as numpy does would try to allocate the declared size."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("inputs.npy", header.getvalue() + bytes(4096))
        archive.writestr("targets.npy", header.getvalue() + bytes(4096))
    return path


@pytest.mark.parametrize("kind,message", [
    ("bomb", "more than the"),
    ("fifo", "not a regular file"),
    ("dev_zero", "not a regular file"),
    ("directory", "not a regular file"),
    ("unicode", "plain number"),
    ("version", "format"),
])
def test_external_data_is_checked_before_it_is_read(maze_run, tmp_path, capsys, kind, message):
    run_dir, _ = maze_run
    data = tmp_path / "data.npz"
    if kind == "bomb":
        _bomb(data)
    elif kind == "fifo":
        os.mkfifo(data)  # opening it for reading would block until a writer came
    elif kind == "dev_zero":
        data = Path("/dev/zero")  # endless: reading it first would take all the memory
    elif kind == "directory":
        data.mkdir()
    elif kind == "unicode":
        np.savez(data, inputs=np.array(["a"] * 3), targets=np.zeros(3, dtype=np.int64))
    else:
        np.savez(data, inputs=np.zeros((1, 3, 9, 9), np.float32), targets=np.zeros((1, 9, 9), np.int64))
        import zipfile
        with zipfile.ZipFile(data) as src:
            members = {m: src.read(m) for m in src.namelist()}
        with zipfile.ZipFile(data, "w") as dst:
            for name, raw in members.items():
                dst.writestr(name, raw[:6] + b"\x09\x00" + raw[8:])  # an unknown .npy format version 9.0
    assert message in _refused(capsys, tmp_path, str(run_dir), "--data", str(data))


def test_a_data_bomb_is_refused_with_bounded_memory(maze_run, tmp_path):
    """In a fresh interpreter, so the peak resident size measures this refusal alone."""
    run_dir, _ = maze_run
    data = _bomb(tmp_path / "bomb.npz", shape=(2000, 3, 500, 500))  # 6 GB declared, a few kB on disk
    script = ("import resource, sys\nfrom benchmark.evaluation.extrapolation import main\n"
              "start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
              "print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(run_dir), "--data", str(data)], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)), timeout=300)
    code, grown_kb = proc.stdout.split()[-2:]
    assert code == "2" and "Traceback" not in proc.stderr and "more than the" in proc.stderr, proc.stderr
    assert int(grown_kb) < 200 * 1024
