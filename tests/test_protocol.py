"""The benchmark protocol (docs/protocol.md): validation data from other seeds, the iteration
chosen on it, the oracle labelled, matched baselines and the leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from benchmark.analysis import leaderboard as lb
from benchmark.analysis import report
from benchmark.config.schema import SEED_MAX, VALIDATION_SEED_BASE, ConfigError, check_config, data_seeds, n_validation, run_datasets
from benchmark.evaluation.extrapolation import accuracy_per_iteration, evaluate, format_table
from benchmark.infra.checkpoint import load_checkpoint
from benchmark.infra.results import (
    ORACLE_LABEL,
    EvalResult,
    RunInfo,
    SizeSummary,
    Timing,
    ValidatedSummary,
    choose_iteration,
)
from benchmark.infra.rundir import RunDir
from benchmark.pipelines.algorithmic import build_model, build_task, run
from conftest import TINY, compose_config
from known_answer import EIGHT_BITS, TASK, KnownAnswerNet, bit_strings
from tasks.fileio import write_text

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "results" / "reference"
CPU = torch.device("cpu")


# ---------------------------------------------------------------------------- seeds and data
def test_validation_seeds_collide_with_no_training_test_or_frozen_split_seed():
    frozen = [s["seed"] for s in yaml.safe_load((ROOT / "configs" / "splits.yaml").read_text())["splits"].values()]
    largest_run_seed = max(data_seeds(SEED_MAX))  # train 2s, test 2s + 1: unpacks to two as before
    for seed in (0, 1, 7, SEED_MAX):
        seeds = data_seeds(seed)
        assert seeds.validation == VALIDATION_SEED_BASE + seed
        assert seeds.validation > largest_run_seed and seeds.validation > max(frozen)
    assert data_seeds(3) == (6, 7)  # the training and test seeds of every earlier run are unchanged
    assert max(frozen) < VALIDATION_SEED_BASE


def test_validation_puzzles_are_not_test_or_training_puzzles():
    task = build_task(compose_config("task=maze"))
    seeds = data_seeds(0)
    test, val, train = (task.dataset(15, 64, seed=s).tensors[0] for s in (seeds.test, seeds.validation, seeds.train))
    rows = lambda x: {tuple(t.flatten().tolist()) for t in x}  # noqa: E731
    assert len(rows(val)) == 64 and not rows(val) & rows(test) and not rows(val) & rows(train)


def test_n_val_defaults_to_n_test_and_zero_turns_validation_off():
    cfg = compose_config(*TINY, "seed=2")
    assert n_validation(cfg.size) == 16
    assert (15, 16, data_seeds(2).validation) in run_datasets(cfg)
    off = compose_config(*TINY, "size.n_val=0")
    assert n_validation(off.size) == 0 and all(seed != data_seeds(0).validation for _, _, seed in run_datasets(off))
    with pytest.raises(ConfigError, match="size.n_val"):
        check_config(compose_config(*TINY, "size.n_val=-1"))


# ---------------------------------------------------------------------------- the chosen iteration
def test_the_rule_is_the_smallest_iteration_within_the_tolerance_of_the_best():
    assert choose_iteration([0.1, 0.5, 0.996, 1.0, 0.9], tolerance=0.005) == 3
    assert choose_iteration([0.1, 0.5, 0.99, 1.0, 0.9], tolerance=0.005) == 4
    assert choose_iteration([0.2, 0.2], tolerance=0.0) == 1


def test_the_iteration_comes_from_validation_when_validation_and_test_disagree():
    """Validation peaks at iteration 2, test at 5: the reported figure is test at 2; the oracle 5."""
    test = (0.1, 0.2, 0.3, 0.4, 0.9, 0.5)
    val = (0.5, 0.8, 0.6, 0.4, 0.3, 0.2)
    result = EvalResult(iterations=6, train_iters=3, accuracy={9: test}, validation={9: val})
    s = result.summary[9]
    assert isinstance(s, ValidatedSummary)
    assert (s.chosen_iter, s.chosen, s.val_chosen, s.val_best) == (2, 0.2, 0.8, 0.8)
    assert (s.best_iter, s.best) == (5, 0.9)  # the oracle, chosen on test
    data = result.to_json()
    assert data["selection"]["best_iter"] == ORACLE_LABEL and data["summary"]["9"]["chosen_iter"] == 2
    assert EvalResult.from_json(json.loads(json.dumps(data))) == result
    table = format_table(result)
    assert ORACLE_LABEL in table and "val-chosen iter" in table and "oracle iter" in table
    assert table.splitlines()[2].split()[:5] == ["9", "30.00%", "@3", "2", "20.00%"]


def test_evaluate_scores_validation_in_the_same_pass_machinery():
    """A known-answer model on different test and validation strings: the validation curve is the
    one ``accuracy_per_iteration`` gives, and the chosen iteration follows it."""
    test_sets = {8: bit_strings(*EIGHT_BITS)}
    val_sets = {8: bit_strings("00000000", "11111111")}
    model = KnownAnswerNet(hold=5)
    result = evaluate(model, TASK, test_sets, 7, 3, 2, CPU, validation_sets=val_sets)
    assert result.validation[8] == tuple(accuracy_per_iteration(model, TASK, val_sets[8], 7, 2, CPU))
    assert result.summary[8].chosen_iter == choose_iteration(result.validation[8])
    with pytest.raises(ValueError, match="validation sizes"):
        evaluate(model, TASK, test_sets, 7, 3, 2, CPU, validation_sets={6: val_sets[8]})


def test_a_run_scores_validation_from_its_validation_seed(tmp_path):
    cfg = compose_config(*TINY, f"results_dir={tmp_path}", "cache_dir=null", "size.n_val=8", "model.width=8",
                         "size.train=5", "size.test=[7]")
    result = run(cfg)
    saved = EvalResult.read(RunDir(result.run_dir).eval)
    assert saved.protocol == 1 and set(saved.validation) == {5, 7}
    assert saved.run.code_version.endswith("+protocol1") and saved.run.precision in ("fp32", "bf16")
    model, ckpt = load_checkpoint(RunDir(result.run_dir).model)
    model.precision = saved.run.precision
    data = ckpt.task.dataset(7, 8, seed=data_seeds(cfg.seed).validation)
    assert saved.validation[7] == tuple(accuracy_per_iteration(model, ckpt.task, data, saved.iterations, 256, CPU))


# ---------------------------------------------------------------------------- old files
def test_every_committed_eval_json_without_validation_still_reads_as_the_old_protocol():
    paths = sorted(REFERENCE.rglob("eval.json"))
    assert len(paths) >= 30
    for path in paths:
        data = json.loads(path.read_text())
        if data.get("kind") == "classification":
            continue
        result = EvalResult.read(path)
        if "validation" in data:  # a protocol-1 run committed since (results/reference/leaderboard)
            assert result.protocol == 1 and all(s.chosen_iter is not None for s in result.summary.values())
            continue
        assert result.validation is None and result.protocol == 0
        assert all(type(s) is SizeSummary and s.chosen_iter is None for s in result.summary.values())
        if result.run is not None:
            assert result.run.code_version is None and result.run.precision is None


# ---------------------------------------------------------------------------- matched baselines
# Per task: (model=shared's count, recurrent_matched's width, feedforward_matched's width). The
# YAML files hold the maze widths; the other tasks add model.width=... (docs/protocol.md).
MATCHED = {"maze": (43_496, 27, 7), "prefix_sums": (14_120, 27, 5), "shortest_path_unit": (97_208, 40, 8)}
# Where no width of the feed-forward stack (depth = train.iters) lands within 3%: its count moves
# by depth x 4 x (2 width + 1) per unit of width. The nearest width is used and the gap documented.
NO_FF_WIDTH_WITHIN_3_PERCENT = {"maze", "prefix_sums"}


def _parameters(*overrides: str) -> int:
    cfg = compose_config(*overrides)
    task = build_task(cfg)
    model = build_model(cfg, task)
    check_config(cfg, task, model)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("task", sorted(MATCHED))
def test_matched_baselines_have_the_shared_models_parameter_count(task):
    shared, rec_width, ff_width = MATCHED[task]
    assert _parameters(f"task={task}", "model=shared") == shared
    width = [] if task == "maze" else [f"model.width={rec_width}"]
    assert abs(_parameters(f"task={task}", "model=recurrent_matched", *width) / shared - 1) <= 0.03
    ff = lambda w: _parameters(f"task={task}", "model=feedforward_matched", f"model.width={w}")  # noqa: E731
    gaps = {w: abs(ff(w) / shared - 1) for w in (ff_width - 1, ff_width, ff_width + 1)}
    assert gaps[ff_width] == min(gaps.values())  # the nearest width
    if task in NO_FF_WIDTH_WITHIN_3_PERCENT:
        assert min(gaps.values()) > 0.03
    else:
        assert gaps[ff_width] <= 0.03
    cfg = compose_config(f"task={task}", "model=feedforward_matched")
    assert cfg.model.depth == cfg.train.iters and cfg.model.name == "feedforward_matched"
    # The matched widths are each task's own (configs/matched/), without model.width on the command line.
    assert cfg.model.width == ff_width and compose_config(f"task={task}", "model=recurrent_matched").model.width == rec_width
    assert compose_config(f"task={task}", "model=recurrent_matched", "model.width=33").model.width == 33  # the command line wins


LEADERBOARD_SWEEPS = {"maze": ("task=maze", "size=train9_test15"),
                      "prefix_sums": ("task=prefix_sums", "size=train32_test512"),
                      "shortest_path_unit": ("task=shortest_path_unit", "train.epochs=2")}


@pytest.mark.parametrize("task", sorted(LEADERBOARD_SWEEPS))
@pytest.mark.parametrize("model", ["shared", "recurrent_matched", "feedforward_matched"])
def test_the_leaderboard_sweep_points_compose_and_validate(model, task):
    """Every point of docs/protocol.md's leaderboard sweeps composes, builds and passes the checks."""
    for seed in (0, 4):
        cfg = compose_config(f"model={model}", f"seed={seed}", "precision=bf16", "threads=1", *LEADERBOARD_SWEEPS[task])
        built = build_task(cfg)
        check_config(cfg, built, build_model(cfg, built))


