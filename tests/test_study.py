"""The sharing study's tables (``python -m benchmark.study``): hand-written runs with known numbers,
and a few tiny real runs that check the study reads what ``benchmark.pipelines.algorithmic.run`` writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from benchmark.analysis import step_cost, study
from tasks.fileio import write_text
from benchmark.infra.results import (BankSimilarity, EvalResult, FoldedLoop, FoldReport, FoldResult, RunInfo, SimilarityRecord,
                               Timing)
from nets import one_thread  # noqa: F401  (autouse fixture)

TRAIN, TEST, ITERS = 6, 8, 3
DEPTH_WISE = dict(depth=3, templates=2, width=8)
MODELS = dict(feedforward=dict(depth=3, width=8), recurrent=dict(depth=1, templates=None, width=8),
              shared_k1=dict(depth=1, templates=1, width=8), depth_k2=DEPTH_WISE)
STEPS_PER_EPOCH = 10  # n_train 100, batch_size 10


def _write_run(root: Path, model: str, seed: int, reach: int | None, steps: int, curve_test: list[float],
               epochs: int = 40, fold: tuple | None = None, coefficients: list[list[float]] | None = None) -> Path:
    """A run directory as ``benchmark.pipelines.algorithmic.run`` leaves one: its probe accuracy reaches 0.9 at step
    ``reach`` (None: never; seconds = steps / 10) and training ends at ``steps``."""
    run_dir = root / "prefix_sums" / "train6_test8" / model / f"run-seed{seed}"
    run_dir.mkdir(parents=True)
    cfg = dict(model=dict(name=model, **MODELS[model]), size=dict(train=TRAIN, test=[TEST], n_train=100),
               train=dict(stop_at_acc=0.9, epochs=epochs, batch_size=10, loop_weight=0.0))
    if "templates" not in MODELS[model]:
        cfg["model"].pop("templates", None)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(cfg)))
    records = [dict(step=s, seconds=s / 10, probe_acc=0.95 if reach is not None and s >= reach else 0.5)
               for s in range(10, steps + 1, 10)]
    write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    train_curve = (0.5, 0.9, 1.0, 1.0, 1.0, 1.0)
    info = RunInfo(task="prefix_sums", model=model, parameters=1000 if model == "feedforward" else 400, seed=seed,
                   train_size=TRAIN, device="cpu", final_train_acc=1.0, seconds=Timing(0.0, 1.0, 0.0))
    before = EvalResult(iterations=6, train_iters=ITERS, accuracy={TRAIN: train_curve, TEST: tuple(curve_test)}, run=info)
    before.write(run_dir / "eval.json")
    if fold is not None:
        loops, train_after, test_after = fold
        after = EvalResult(iterations=6, train_iters=ITERS, accuracy={TRAIN: tuple(train_after), TEST: tuple(test_after)})
        report = FoldReport(threshold=0.99, positions=3, block_weights_before=12, block_weights_after=4 * len(loops),
                            parameters_before=400, parameters_after=300,
                            loops=[FoldedLoop(positions=p, block_weights=[0, 1, 2, 3], block_scales=[[1.0] * 4] * len(p))
                                   for p in loops])
        FoldResult.compare(before, after, f"{model}-folded", report).write(run_dir / "fold.json")
    if coefficients is not None:
        from benchmark.analysis.similarity import layer_similarity
        import torch

        lsm = layer_similarity(torch.tensor(coefficients, dtype=torch.float64)).tolist()
        SimilarityRecord({"bank": BankSimilarity(lsm=lsm, coefficients=coefficients, learned=True, layers_per_position=4)}).write(
            run_dir / "lsm.json")
    return run_dir


def _coefficients(third_parallel: bool) -> list[list[float]]:
    """A 12 x 2 bank (3 positions of 4 slots): positions 0 and 1 equal; position 2 equal to them too
    (every paired |cos| 1) or orthogonal to position 1 (half the 8 pairs at 1, half at 0: mean 0.5)."""
    block = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]]
    last = [[2 * a, 2 * b] for a, b in block] if third_parallel else [[-b, a] for a, b in block]
    return block + block + last


@pytest.fixture
def known_study(tmp_path) -> Path:
    """Three seeds of four models whose speed, loops and curves are known (see each test)."""
    root = tmp_path / "study"
    test_curve = [0.0, 0.1, 0.5, 0.6, 0.4, 0.3]
    for seed, reach in enumerate((40, 60, 80)):
        _write_run(root, "feedforward", seed, reach, 400, test_curve)
    for seed, reach in enumerate((10, 20, 30)):
        _write_run(root, "recurrent", seed, reach, reach, [0.2, 0.4, 0.6, 0.6, 0.5, 0.5])
    _write_run(root, "shared_k1", 0, 50, 50, test_curve)
    _write_run(root, "shared_k1", 1, None, 90, test_curve, epochs=9)  # missed the target at a cap below 5 x 20
    _write_run(root, "shared_k1", 2, None, 400, test_curve)
    folds = {0: ([[0, 1], [2]], [0.5, 0.9, 0.9995, 1.0, 1.0, 1.0]), 1: ([[0, 1, 2]], [0.5, 0.9, 1.0, 1.0, 1.0, 1.0]),
             2: ([[0, 1], [2]], [0.5, 0.9, 1.0, 1.0, 1.0, 1.0])}
    for seed, reach in enumerate((20, 30, None)):
        loops, train_after = folds[seed]
        _write_run(root, "depth_k2", seed, reach, 400 if reach is None else reach, test_curve,
                   fold=(loops, train_after, [0.0, 0.1, 0.5, 0.7, 0.8, 0.8]), coefficients=_coefficients(seed == 1))
    return root


def test_speed_table_cells_are_the_runs_known_numbers(known_study, tmp_path):
    data = study.study([known_study], tmp_path / "out")
    md = (tmp_path / "out" / "study.md").read_text().split("## Paired")[0].splitlines()
    rows = {line.split(" | ")[1]: line for line in md if line.startswith("| prefix_sums | ")}
    # feedforward 40, 60, 80 steps (4, 6, 8 s); depth_k2 20, 30 and a miss at its cap 400: the
    # median counts the miss as slowest (30); shared_k1 misses twice: its median is beyond the cap.
    assert rows["feedforward"] == ("| prefix_sums | feedforward | unshared | 3 | 1,000 | 3/3 | 60 ± 20 | 60 | 6.0 ± 2.0 | 6.0 "
                                   "| 400 (-) | 95.0 ± 0.0 |")
    assert rows["recurrent"] == "| prefix_sums | recurrent | recurrent | 1 | 400 | 3/3 | 20 ± 10 | 20 | 2.0 ± 1.0 | 2.0 | 400 (-) | 95.0 ± 0.0 |"
    assert rows["shared_k1"] == ("| prefix_sums | shared_k1 | in-block | 1 | 400 | 1/3 | 50 ± 0 | > cap | 5.0 ± 0.0 | > cap "
                                 "| 400 (90, 400) | 65.0 ± 26.0 |")
    assert rows["depth_k2"] == ("| prefix_sums | depth_k2 | depth-wise | 3 | 400 | 2/3 | 25 ± 7 | 30 | 2.5 ± 0.7 | 3.0 "
                                "| 400 (400) | 80.0 ± 26.0 |")
    speed = {r["model"]: r for r in data["speed"]}
    assert speed["shared_k1"]["steps_median"] is None and speed["depth_k2"]["steps_sd"] == pytest.approx(math.sqrt(50))


def test_the_cap_rule_warns_of_a_run_that_stopped_short(known_study, tmp_path):
    data = study.study([known_study], tmp_path / "out")
    # The fastest family (recurrent) has a median of 20 steps, so a miss needs >= 100 steps; the
    # shared_k1 run that stopped at 90 is named, the misses at 400 are not.
    expected = ("warning: prefix_sums / shared_k1 seed 1 stopped at 90 steps without reaching 0.9: fewer than 5x the "
                "fastest family's median (recurrent: 20 steps, so >= 100).")
    assert data["cap_warnings"] == [expected]
    assert expected in (tmp_path / "out" / "study.md").read_text().splitlines()


def test_a_study_whose_caps_are_long_enough_says_so(known_study, tmp_path):
    for run_dir in known_study.rglob("shared_k1/run-seed1"):
        import shutil

        shutil.rmtree(run_dir)
    data = study.study([known_study], tmp_path / "out")
    assert data["cap_warnings"] == []
    assert "Cap rule held" in (tmp_path / "out" / "study.md").read_text()


def test_an_incomplete_run_is_named_with_how_far_it_got_and_the_cap_rule_still_reported(known_study, tmp_path):
    import shutil

    from benchmark.training.state import INCOMPLETE

    shutil.rmtree(next(known_study.rglob("shared_k1/run-seed1")))  # the caps now hold
    cut = _write_run(tmp_path / "cut", "recurrent", 3, None, 70, [0.1] * 6)
    (cut / "eval.json").unlink()  # an interrupted run has its training record and marker, no eval.json
    write_text(cut / INCOMPLETE, "interrupted\n")
    data = study.study([known_study, tmp_path / "cut"], tmp_path / "out")
    expected = (f"note: incomplete run left out of the tables (interrupted, diverged or crashed; resume=<it> continues it): "
                f"{cut} (70 steps, last probe accuracy 50.0%).")
    assert data["cap_warnings"] == [expected]
    assert {r["model"]: r["runs"] for r in data["speed"]}["recurrent"] == 3  # seed 3 is in no table
    md = (tmp_path / "out" / "study.md").read_text().splitlines()
    assert expected in md and any(line.startswith("Cap rule held") for line in md)


def test_paired_comparisons_at_equal_depth(known_study, tmp_path):
    data = study.study([known_study], tmp_path / "out")
    pairs = {(c["model"], c["baseline"]): c for c in data["comparisons"]}
    assert set(pairs) == {("depth_k2", "feedforward"), ("shared_k1", "recurrent")}
    # depth_k2 median 30 vs 60 steps, 3 vs 6 seconds; per seed 20/40 and 30/60, seed 2 missed.
    deep = pairs[("depth_k2", "feedforward")]
    assert (deep["steps_ratio"], deep["seconds_ratio"], deep["seed_steps_ratios"]) == (0.5, 0.5, {"0": 0.5, "1": 0.5, "2": None})
    assert deep["seeds"] == [0, 1, 2]
    block = pairs[("shared_k1", "recurrent")]
    assert block["steps_ratio"] is None and block["seed_steps_ratios"] == {"0": 5.0, "1": None, "2": None}
    md = (tmp_path / "out" / "study.md").read_text()
    assert "| prefix_sums | depth_k2 | feedforward | 3 | 0 1 2 | 0.50 | 0.50 | 0: 0.50 1: 0.50 2: - |" in md


def test_loops_fold_changes_and_paired_cosines(known_study, tmp_path):
    data = study.study([known_study], tmp_path / "out")
    loops = {r["seed"]: r for r in data["loops"]}
    assert [loops[s]["loops"] for s in (0, 1, 2)] == ["0-1", "0-2", "0-1"]
    assert loops[0]["loop_members"] == [[0, 1], [2]]
    assert [loops[s]["loop_positions"] for s in (0, 1, 2)] == [2, 3, 2]
    assert [loops[s]["paired_cos"] for s in (0, 1, 2)] == pytest.approx([0.5, 1.0, 0.5])
    assert loops[0]["fold_delta_points"] == pytest.approx(-0.05) and loops[1]["fold_delta_points"] == 0.0
    md = (tmp_path / "out" / "study.md").read_text()
    assert "| prefix_sums | depth_k2 | 0 | 0-1 | 2 | 2/3 | 12 → 8 | 400 → 300 | -0.050 | 0.500 |" in md
    (summary,) = data["loop_summary"]
    assert summary["loop_positions_mean"] == pytest.approx(7 / 3) and summary["paired_cos_mean"] == pytest.approx(2 / 3)
    assert summary["paired_cos_sd"] == pytest.approx(math.sqrt(1 / 12)) and summary["max_abs_fold_delta_points"] == pytest.approx(0.05)
    assert (summary["folded_best_mean"], summary["folded_last_mean"], summary["size"]) == (pytest.approx(0.8), pytest.approx(0.8), TEST)


def test_extrapolation_beside_the_unfolded_model_and_hard_recurrence_of_the_same_seed(known_study, tmp_path):
    study.study([known_study], tmp_path / "out")
    md = (tmp_path / "out" / "study.md").read_text()
    assert "| prefix_sums | 8 | depth_k2 | 0 | 60.0 @4 / 30.0 @6 | 80.0 @5 / 80.0 @6 | 60.0 @3 / 50.0 @6 |" in md


def test_claims_table_numbers(known_study, tmp_path):
    data = study.study([known_study], tmp_path / "out")
    claims = {(c["claim"], c["comparison"]): c for c in data["claims"]}
    assert claims[("fewer parameters at equal accuracy", "depth_k2 vs feedforward")]["numbers"] == (
        "400 vs 1,000 parameters (60% fewer); training size at training depth 100.0 ± 0.0 vs 100.0 ± 0.0 %")
    assert claims[("trains faster", "depth_k2 vs feedforward")]["numbers"] == (
        "median steps to 0.9 30 vs 60 (ratio 0.50), median seconds 3 vs 6 (ratio 0.50); reached 2/3 vs 3/3")
    recurrent = claims[("becomes recurrent and extrapolates better", "depth_k2 folded vs recurrent")]
    assert recurrent["numbers"] == ("2.3 positions in loops, max abs fold change 0.050 points (goal <= 0.05); best on size 8: "
                                    "folded 80.0 ± 0.0 %; hard recurrence 60.0 ± 0.0 % (seeds 0 1 2)")
    assert recurrent["seeds"] == [0, 1, 2]
    assert "| task | claim | comparison | numbers | seeds |" in (tmp_path / "out" / "study.md").read_text()


def test_the_command_writes_its_files_and_refuses_an_empty_folder(known_study, tmp_path, capsys):
    study.main([str(known_study)])
    assert {"study.md", "study.json", "study.png", "study_training.png"} <= {p.name for p in known_study.iterdir()}
    json.loads((known_study / "study.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in strict JSON"))
    capsys.readouterr()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        study.main([str(empty)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no finished puzzle run directories") and not list(empty.iterdir())


def test_censored_median_counts_a_miss_as_slowest():
    assert study.censored_median([30, None, 10]) == 30
    assert study.censored_median([30, None, None]) == math.inf
    assert study.censored_median([10, 20, 30, 40]) == 25


# ---------------------------------------------------------------------------- tiny real runs
@pytest.fixture(scope="module")
def real_study(tmp_path_factory):
    """One seed of four models trained for seconds on 6-bit prefix sums, the way a multirun leaves them."""
    from hydra import compose, initialize_config_module

    from benchmark.pipelines.algorithmic import run

    root = tmp_path_factory.mktemp("real_study")
    with initialize_config_module(config_module="configs", version_base="1.3"):
        for model in ("feedforward", "recurrent", "depth_k2", "depth_k2_loopreg"):
            depth = ["model.depth=3"] if model != "recurrent" else []
            run(compose("config", overrides=[
                f"results_dir={root}", f"cache_dir={root / 'cache'}", "task=prefix_sums", "size.train=6", "size.test=[8]",
                "size.n_train=128", "size.n_test=16", "train.epochs=6", "train.batch_size=16", "train.lr=0.01", "train.iters=3",
                "train.warmup_steps=2", "train.log_every=4", "train.stop_at_acc=0.1", "train.probe_size=32", "eval.iters=5",
                "progress=false", "precision=fp32", f"model={model}", "model.width=8", *depth]))
    return root


def test_the_study_reads_what_runs_write(real_study, tmp_path):
    from benchmark.infra.checkpoint import load_checkpoint
    from benchmark.training.loop_regulariser import loop_similarity

    data = study.study([real_study], tmp_path)
    assert {r["model"]: r["kind"] for r in data["speed"]} == {"feedforward": "unshared", "recurrent": "recurrent",
                                                             "depth_k2": "depth-wise", "depth_k2_loopreg": "depth-wise"}
    for row in data["loops"]:
        run_dir = Path(row["run"])
        fold = FoldResult.read(run_dir / "fold.json")
        assert row["num_loops"] == fold.report.num_loops and row["positions"] == 3
        # The paired |cos| read from lsm.json is the regulariser's own measure of the trained model.
        model, _ = load_checkpoint(run_dir / "model.pt")
        assert row["paired_cos"] == pytest.approx(loop_similarity(model), abs=1e-6)
    for row in data["speed"]:
        metrics = [json.loads(line) for line in next(real_study.rglob(f"{row['model']}/*/metrics.jsonl")).read_text().splitlines()]
        hit = next((m["step"] for m in metrics if m["probe_acc"] >= 0.1), None)
        assert row["steps_median"] == hit and row["cap"] == 6 * 128 // 16
    assert {(c["model"], c["baseline"]) for c in data["comparisons"]} == {("depth_k2", "feedforward"),
                                                                          ("depth_k2_loopreg", "feedforward")}


def test_the_figure_draws_folded_depthwise_models_beside_recurrence_on_the_biggest_size(known_study):
    runs = study.read_study([known_study])
    curves = study.study_curves(runs)
    assert sorted(curves["model"].unique()) == ["depth_k2 (folded)", "recurrent", "shared_k1"]  # no feed-forward
    assert set(curves["size"]) == {TEST} and set(curves["train_iters"]) == {ITERS}
    folded = curves[(curves["model"] == "depth_k2 (folded)") & (curves["seed"] == 0)].sort_values("iteration")
    assert folded["accuracy"].tolist() == [0.0, 0.1, 0.5, 0.7, 0.8, 0.8]  # the fold's evaluation, not the original's


def test_the_training_figure_draws_every_runs_probe_records(known_study, monkeypatch, tmp_path):
    from benchmark.analysis import plots as plot

    runs = study.read_study([known_study])
    frame = study.training_curves(runs)
    assert len(frame) == sum(len(plot.read_metrics(r.run_dir)) for r in runs)  # every record of every run
    first = min(runs, key=lambda r: (r.model, r.seed))
    mine = frame[(frame["model"] == first.model) & (frame["seed"] == first.seed)]
    assert mine["probe_acc"].tolist() == [m["probe_acc"] for m in plot.read_metrics(first.run_dir)]
    drawn = {}
    monkeypatch.setattr(plot, "save_figure", lambda fig, path: drawn.setdefault("fig", fig) and path)
    plot.plot_study_training(frame, tmp_path / "t.png")
    (ax,) = drawn["fig"].axes
    run_lines = [line for line in ax.get_lines() if line.get_linestyle() == "-" and len(line.get_xdata()) > 0]
    assert len(run_lines) == len(runs)  # one line per run, not a mean over seeds
    assert {tuple(line.get_ydata()) for line in ax.get_lines() if line.get_linestyle() == "--"} == {(0.9, 0.9)}


def test_a_task_at_two_size_settings_is_two_studies_and_repeated_seeds_are_noted(known_study, tmp_path):
    other = tmp_path / "other"
    _write_run(other, "recurrent", 0, 10, 10, [0.2, 0.4, 0.6, 0.6, 0.5, 0.5])
    config = next(other.rglob("config.yaml"))
    cfg = OmegaConf.load(config)
    cfg.size.train, cfg.size.test = TRAIN, [TEST, 16]
    write_text(config, OmegaConf.to_yaml(cfg))
    data = study.study([known_study, other], tmp_path / "out")
    assert {r["task"] for r in data["speed"]} == {"prefix_sums train6_test8", "prefix_sums train6_test8-16"}
    assert not any(line.startswith("note:") for line in data["cap_warnings"])
    _write_run(tmp_path / "again", "recurrent", 0, 10, 10, [0.2, 0.4, 0.6, 0.6, 0.5, 0.5])
    data = study.study([known_study, tmp_path / "again"], tmp_path / "out")
    assert data["cap_warnings"][-1] == ("note: prefix_sums / recurrent seed 0 has 2 runs; the tables count each, "
                                        "pairings by seed use the last.")


def test_step_costs_time_each_models_own_training_step_side_by_side(real_study, tmp_path, monkeypatch):
    """``--step-cost``: one row per (task, model), each a median of its repeats, and the study's
    seconds-to-target at that cost = median steps to target x seconds per step."""
    runs = study.read_study([real_study])
    calls = []
    real = step_cost.time.perf_counter
    monkeypatch.setattr(step_cost.time, "perf_counter", lambda: calls.append(1) or real())
    import benchmark.training.step as step_module

    stepped, real_step = [], step_module.train_step
    monkeypatch.setattr(step_module, "train_step", lambda *a, **k: stepped.append(1) or real_step(*a, **k))
    costs = study.step_costs(runs, steps=2, repeats=3)
    assert len(stepped) == 4 * (1 + 2 * 3)  # each model: a warm-up step, then 2 steps in each of 3 rounds: the one step
    assert sorted(costs["model"]) == ["depth_k2", "depth_k2_loopreg", "feedforward", "recurrent"]
    assert len(calls) == 2 * 3 * 4  # a start and an end per measurement: 3 rounds of 4 models
    for row in costs.itertuples():
        assert len(row.repeats) == 3 and row.seconds_per_step == pytest.approx(float(np.median(row.repeats)))
        assert row.seconds_per_step > 0 and row.threads == 1
    table = study.step_cost_markdown(costs, study.speed_table(runs))
    speed = study.speed_table(runs).set_index("model")
    for row in costs.itertuples():
        median = speed.loc[row.model, "steps_median"]
        expected = f"{median * row.seconds_per_step:.0f}" if np.isfinite(median) else "> cap"
        assert f"| {row.model} | {row.seconds_per_step:.3f} |" in table and expected in table
    with pytest.raises(SystemExit) as exit_info:
        study.main([str(real_study), "--out", str(tmp_path), "--step-cost", "-1"])
    assert exit_info.value.code == 2 and not (tmp_path / "study.md").exists()
