"""``python -m benchmark.bench``: the JSON it writes and the ratios it derives (never a duration)."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict

import pytest
import torch

from benchmark.infra import precision
from benchmark.devtools.bench import BASELINE, MEMORY_SETTINGS, QUICK, Setting, default_checkpoint, halting_name, main, markdown, ratios, settings

BF16 = precision.resolve("auto", torch.device("cpu")) == "bf16"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    report = main(["--quick", "--out", str(out)])
    return report, json.loads(out.read_text())


def test_quick_bench_writes_the_report_with_the_machine(quick):
    report, written = quick
    assert written["command"] == f"python -m benchmark.bench --quick --out {report['command'].split('--out ')[1]}"
    machine = written["machine"]
    assert set(machine) >= {"cpu", "cores", "torch", "python", "threads", "device", "load_average_1min"}
    assert machine["torch"] == torch.__version__ and machine["threads"] == 1 and machine["device"] == "cpu"
    assert machine["cpu"] and machine["cores"] >= 1
    assert written["scale"] == json.loads(json.dumps(asdict(QUICK)))
    assert [s["name"] for s in written["settings"]] == [s.name for s in settings(QUICK, BF16)] == list(written["results"])
    assert written["bf16_native"] == BF16 and written["checkpoint"] == str(default_checkpoint())


def test_bf16_rows_appear_only_where_bf16_is_native_and_compare_with_fp32():
    assert not any(s.precision == "bf16" for s in settings(QUICK, bf16=False))
    rows = {s.name: s for s in settings(QUICK, bf16=True)}
    for name, fp32 in (("recurrent, now, bf16", "recurrent, now"), ("shared k=2, now, bf16", "shared k=2, now")):
        assert rows[name].precision == "bf16" and rows[name].versus == fp32 and rows[fp32].precision == "fp32"
        assert rows[name].train_key() != rows[fp32].train_key()  # trained and measured on their own


def test_the_table_says_when_bf16_rows_are_left_out(quick):
    report, _ = quick
    note = "No bf16 rows: this device has no native bf16"
    assert (note in markdown(report)) == (not BF16)
    assert note in markdown({**report, "bf16_native": False})


def test_halting_rows_compare_with_and_without_halting_from_the_repeats(quick):
    _, written = quick
    halting = written["halting"]
    assert [h["size"] for h in halting] == list(QUICK.halt_sizes)
    for h in halting:
        assert h["setting"] == halting_name(QUICK, default_checkpoint()) and h["iters"] == QUICK.halt_iters
        assert h["halt_after"] == QUICK.halt_after and h["n"] == QUICK.halt_n
        for key in ("with_halting_samples_per_s", "without_halting_samples_per_s"):
            assert len(h[key]) == QUICK.halt_repeats and all(v > 0 for v in h[key])
            assert h[f"{key}_median"] == statistics.median(h[key])
        paired = statistics.median(a / b for a, b in zip(h["with_halting_samples_per_s"], h["without_halting_samples_per_s"]))
        assert h["speedup"] == pytest.approx(paired, rel=1e-12)
        # The trained reference model settles on these small mazes long before the last iteration.
        assert h["settled"] > 0 and QUICK.halt_after < h["mean_iterations_run"] < QUICK.halt_iters


def test_medians_and_ratios_come_from_the_measured_repeats(quick):
    _, written = quick
    results, rows = written["results"], {s["name"]: s for s in written["settings"]}
    for name, r in results.items():
        for key in ("train_samples_per_s", "eval_samples_per_s"):
            assert len(r[key]) == QUICK.repeats and all(v > 0 for v in r[key])
            assert r[f"{key}_median"] == statistics.median(r[key])
            versus = written["ratios"][name]["versus"]
            assert versus == rows[name]["versus"]
            paired = statistics.median(a / b for a, b in zip(r[key], results[versus][key]))
            assert written["ratios"][name][key] == pytest.approx(paired, rel=1e-12)
    assert written["ratios"][BASELINE] == {"versus": BASELINE, "train_samples_per_s": 1.0, "eval_samples_per_s": 1.0}
    # Rows that train alike (they differ only in evaluation) report one training measurement.
    assert results["recurrent, new evaluator only"]["train_samples_per_s"] == results[BASELINE]["train_samples_per_s"]
    assert results["recurrent, new evaluator only"]["train_measured_as"] == BASELINE
    assert 0 <= results["recurrent, now"]["eval_accuracy_final"] <= 1


def test_memory_is_measured_at_two_iteration_counts(quick):
    _, written = quick
    memory = written["memory"]
    halting = halting_name(QUICK, default_checkpoint())
    assert [(m["setting"], m["iters"], m["halt_after"]) for m in memory] == [
        *((s, t, 0) for s in MEMORY_SETTINGS for t in QUICK.memory_iters), *((halting, t, QUICK.halt_after) for t in QUICK.memory_iters)]
    for m in memory:
        assert m["size"] == QUICK.memory_size and m["peak_mb"] > m["growth_mb"] >= 0
        assert m["measure"] == "resident memory, sampled every ms"


def test_the_table_shows_every_setting_with_its_ratios(quick):
    report, _ = quick
    table = markdown(report).splitlines()
    for name, q in report["ratios"].items():
        row = next(line for line in table if line.startswith(f"| {name} |"))
        assert f"| {q['train_samples_per_s']:.2f}x |" in row and f"| {q['eval_samples_per_s']:.2f}x |" in row
    assert sum("| 15x15 |" in line for line in table) == len(report["memory"])
    for h in report["halting"]:
        row = next(line for line in table if line.startswith(f"| {h['setting']} | {h['size']}x{h['size']} | {h['iters']} |"))
        assert f"| {h['speedup']:.2f}x |" in row


def test_ratios_are_medians_of_the_per_repeat_ratios():
    rows = [Setting("a", versus="a"), Setting("b", versus="a")]
    # Repeat 3 ran under load for both rows: paired, it still says b is 2x (the medians' ratio would say 1.5x).
    results = {"a": {"train_samples_per_s": [4.0, 4.0, 1.0], "eval_samples_per_s": [10.0, 10.0, 10.0]},
               "b": {"train_samples_per_s": [8.0, 8.0, 2.0], "eval_samples_per_s": [20.0, 30.0, 25.0]}}
    assert ratios(results, rows) == {"a": {"versus": "a", "train_samples_per_s": 1.0, "eval_samples_per_s": 1.0},
                                     "b": {"versus": "a", "train_samples_per_s": 2.0, "eval_samples_per_s": 2.5}}


@pytest.mark.parametrize("argv", [["--threads", "0"], ["--repeats", "0"], ["--out", "{tmp}"], ["--out", "{tmp}/missing/b.json"],
                                  ["--checkpoint", "{tmp}"],
                                  *([["--device", "cuda"]] if not torch.cuda.is_available() else [])])
def test_bad_arguments_end_with_one_sentence_and_write_nothing(argv, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(["--quick", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --") and err[0].endswith(".")
    assert list(tmp_path.iterdir()) == []