# ---------------------------------------------------------------------------- the leaderboard
def _fake_run(root: Path, model: str, seed: int, precision: str = "fp32", validated: bool = True, shift: float = 0.0,
              parameters: int = 1000, settings: dict | None = None, name: str = "") -> Path:
    """A finished run directory with known curves: test peaks at iteration 4, validation at 2;
    ``settings``: config groups written into its config.yaml beside seed and precision."""
    run_dir = root / "maze" / "train9_test15" / model / f"{precision}{name}-seed{seed}"
    run_dir.mkdir(parents=True)
    test = {9: (0.5, 0.9, 0.95, 1.0), 15: (0.1 + shift, 0.4 + shift, 0.5 + shift, 0.6 + shift)}
    val = {9: (0.6, 1.0, 0.9, 0.9), 15: (0.2, 0.5, 0.4, 0.3)} if validated else None
    info = RunInfo(task="maze", model=model, parameters=parameters, seed=seed, train_size=9, device="cpu",
                   final_train_acc=0.9, seconds=Timing(generation=1.0, train=100.0 + seed, eval=2.0),
                   precision=precision if validated else None, code_version="0.1.0+protocol1" if validated else None)
    EvalResult(iterations=4, train_iters=2, accuracy=test, run=info, validation=val).write(run_dir / "eval.json")
    write_text(run_dir / "config.yaml", yaml.safe_dump({"seed": seed, "precision": precision, **(settings or {})}))
    write_text(run_dir / "metrics.jsonl", "".join(json.dumps(dict(step=s, train_acc=0.5)) + "\n" for s in (50, 100)))
    return run_dir


