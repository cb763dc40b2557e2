"""``python -m benchmark.evaluate RUN --splits ...`` (benchmark.evaluation.ladder): a checkpoint on
a ladder of frozen splits, one JSON and two plots through RunDir; splits scored exactly as their
data is scored elsewhere; an external .npz joins the ladder; bad names are one sentence, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from benchmark.evaluation.extrapolation import main as evaluate_main
from benchmark.evaluation.extrapolation import settle_and_score
from benchmark.evaluation.splits import load_manifest
from benchmark.infra.checkpoint import save_checkpoint
from benchmark.infra.ladder import LadderResult
from benchmark.infra.results import ResultFormatError
from benchmark.infra.rundir import RunDir
from benchmark.models.recurrent import RecurrentConvNet
from tasks.maze import MazeTask

MAZE = {"_target_": "tasks.maze.MazeTask", "rendering": "compact"}


def _make_run(run_dir: Path, task_cfg: dict = MAZE) -> RecurrentConvNet:
    """A run directory as a run leaves it (model.pt, config.yaml) with an untrained tiny model."""
    run_dir.mkdir(parents=True)
    model_cfg = {"_target_": "benchmark.models.recurrent.RecurrentConvNet", "name": "shared", "width": 4, "depth": 1}
    torch.manual_seed(0)
    model = RecurrentConvNet(MazeTask.spec, name="shared", width=4, depth=1)
    save_checkpoint(model, OmegaConf.create({"model": model_cfg, "task": task_cfg}), run_dir / "model.pt")
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "task": task_cfg, "model": model_cfg, "train": {"iters": 2}}))
    return model.eval()


def _evaluate(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        evaluate_main([*argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_ladder_is_one_json_and_two_plots_with_the_splits_own_scores(tmp_path, capsys):
    run = tmp_path / "run"
    model = _make_run(run)
    external = tmp_path / "other.npz"
    inputs, targets = MazeTask(generator="kruskal").generate(9, 5, seed=1)
    np.savez(external, inputs=inputs, targets=targets)
    code, out, err = _evaluate(capsys, str(run), "--splits", "maze_dfs_13", "maze_loops", str(external),
                               "--n", "3", "--iters", "4", "--halt", "2")
    assert code == 0, err
    stem = "maze_dfs_13-maze_loops-data-other-"
    written = sorted(p.name for p in run.iterdir() if p.name.startswith("ladder_"))
    assert len(written) == 3 and all(stem in name and "_iters4_n3_halt2" in name for name in written)
    assert {n.rsplit("halt2", 1)[1] for n in written} == {".json", ".png", "_curves.png"}
    json_path = next(run / n for n in written if n.endswith(".json"))
    result = LadderResult.read(json_path)
    assert [s.name for s in result.splits][:3] == ["maze_dfs_13", "maze_loops10_15", "maze_loops10_33"]
    assert result.halt_after == 2 and result.iterations == 4 and result.train_iters == 2
    # Each split's curve is settle_and_score of its first n samples, generated from the manifest.
    manifest = load_manifest()
    split = manifest.splits["maze_loops10_15"]
    curve, _ = settle_and_score(model, split.make_task(), split.dataset(3), 4, 100, torch.device("cpu"), 2)
    score = next(s for s in result.splits if s.name == "maze_loops10_15")
    assert score.accuracy == tuple(curve) and score.samples == 3 and score.sha256 == split.sha256
    assert score.options["percolation"] == 0.1 and score.options["generator"] == "dfs"
    file_score = result.splits[-1]
    assert file_score.source == "file" and file_score.size == 9 and file_score.samples == 3 and file_score.seed is None
    # The file reads back byte for byte, and a file whose summary disagrees with its curves is refused.
    before = json_path.read_bytes()
    result.write(json_path)
    assert json_path.read_bytes() == before
    json_path.write_text(before.decode().replace('"chosen_iteration": 4', '"chosen_iteration": 3'))
    with pytest.raises(ResultFormatError):
        LadderResult.read(json_path)
    assert "maze_dfs_13" in out and "accuracy at iteration 4" in out


def test_ladder_defaults_and_optional_splits(tmp_path, capsys):
    run = tmp_path / "run"
    _make_run(run)
    code, _, err = _evaluate(capsys, str(run), "--splits", "maze_dfs_13", "--iters", "3")
    assert code == 0, err
    result = RunDir(run).read_ladder("maze_dfs_13_iters3_n50_halt20")
    assert result.splits[0].samples == 50 and result.halt_after == 20


@pytest.mark.parametrize("argv, message", [
    (["--splits", "maze_bogus"], "'maze_bogus' is neither a ladder"),
    (["--splits", "prefix_sums"], "is a prefix_sums split but"),
    (["--splits", "maze_ood", "--fold"], "--fold belong with --sizes or --data"),
    (["--splits", "maze_ood", "--n", "0"], "--n must be a positive integer"),
    (["--splits", "maze_ood", "--halt", "-1"], "--halt must be an integer >= 0"),
    (["--splits", "maze_ood", "--sizes", "9"], "not allowed with argument"),
    (["--splits", "maze_ood", "missing.npz"], "missing.npz"),
    (["--splits", "maze_ood", "x.npz", "--validation"], "an .npz file has no seed"),
    (["--sizes", "9", "--validation"], "--validation belongs with --splits"),
])
def test_bad_ladders_are_one_sentence_and_write_nothing(tmp_path, capsys, argv, message):
    run = tmp_path / "run"
    _make_run(run)
    before = sorted(p.name for p in run.iterdir())
    code, _, err = _evaluate(capsys, str(run), *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in run.iterdir()) == before


def test_validation_ladders_draw_the_same_axes_from_other_seeds(tmp_path, capsys):
    """``--validation``: every split again from VALIDATION_SEED_BASE + its seed (same task, options,
    size), in a file of its own; no seed of it is a frozen split's or any run's."""
    from benchmark.config.schema import SEED_MAX, VALIDATION_SEED_BASE

    manifest = load_manifest()
    frozen = {s.seed for s in manifest.splits.values()}
    for split in manifest.splits.values():
        val = split.validation()
        assert val.seed > VALIDATION_SEED_BASE + SEED_MAX and val.seed not in frozen and val.sha256 is None
        assert (val.task, dict(val.options), val.size, val.n) == (split.task, dict(split.options), split.size, split.n)
    run = tmp_path / "run"
    _make_run(run)
    code, _, err = _evaluate(capsys, str(run), "--splits", "maze_prim_13", "--validation", "--n", "3", "--iters", "2")
    assert code == 0, err
    result = RunDir(run).read_ladder("maze_prim_13_validation_iters2_n3_halt20")
    split = manifest.splits["maze_prim_13"]
    assert result.splits[0].seed == VALIDATION_SEED_BASE + split.seed and result.splits[0].sha256 is None
    val_inputs, _ = split.validation().generate(3)
    test_inputs, _ = split.generate(3)
    assert not any(np.array_equal(a, b) for a in val_inputs for b in test_inputs)


def test_a_ladder_of_many_names_gets_a_short_file_name(tmp_path, capsys):
    run = tmp_path / "run"
    _make_run(run)
    names = [f"maze_{g}_{z}" for g in ("dfs", "kruskal", "wilson", "prim", "division") for z in (13, 15)]
    code, _, err = _evaluate(capsys, str(run), "--splits", *names, "--n", "1", "--iters", "1")
    assert code == 0, err
    (written,) = [p for p in run.glob("ladder_*.json")]
    assert written.name.startswith("ladder_10-splits-") and len(written.name) < 80
    assert [s.name for s in LadderResult.read(written).splits] == names


def test_a_split_of_another_rendering_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    _make_run(run, {"_target_": "tasks.maze.MazeTask", "rendering": "e2h"})
    code, _, err = _evaluate(capsys, str(run), "--splits", "maze_dfs_13")
    assert code == 2 and "rendering=compact but the run was trained with rendering=e2h" in err


def test_the_seeds_table_averages_runs_of_one_ladder(tmp_path, capsys):
    """``python -m benchmark.analysis.ladder_plots``: mean ± sd over runs; two copies of one run
    give its own accuracies with sd 0; results of different ladders are refused in one sentence."""
    import dataclasses

    from benchmark.analysis import ladder_plots
    from benchmark.infra.ladder import LadderResult

    path = Path(__file__).resolve().parents[1] / "results/reference/ood/maze_ood_reference_shared.json"
    result = LadderResult.read(path)
    table = ladder_plots.ladder_seeds_markdown([result, result]).splitlines()
    assert table[0] == "| generator | 13x13 | 15x15 | 33x33 | 59x59 |"
    prim = next(line for line in table if line.startswith("| prim |"))
    expected = [f"{100 * result.table()['prim'][size]:.1f} ± 0.0" for size in (13, 15, 33, 59)]
    assert prim == "| prim | " + " | ".join(expected) + " |"
    with pytest.raises(ValueError, match="one ladder"):
        ladder_plots.ladder_seeds_markdown([result, dataclasses.replace(result, ladder="maze_loops")])
    ladder_plots.main([str(path), str(path), "--out", str(tmp_path / "seeds.md")])
    assert (tmp_path / "seeds.md").read_text().splitlines() == table


def test_the_recipes_table_puts_recipes_side_by_side(tmp_path, capsys):
    """``--recipe NAME FILE ...`` (repeated): a row per recipe and ladder row, the columns asked
    for, each recipe's own mean ± sd; a nameless or repeated recipe, or files and recipes mixed,
    is one line and exit status 2; recipes of different ladders are refused."""
    import dataclasses

    from benchmark.analysis import ladder_plots
    from benchmark.infra.ladder import LadderResult

    path = Path(__file__).resolve().parents[1] / "results/reference/ood/maze_ood_reference_shared.json"
    result = LadderResult.read(path)
    lowered = dataclasses.replace(result, splits=[dataclasses.replace(s, accuracy=[0.0] * len(s.accuracy)) for s in result.splits])
    lines = ladder_plots.ladder_recipes_markdown({"new": [result, lowered], "old": [result]}, [15, 59]).splitlines()
    assert lines[0] == "| recipe | generator | 15x15 | 59x59 |"
    assert len(lines) == 2 + 2 * len(result.table())
    table = result.table()
    mean_sd = lambda x: f"{50 * x:.1f} ± {100 * (x * x / 2) ** 0.5:.1f}"  # noqa: E731  (x and 0: mean x/2, sd x/sqrt 2)
    assert lines[2] == f"| new (2 seeds) | dfs | {mean_sd(table['dfs'][15])} | {mean_sd(table['dfs'][59])} |"
    old = lines.index(next(line for line in lines if line.startswith("| old")))
    assert lines[old] == f"| old (1 seed) | dfs | {100 * table['dfs'][15]:.1f} ± 0.0 | {100 * table['dfs'][59]:.1f} ± 0.0 |"
    with pytest.raises(ValueError, match="one ladder"):
        ladder_plots.ladder_recipes_markdown({"a": [result], "b": [dataclasses.replace(result, ladder="maze_loops")]})
    out = tmp_path / "recipes.md"
    ladder_plots.main(["--recipe", "new", str(path), "--recipe", "old", str(path), "--sizes", "15", "59", "--out", str(out)])
    assert out.read_text().splitlines()[0] == "| recipe | generator | 15x15 | 59x59 |"
    for argv in (["--recipe", "a", str(path), "--recipe", "a", str(path)], ["--recipe", "a"], [str(path), "--recipe", "a", str(path)], []):
        with pytest.raises(SystemExit) as stop:
            ladder_plots.main(argv)
        assert stop.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_settled_table_says_how_each_runs_answers_ended(tmp_path, capsys):
    """``--settled FILE ...``: a row per run and ladder row, the accuracy at the chosen iteration
    and the samples that never settled or settled into a 2-cycle (counts straight from the file);
    ladders scored without halting, and --settled with --recipe, are refused."""
    import dataclasses

    from benchmark.analysis import ladder_plots

    path = Path(__file__).resolve().parents[1] / "results/reference/ood/maze_ood_reference_shared.json"
    read = LadderResult.read(path)
    assert read.splits[-1].settled == {"fixed": 20, "2-cycle": 1, "none": 29}  # the file's own counts (division 59x59)
    # Every sample settled to a fixed point, then one split with all three kinds.
    result = dataclasses.replace(read, splits=tuple(dataclasses.replace(s, settled={"fixed": s.samples, "2-cycle": 0, "none": 0})
                                                    for s in read.splits))
    prim = next(i for i, s in enumerate(result.splits) if s.options["generator"] == "prim" and s.size == 59)
    splits = list(result.splits)
    splits[prim] = dataclasses.replace(splits[prim], settled={"fixed": 46, "2-cycle": 1, "none": 3})
    other = dataclasses.replace(result, run="results/maze/x/shared/other-seed1", splits=tuple(splits))
    lines = ladder_plots.ladder_settled_markdown([result, other], [15, 59]).splitlines()
    assert lines[0] == "| run | generator | 15x15 | 59x59 |"
    assert len(lines) == 2 + 2 * len(result.table())
    table = result.table()
    first = f"| {Path(result.run).name} | dfs | {100 * table['dfs'][15]:.0f}% | {100 * table['dfs'][59]:.0f}% |"
    assert lines[2] == first
    second = [line for line in lines if "| prim |" in line][1]
    assert second.endswith(f"| {100 * table['prim'][59]:.0f}% (3 unsettled, 1 in 2-cycles) |")
    assert lines[2 + len(table)].startswith("| other-seed1 | dfs |")
    with pytest.raises(ValueError, match="halting"):
        ladder_plots.ladder_settled_markdown([dataclasses.replace(result, halt_after=0)])
    out = tmp_path / "settled.md"
    ladder_plots.main(["--settled", str(path), "--sizes", "15", "59", "--out", str(out)])
    assert out.read_text() == ladder_plots.ladder_settled_markdown([read], [15, 59])
    assert out.read_text().splitlines()[-1].endswith("% (29 unsettled, 1 in 2-cycles) |")
    with pytest.raises(SystemExit) as stop:
        ladder_plots.main(["--settled", "--recipe", "a", str(path)])
    assert stop.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
