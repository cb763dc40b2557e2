"""Figures the docs quote from committed result files match those files.

Each check builds the text the page must contain from the file it names (JSON, the printed
output of a command, a run's config) and looks for it on the page, so a number changed in either
the file or the page fails here instead of going stale silently. Fast: reads text, trains nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REFERENCE = ROOT / "results" / "reference"
MAZE_RUN = REFERENCE / "checkpoints/maze/train9_test15/shared/20261127-073436-seed0"
PREFIX_RUN = REFERENCE / "checkpoints/prefix_sums/train32_test512/shared/20261127-001511-seed0"
WEIGHTED_RUNS = {"shared": REFERENCE / "checkpoints/shortest_path/train12_test24/shared/20261127-002814-seed0",
                 "recurrent": REFERENCE / "checkpoints/shortest_path/train12_test24/recurrent/20261127-003653-seed0"}
HALTING = "eval_sizes33-59_iters1000_n20_fp32_halt20"
PREFIX_LONG = "eval_sizes1024-2048_iters2100_n20_halt20"


def flat(text: str) -> str:
    """Whitespace folded to single spaces, so a figure may wrap across lines of a page."""
    return " ".join(text.split())


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def pm(mean: float, sd: float) -> str:
    """A fraction's mean ± sd in points, as the study tables print it."""
    return f"{100 * mean:.1f} ± {100 * sd:.1f}"


def table_row(text: str, start: str) -> list[str]:
    """The cells of the one Markdown table row that begins with ``start``."""
    rows = [line for line in text.splitlines() if line.startswith(start)]
    assert len(rows) == 1, f"expected one table row starting {start!r}, found {len(rows)}"
    return [cell.strip() for cell in rows[0].strip().strip("|").split(" | ")]


def right_wrong(right: int, total: int) -> str:
    if right == total:
        return "all right" if total > 1 else "right"
    if right == 0:
        return "all wrong" if total > 1 else "wrong"
    return f"{right} right, {total - right} wrong"


# -- docs/study.md: the verdict table's depth_k2 vs feedforward rows -----------------------------

STUDIES = {"maze": REFERENCE / "study_maze", "prefix_sums": REFERENCE / "study_prefix_sums_curriculum"}


def depthwise_figures(task: str) -> dict:
    study = load(STUDIES[task] / "study.json")
    (comparison,) = [c for c in study["comparisons"] if (c["model"], c["baseline"]) == ("depth_k2", "feedforward")]
    speed = {s["model"]: s for s in study["speed"]}
    cost = {s["model"]: s["seconds_per_step"] for s in study["step_costs"]}
    steps = {m: speed[m]["steps_median"] for m in ("depth_k2", "feedforward")}
    return {"comparison": comparison, "steps": steps, "cost": cost,
            "seconds": {m: round(cost[m] * steps[m]) for m in steps}, "md": (STUDIES[task] / "study.md").read_text(encoding="utf-8")}