def test_leaderboard_reports_test_at_the_validation_choice_beside_the_oracle(tmp_path):
    for seed in (0, 1, 2):
        _fake_run(tmp_path, "shared", seed, shift=0.1 * seed)
    _fake_run(tmp_path, "recurrent_matched", 0, parameters=1010)
    rows = lb.leaderboard([tmp_path], tmp_path / "out")
    row = next(r for r in rows if r["model"] == "shared" and r["size"] == 15)
    assert row["seeds"] == [0, 1, 2] and row["chosen_iter_median"] == 2 and row["oracle_iter_median"] == 4
    assert row["chosen_mean"] == pytest.approx(0.5) and row["oracle_mean"] == pytest.approx(0.7)
    assert row["chosen_sd"] == pytest.approx(0.1) and row["steps"] == 100 and row["protocol"] == 1
    assert row["solved_seeds"] == 0  # 0.4, 0.5, 0.6 at the chosen iteration, none >= SOLVED (0.95)
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert ORACLE_LABEL in md and "| shared | - | 1,000 | 100 | CPU 101 | fp32 | 0.1.0+protocol1 | 1 | 3 (0, 1, 2) | 50.0 ± 10.0 | 0 of 3 | 2 | 70.0 ± 10.0 | 4 |" in md
    csv_lines = (tmp_path / "out" / "leaderboard.csv").read_text().splitlines()
    assert csv_lines[0].startswith("task,train_size,size,model,variant,parameters") and len(csv_lines) == 1 + 4


