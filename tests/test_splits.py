"""The frozen test splits (configs/splits.yaml, benchmark.evaluation.splits): the cheap ones are
regenerated and compared with the manifest's sha256, so a generator whose bytes change without the
manifest being rewritten (``python -m benchmark.evaluation.splits --write``) fails here; every
split is valid; the manifest's tools refuse what they should."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmark.config.schema import SEED_MAX, ConfigError, data_seeds
from benchmark.evaluation import splits as sp
from tasks.base import _checksum

REPO = Path(__file__).resolve().parents[1]
MANIFEST = sp.load_manifest()

# At least one split per generator at 13 or 15, loops, dead-end start, prefix sums, shortest paths.
CHEAP = ["maze_dfs_15", "maze_kruskal_13", "maze_wilson_15", "maze_prim_13", "maze_division_15",
         "maze_loops10_15", "maze_dead_end_15", "prefix_sums_128", "shortest_path_unit_12"]


@pytest.mark.parametrize("name", CHEAP)
def test_cheap_splits_match_the_manifest(name):
    split = MANIFEST.splits[name]
    assert split.sha256 is not None and split.digest() == split.sha256, (
        f"{name} no longer generates the data its manifest records: if the change is meant, "
        f"run python -m benchmark.evaluation.splits --write and commit configs/splits.yaml.")


def test_the_first_m_samples_are_a_prefix_of_the_split():
    split = MANIFEST.splits["maze_prim_13"]
    inputs, targets = split.generate()
    few_inputs, few_targets = split.generate(7)
    assert (few_inputs == inputs[:7]).all() and (few_targets == targets[:7]).all()
    assert len(split.dataset(5000)) == split.n  # capped at the split's count


def test_every_split_is_valid_and_every_non_optional_one_is_hashed():
    assert MANIFEST.splits and MANIFEST.ladders
    for split in MANIFEST.splits.values():
        task = split.check()  # options validate, the size is accepted, seed above every run's data seeds
        assert task.name == split.task
        assert split.optional or split.sha256 is not None, f"{split.name} has no sha256"
    largest_run_seed = max(data_seeds(SEED_MAX))
    assert min(s.seed for s in MANIFEST.splits.values()) > largest_run_seed


def test_the_ladders_cover_the_standard_axes():
    ladders = MANIFEST.ladders
    assert set(ladders) == {"maze_ood", "maze_loops", "maze_dead_end", "prefix_sums", "shortest_path_unit"}
    ood = [MANIFEST.splits[s] for s in ladders["maze_ood"]]
    grid = {(s.options["generator"], s.size): s.optional for s in ood}
    generators = ("dfs", "kruskal", "wilson", "prim", "division")
    assert set(grid) == {(g, size) for g in generators for size in (13, 15, 33, 59, 99)}
    assert all(grid[(g, size)] == (size == 99) for g, size in grid)
    assert {s.options["percolation"] for s in map(MANIFEST.splits.get, ladders["maze_loops"])} == {0.1}
    assert {s.options["start"] for s in map(MANIFEST.splits.get, ladders["maze_dead_end"])} == {"dead_end"}
    assert [MANIFEST.splits[s].size for s in ladders["prefix_sums"]] == [32, 64, 128, 512, 1024, 4096]
    assert [MANIFEST.splits[s].size for s in ladders["shortest_path_unit"]] == [12, 16, 24, 32]
    # The unit shortest-path splits use exactly the options of task=shortest_path_unit.
    config = yaml.safe_load((REPO / "configs" / "task" / "shortest_path_unit.yaml").read_text())
    options = {k: v for k, v in config.items() if k not in ("defaults", "_target_")}
    assert all(MANIFEST.splits[s].options == options for s in ladders["shortest_path_unit"])


def test_a_ladder_leaves_its_optional_splits_out_unless_asked():
    names = [s.name for s in MANIFEST.resolve(["maze_ood"])]
    assert len(names) == 20 and not any(n.endswith("_99") for n in names)
    assert len(MANIFEST.resolve(["maze_ood"], optional=True)) == 25
    assert [s.name for s in MANIFEST.resolve(["maze_dfs_99", "maze_dfs_13", "maze_dfs_99"])] == ["maze_dfs_99", "maze_dfs_13"]
    with pytest.raises(ConfigError, match="'maze_bogus' is neither a ladder"):
        MANIFEST.resolve(["maze_bogus"])


def test_write_and_check_round_trip(tmp_path, capsys):
    text = (REPO / "configs" / "splits.yaml").read_text()  # the prefix-sums part only: cheap
    manifest = tmp_path / "splits.yaml"
    kept = "\n".join(line for line in text.splitlines() if "maze_" not in line and "shortest" not in line)
    manifest.write_text(kept.replace("sha256: " + MANIFEST.splits["prefix_sums_32"].sha256, "sha256: null") + "\n")
    assert sp.run(["--check", "--manifest", str(manifest), "prefix_sums_32"]) == 0  # nothing recorded: skipped, not wrong
    assert sp.run(["--write", "--manifest", str(manifest), "prefix_sums"]) == 0
    written = sp.load_manifest(manifest)
    assert written.splits["prefix_sums_32"].sha256 == MANIFEST.splits["prefix_sums_32"].sha256
    assert "# Frozen test splits" in manifest.read_text()  # comments kept
    assert sp.run(["--check", "--manifest", str(manifest)]) == 0
    seed = MANIFEST.splits["prefix_sums_32"].seed
    manifest.write_text(manifest.read_text().replace(f"seed: {seed},", "seed: 9000000999,"))
    assert sp.run(["--check", "--manifest", str(manifest), "prefix_sums_32"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


@pytest.mark.parametrize("line, message", [
    ("  bad: {task: maze, options: {generator: bogus}, size: 15, n: 10, seed: 9000000999}", "generator"),
    ("  bad: {task: maze, options: {}, size: 14, n: 10, seed: 9000000999}", "odd integer"),
    ("  bad: {task: prefix_sums, options: {}, size: 32, n: 10, seed: 5}", "seed must be an integer above"),
    ("  bad: {task: prefix_sums, options: {}, size: 32, n: 0, seed: 9000000999}", "n must be a positive"),
    ("  bad: {task: nosuchtask, options: {}, size: 32, n: 1, seed: 9000000999}", "unknown task"),
])
def test_invalid_splits_are_refused_in_one_sentence(tmp_path, line, message):
    manifest = tmp_path / "splits.yaml"
    manifest.write_text("ladders: {}\nsplits:\n" + line + "\n")
    with pytest.raises(ConfigError, match=message):
        sp.load_manifest(manifest).splits["bad"].check()


def test_the_checksum_is_the_dataset_caches():
    split = MANIFEST.splits["prefix_sums_32"]
    assert split.digest() == _checksum(*split.make_task().generate(split.size, split.n, split.seed))