def test_the_verdict_rows_of_depth_k2_vs_feedforward_quote_the_studies():
    text = page("study.md")
    maze, prefix = depthwise_figures("maze"), depthwise_figures("prefix_sums")
    accuracy = table_row(text, "| fewer parameters at equal accuracy | depth-wise `depth_k2`")
    speed = table_row(text, "| trains faster | `depth_k2` vs `feedforward`")
    for task, figures in (("maze", maze), ("prefix_sums", prefix)):
        c = figures["comparison"]
        # the study's own claims table says the same (study.md is written from study.json)
        assert (f"{c['parameters']:,} vs {c['baseline_parameters']:,} parameters" in figures["md"]
                and f"training size at training depth {pm(c['train_acc_mean'], c['train_acc_sd'])} vs "
                    f"{pm(c['baseline_train_acc_mean'], c['baseline_train_acc_sd'])} %" in figures["md"]), task

    c = maze["comparison"]
    assert accuracy[1] == f"depth-wise `depth_k2` ({c['parameters']:,}) vs `feedforward` ({c['baseline_parameters']:,})"
    assert accuracy[2] == (f"held-out 9x9 at depth 20: {pm(c['train_acc_mean'], c['train_acc_sd'])} vs "
                           f"{pm(c['baseline_train_acc_mean'], c['baseline_train_acc_sd'])}")
    c = prefix["comparison"]
    assert accuracy[3] == (f"{c['parameters']:,} vs {c['baseline_parameters']:,}: held-out 32 bits at depth 30: "
                           f"{pm(c['train_acc_mean'], c['train_acc_sd'])} vs {pm(c['baseline_train_acc_mean'], c['baseline_train_acc_sd'])}")
    fewer = sorted({round(100 * (1 - f["comparison"]["parameters"] / f["comparison"]["baseline_parameters"])) for f in (maze, prefix)})
    assert f"({' and '.join(f'{p}%' for p in fewer)} fewer" in accuracy[4]

    m = maze
    assert speed[2] == (f"{m['steps']['depth_k2']:.0f} vs {m['steps']['feedforward']:.0f} steps (ratio {m['comparison']['steps_ratio']:.2f}), "
                        f"same cost per step ({m['cost']['depth_k2']:.3f} vs {m['cost']['feedforward']:.3f} s): "
                        f"{m['seconds']['depth_k2']} vs {m['seconds']['feedforward']} s")
    p = prefix
    assert speed[3] == (f"{p['steps']['depth_k2']:.0f} vs {p['steps']['feedforward']:.0f} steps ({p['comparison']['steps_ratio']:.2f}), "
                        f"{p['seconds']['depth_k2']} vs {p['seconds']['feedforward']} s")


# -- docs/evaluation.md: the halting table -------------------------------------------------------