def test_solved_seeds_count_the_seeds_at_or_above_the_bar(tmp_path, monkeypatch):
    for seed in (0, 1, 2):
        _fake_run(tmp_path, "shared", seed, shift=0.1 * seed)  # 15x15 at the chosen iteration: 0.4, 0.5, 0.6
    monkeypatch.setattr(lb, "SOLVED", 0.45)
    row = next(r for r in lb.table(lb.collect([tmp_path])) if r["size"] == 15)
    assert row["solved_seeds"] == 2 and "| 2 of 3 |" in lb.to_markdown([row])


def test_leaderboard_output_is_byte_for_byte_deterministic(tmp_path):
    for seed in (2, 0, 1):
        _fake_run(tmp_path / "runs", "shared", seed, shift=0.05 * seed)
        _fake_run(tmp_path / "runs", "feedforward_matched", seed, shift=-0.05)
    lb.leaderboard([tmp_path / "runs"], tmp_path / "a")
    lb.leaderboard([tmp_path / "runs"], tmp_path / "b")
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_mixed_precisions_and_protocols_are_split_or_refused(tmp_path, capsys):
    _fake_run(tmp_path, "shared", 0, precision="bf16")
    _fake_run(tmp_path, "shared", 1, precision="fp32")
    _fake_run(tmp_path, "shared", 2, precision="fp32", validated=False)  # old protocol, no code version
    rows = [r for r in lb.table(lb.collect([tmp_path])) if r["size"] == 15]
    assert [r["variant"] for r in rows] == ["precision=bf16, code_version=0.1.0+protocol1, protocol=1",
                                            "precision=fp32, code_version=0.1.0+protocol1, protocol=1",
                                            "precision=fp32, code_version=pre-protocol, protocol=0"]
    assert [r["seeds"] for r in rows] == [[0], [1], [2]] and rows[2]["chosen_mean"] is None
    with pytest.raises(ConfigError, match=r"differ in precision: bf16, fp32; code_version: .*; protocol: 0, 1"):
        lb.table(lb.collect([tmp_path]), refuse_mixed=True)
    with pytest.raises(SystemExit) as exit_info:
        lb.main([str(tmp_path), "--out", str(tmp_path / "out"), "--refuse-mixed"])
    assert exit_info.value.code == 2 and not (tmp_path / "out").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the runs of shared on maze size")


