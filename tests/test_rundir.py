"""RunDir: the one type that owns a run directory's file names, writers and readers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark.infra.results import ResultFormatError
from benchmark.infra.rundir import MetricsRecord, RunDir, finished_runs, incomplete_runs

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "reference"


def test_committed_metrics_read_and_write_back_byte_for_byte(tmp_path):
    files = sorted(REFERENCE.rglob(RunDir.METRICS))[:20]
    assert files, "the reference results hold metrics files"
    for path in files:
        records = RunDir(path.parent).read_metrics()
        assert records and all(isinstance(r, MetricsRecord) for r in records)
        out = RunDir(tmp_path / path.parent.name)
        out.path.mkdir(exist_ok=True)
        out.write_metrics(r.to_json() for r in records)
        assert out.metrics.read_bytes() == path.read_bytes()


def test_committed_configs_read_as_plain_data():
    configs = sorted(REFERENCE.rglob(RunDir.CONFIG))[:20]
    assert configs
    for path in configs:
        cfg = RunDir(path.parent).read_config()
        assert isinstance(cfg["task"], dict) and isinstance(cfg["seed"], int)


@pytest.mark.parametrize("line, fragment", [
    ('{"step": 1, "epoch": 1, "loss": NaN}', "finite"),
    ('{"step": -1, "epoch": 1}', "step"),
    ('{"step": 1, "epoch": true}', "epoch"),
    ('{"epoch": 1}', "step"),
    ('{"step": 1, "epoch": 1, "loss": "low"}', "loss"),
    ("[1, 2]", "JSON object"),
    ("{not json", "JSON object"),
])
def test_damaged_metrics_are_one_sentence(tmp_path, line, fragment):
    run = RunDir(tmp_path)
    run.metrics.write_text('{"step": 0, "epoch": 0, "loss": 1.0}\n' + line + "\n")
    with pytest.raises(ResultFormatError, match=fragment) as err:
        run.read_metrics()
    assert "line 2" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["", "- a list\n", "key: [unclosed\n", b"\xff\xfe"])
def test_damaged_config_is_one_sentence(tmp_path, text):
    run = RunDir(tmp_path)
    (run.config.write_bytes if isinstance(text, bytes) else run.config.write_text)(text)
    with pytest.raises(ResultFormatError) as err:
        run.read_config()
    assert str(run.config) in str(err.value) and "\n" not in str(err.value)


def test_missing_config_is_one_sentence(tmp_path):
    with pytest.raises(ResultFormatError, match="cannot read"):
        RunDir(tmp_path).read_config()


def test_finished_and_incomplete_runs(tmp_path):
    done, broken, bare = RunDir(tmp_path / "a"), RunDir(tmp_path / "b"), RunDir(tmp_path / "c")
    for run in (done, broken, bare):
        run.path.mkdir()
    source = next(REFERENCE.rglob(RunDir.EVAL))
    done.eval.write_bytes(source.read_bytes())
    broken.eval.write_bytes(source.read_bytes())
    broken.mark_incomplete("not finished")
    assert [r.path for r in finished_runs([tmp_path])] == [done.path]
    assert [r.path for r in incomplete_runs([tmp_path])] == [broken.path]
    assert broken.is_incomplete() and not broken.is_finished() and done.is_finished()
    broken.mark_complete()
    assert [r.path for r in finished_runs([tmp_path])] == [done.path, broken.path]


def test_no_other_module_spells_a_run_file_name():
    """File names live in RunDir alone (the typed results name them only in their error messages)."""
    names = "|".join(re.escape(n) for n in ("config.yaml", "metrics.jsonl", "eval.json", "fold.json", "model.pt",
                                          "lsm.json", "train_state.pt"))
    literal = re.compile(rf"""(?<![\w*])["']({names})["']""")
    offenders = []
    for path in sorted((ROOT / "benchmark").rglob("*.py")):
        if path.name in ("rundir.py", "results.py", "fold_results.py", "classification_results.py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if literal.search(code):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