COMPARE_ROW = re.compile(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x\s+([\d.]+)x\s+([\d.]+)\s+([\d.]+)%\s+([\d.]+)%\s+(\S+)\s*$")


def compare_rows(log: Path) -> dict[str, tuple[str, ...]]:
    """The ``--compare-halting`` rows of a printed evaluation, per size."""
    rows = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        match = COMPARE_ROW.match(line)
        if match:
            rows[match.group(1)] = match.groups()[1:]
    return rows


def test_the_halting_table_quotes_its_committed_files():
    text = page("evaluation.md")
    result = load(MAZE_RUN / f"{HALTING}.json")
    log = MAZE_RUN / f"{HALTING}.txt"
    rows = compare_rows(log)
    assert set(rows) == set(result["halting"]) == {"33", "59"}
    command = log.read_text(encoding="utf-8").splitlines()[0].removeprefix("$ ")
    assert command.replace(str(MAZE_RUN.relative_to(ROOT)), "$R") in text
    assert str(MAZE_RUN.relative_to(ROOT)) in flat(text)
    assert result["iterations"] == 1000 and result["halt_after"] == 20
    for size, (without_s, with_s, ratio, cpu_ratio, mean_run, acc_without, acc_with, curves) in rows.items():
        halting = result["halting"][size]
        kinds, correct = halting["kind"], halting["correct"]
        assert len(kinds) == 20 and result["summary"][size]["final_iter"] == 1000
        # the printed row and the JSON agree
        assert float(mean_run) == round(halting["mean_iterations_run"], 1)
        assert float(acc_with) == round(100 * result["summary"][size]["final"], 2)
        parts = []
        for kind, label in (("fixed", "fixed point"), ("2-cycle", "2-cycle"), ("none", "never")):
            outcomes = [ok for k, ok in zip(kinds, correct) if k == kind]
            if outcomes:
                parts.append(f"{len(outcomes)} {label} ({right_wrong(sum(outcomes), len(outcomes))})")
        expected = (f"| {size}x{size} | {without_s} s / {with_s} s | {ratio}x / {cpu_ratio}x | {mean_run} | "
                    f"{float(acc_without):g}% / {float(acc_with):g}% | {', '.join(parts)} |")
        assert expected in text.splitlines(), f"docs/evaluation.md lacks the row {expected!r}"
        assert curves == "equal"  # the page says the curves with and without halting are equal


# -- docs/prefix_sums_track.md: the default run's table -------------------------------------------

def test_the_prefix_sums_table_quotes_the_reference_run():
    text = page("prefix_sums_track.md")
    own, longer = load(PREFIX_RUN / "eval.json"), load(PREFIX_RUN / f"{PREFIX_LONG}.json")
    config = yaml.safe_load((PREFIX_RUN / "config.yaml").read_text(encoding="utf-8"))
    assert str(PREFIX_RUN.relative_to(ROOT)) in text
    assert longer["halt_after"] == 20 and longer["iterations"] == 2100
    log = (PREFIX_RUN / f"{PREFIX_LONG}.txt").read_text(encoding="utf-8").splitlines()
    assert log[0].removeprefix("$ ").replace(str(PREFIX_RUN.relative_to(ROOT)), "$R") in text
    rows = []
    for file, result in (("eval.json", own), (f"{PREFIX_LONG}.json", longer)):
        for size, s in result["summary"].items():
            count = len(result["halting"][size]["kind"]) if result.get("halting") else config["size"]["n_test"]
            label = f"{int(size):,}" + (" (training length)" if int(size) == config["size"]["train"] else "")
            rows.append(f"| {label} | {count:,} | `{file}` | {s['at_train_depth']:.1%} | {s['best']:.1%} ({s['best_iter']}) | "
                        f"{s['final']:.1%} ({s['final_iter']}) |")
            assert s["train_depth"] == 30
    assert len(rows) == 4
    for row in rows:
        assert row in text.splitlines(), f"docs/prefix_sums_track.md lacks the row {row!r}"
    seconds = own["seconds"]
    assert f"{seconds['train']:.2f} s of training and {seconds['eval']:.2f} s of evaluation" in flat(text)
    medians = []
    for size in ("1024", "2048"):
        halting = longer["halting"][size]
        assert set(halting["kind"]) == {"fixed"}  # "every string ... settled into a fixed point"
        settled = sorted(halting["settled_at"])
        medians.append(settled[len(settled) // 2])
    assert f"(median at iterations {medians[0]} and {medians[1]})" in flat(text)


# -- docs/shortest_paths.md: the weighted CPU default ---------------------------------------------

def test_the_weighted_shortest_path_default_quotes_the_reference_runs():
    text = flat(page("shortest_paths.md"))
    shared, recurrent = (load(WEIGHTED_RUNS[m] / "eval.json") for m in ("shared", "recurrent"))
    for run in WEIGHTED_RUNS.values():
        assert f"`{(run / 'eval.json').relative_to(ROOT)}`" in text
        config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
        assert (config["train"]["epochs"], config["train"]["lr"], config["size"]["n_train"], config["size"]["n_test"],
                config["eval"]["iters"]) == (8, 0.003, 10000, 1000, 64)
    s12, s24 = shared["summary"]["12"], shared["summary"]["24"]
    r12, r24 = recurrent["summary"]["12"], recurrent["summary"]["24"]
    assert f"**{s12['best']:.1%}** exact match on 12x12 (best iteration {s12['best_iter']})" in text
    assert f"**{s24['best']:.1%}** on 24x24 (best iteration {s24['best_iter']}) with `model=shared`" in text
    assert f"{r12['best']:.1%} ({r12['best_iter']}) and {r24['best']:.1%} ({r24['best_iter']}) with `model=recurrent`" in text
    assert f"record {round(shared['seconds']['train'])} s and {round(recurrent['seconds']['train'])} s of training" in text


# -- docs/speed.md: the side-by-side comparison has no committed file, so no figures -------------

def test_the_side_by_side_section_quotes_no_uncommitted_figures():
    text = page("speed.md")
    section = text[text.index("## Side by side with the Deep Thinking reference code"):]
    section = section.split("\n## ", 1)[0]
    assert not list(REFERENCE.rglob("compare*.json")), "a comparison file is committed now: quote it and check it here"
    assert "No committed measurement" in section
    assert not [line for line in section.splitlines() if line.startswith("|")], "a table of figures without a committed file"
    assert not re.search(r"\d\.\d+x\b", section), "a ratio without a committed file"


@pytest.mark.parametrize("name", ["study.md", "evaluation.md", "prefix_sums_track.md", "shortest_paths.md"])
def test_the_pages_name_this_check(name):
    assert "tests/test_doc_figures.py" in page(name)