def test_runs_of_other_recipes_get_their_own_rows(tmp_path, capsys):
    """A user's runs on Kruskal mazes, or with fewer epochs, beside the reference runs are never
    averaged into the reference row; logging cadence, the list of test sizes and the seed do not split."""
    recipe = {"task": {"generator": "dfs"}, "train": {"epochs": 4, "log_every": 50}, "size": {"train": 9, "test": [15]}}
    for seed in (0, 1):
        _fake_run(tmp_path, "shared", seed, settings=recipe)
    _fake_run(tmp_path, "shared", 2, settings={**recipe, "train": {"epochs": 4, "log_every": 10}, "size": {"train": 9, "test": [15, 33]}})
    _fake_run(tmp_path, "shared", 0, settings={**recipe, "task": {"generator": "kruskal"}}, name="-kruskal")
    _fake_run(tmp_path, "shared", 0, settings={**recipe, "train": {"epochs": 2, "log_every": 50}}, name="-short")
    rows = [r for r in lb.table(lb.collect([tmp_path])) if r["size"] == 15]
    assert sorted((r["variant"], tuple(r["seeds"])) for r in rows) == [
        ('task.generator="dfs", train.epochs=2', (0,)),
        ('task.generator="dfs", train.epochs=4', (0, 1, 2)),
        ('task.generator="kruskal", train.epochs=4', (0,))]
    with pytest.raises(ConfigError, match=r"differ in task.generator: \"dfs\", \"kruskal\"; train.epochs: 2, 4"):
        lb.table(lb.collect([tmp_path]), refuse_mixed=True)


def test_an_option_a_run_predates_reads_as_its_default(tmp_path):
    """Runs written before ``train.init_noise`` or ``task.generator`` existed share a row with new
    runs at those options' defaults, and not with runs that set them otherwise."""
    old = {"task": {"_target_": "tasks.maze.MazeTask"}, "train": {"epochs": 4}}
    new = {"task": {"_target_": "tasks.maze.MazeTask", "generator": "dfs"}, "train": {"epochs": 4, "init_noise": 0.0}}
    _fake_run(tmp_path, "shared", 0, settings=old)
    _fake_run(tmp_path, "shared", 1, settings=new)
    _fake_run(tmp_path, "shared", 2, settings={**new, "train": {"epochs": 4, "init_noise": 1.0}})
    rows = [r for r in lb.table(lb.collect([tmp_path])) if r["size"] == 15]
    assert sorted((r["variant"], tuple(r["seeds"])) for r in rows) == [("train.init_noise=0.0", (0, 1)),
                                                                       ("train.init_noise=1.0", (2,))]


def test_leaderboard_reads_the_committed_old_protocol_runs(tmp_path):
    # The 9x9 maze checkpoints predate validation data; train=robust's (15x15) has it.
    rows = lb.leaderboard([REFERENCE / "checkpoints" / "maze"], tmp_path)
    old = [r for r in rows if r["train_size"] == 9]
    assert old and all(r["protocol"] == 0 and r["chosen_mean"] is None for r in old)
    robust = [r for r in rows if r["train_size"] == 15]
    assert robust and all(r["protocol"] == 1 and r["chosen_mean"] is not None for r in robust)
    assert "pre-protocol" in (tmp_path / "leaderboard.md").read_text()


def test_report_labels_the_oracle_and_adds_the_validation_choice(tmp_path):
    for seed in (0, 1):
        _fake_run(tmp_path, "shared", seed)
    summary = report.report([tmp_path], tmp_path / "out")
    header = (tmp_path / "out" / "summary.md").read_text().splitlines()[0]
    assert f"best % = {ORACLE_LABEL}" in header and "val-chosen % (test acc.)" in header
    assert summary.loc[summary["size"] == 15, "chosen_mean"].iloc[0] == pytest.approx(0.4)


@pytest.mark.parametrize("board", sorted((REFERENCE / "leaderboard").rglob("leaderboard.md")) if (REFERENCE / "leaderboard").exists() else [],
                         ids=str)
def test_the_committed_leaderboards_regenerate_byte_for_byte(board, tmp_path):
    lb.leaderboard([board.parent], tmp_path)
    for name in ("leaderboard.md", "leaderboard.csv"):
        assert (tmp_path / name).read_bytes() == (board.parent / name).read_bytes(), name
