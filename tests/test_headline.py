"""The README's headline table is made from committed result files (``python -m benchmark.headline``):
the README's block is what the files give, every row names the files it reads and reads nothing
else, a changed number in a source changes the table, and the command refuses bad input in one
sentence. Reads small JSON and CSV files; trains nothing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from benchmark.analysis import headline
from benchmark.analysis.headline import BEGIN, END, ROWS, Sources, headline_table, read_block
from benchmark.infra.results import EvalResult

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
LEADERBOARD = next(r for r in ROWS if r.sources == ("reference/leaderboard/maze/leaderboard.csv",))
PREFIX = next(r for r in ROWS if r.sources == (headline.PREFIX_RUN,))


def sources(row: headline.Row) -> list[Path]:
    return [path for pattern in row.sources for path in sorted(RESULTS.glob(pattern))]


def copy_sources(rows: list[headline.Row], dest: Path) -> Path:
    """The files the rows name, copied to the same relative paths below ``dest``."""
    for row in rows:
        for path in sources(row):
            target = dest / path.relative_to(RESULTS)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return dest


def run_command(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        headline.main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def committed_table() -> str:
    return headline_table(RESULTS)


def test_the_readme_block_is_the_table_the_committed_files_give(committed_table):
    _, block, _ = read_block(ROOT / "README.md")
    assert block == committed_table, "README.md's headline table is stale: run python -m benchmark.headline --write README.md"


def test_every_row_names_committed_files_under_results():
    named = []
    for row in ROWS:
        for pattern in row.sources:
            found = sorted(RESULTS.glob(pattern))
            assert found, f"{row.page}'s row names {pattern}, which matches no file under results/"
            assert all(p.is_file() and p.resolve().is_relative_to(RESULTS.resolve()) for p in found), pattern
            named += found
    if (ROOT / ".git").exists() and shutil.which("git"):
        relative = [str(p.relative_to(ROOT)) for p in named]
        tracked = subprocess.run(["git", "ls-files", "--", *relative], cwd=ROOT, capture_output=True, text=True, check=True)
        assert set(relative) <= set(tracked.stdout.splitlines()), "a headline source that git does not track"


def test_each_row_is_made_from_its_named_files_alone(tmp_path, committed_table):
    """Copied without anything else, each row's files give the same row: nothing it shows comes from an unnamed file."""
    lines = committed_table.splitlines()[2:]
    for i, row in enumerate(ROWS):
        root = copy_sources([row], tmp_path / f"row{i}")
        assert row.render(root) == lines[i], row.page
    with pytest.raises(RuntimeError, match="not among the row's sources"):
        Sources(RESULTS, ("reference/bench.json",)).paths("reference/digits/parity.csv")


def test_a_changed_number_in_a_source_changes_the_table(tmp_path):
    root = copy_sources([LEADERBOARD, PREFIX], tmp_path / "results")
    before = headline_table(root, [LEADERBOARD, PREFIX])
    assert "`shared` **99.1 ± 0.5%**" in before and "512 bits: **99.9%** at iteration 169" in before

    board = root / LEADERBOARD.sources[0]
    text = board.read_text()
    row = next(line for line in text.splitlines() if line.startswith("maze,9,15,shared,"))
    assert ",0.991400," in row
    board.write_text(text.replace(row, row.replace(",0.991400,", ",0.951400,")))
    # Written through the project's own writer, so that the file's summary agrees with its curves.
    run = root / headline.PREFIX_RUN
    result = EvalResult.read(run)
    EvalResult(**{**result.__dict__, "accuracy": {size: tuple(min(a, 0.9) if size == 512 else a for a in curve)
                                                   for size, curve in result.accuracy.items()}}).write(run)

    after = headline_table(root, [LEADERBOARD, PREFIX])
    assert "`recurrent_matched` **98.2 ± 0.7%**" in after and "`shared` 95.1 ± 0.5%" in after  # best first, bold
    assert "512 bits: **90.0%**" in after and "99.9%" not in after
    assert before.splitlines()[:2] == after.splitlines()[:2]


def readme(tmp_path: Path, block: str = "| stale |\n") -> Path:
    path = tmp_path / "README.md"
    path.write_text(f"# title\n\nintro\n\n{BEGIN}\n{block}{END}\n\n## next\n", encoding="utf-8")
    return path


def test_write_replaces_only_the_block_and_check_then_passes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(headline, "ROWS", [LEADERBOARD])
    root = copy_sources([LEADERBOARD], tmp_path / "results")
    path = readme(tmp_path)
    assert run_command(["--results", str(root), "--write", str(path)], capsys)[0] == 0
    text = path.read_text(encoding="utf-8")
    assert text == f"# title\n\nintro\n\n{BEGIN}\n{headline_table(root)}{END}\n\n## next\n"
    assert run_command(["--results", str(root), "--check", str(path)], capsys)[0] == 0
    code, out, _ = run_command(["--results", str(root)], capsys)
    assert code == 0 and out == headline_table(root)


def test_check_refuses_a_stale_readme_in_one_sentence_and_leaves_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(headline, "ROWS", [LEADERBOARD])
    root = copy_sources([LEADERBOARD], tmp_path / "results")
    path = readme(tmp_path)
    before = path.read_bytes()
    code, out, err = run_command(["--results", str(root), "--check", str(path)], capsys)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "differs from the files" in err and "--write" in err
    assert path.read_bytes() == before


@pytest.mark.parametrize("text", ["# no markers\n", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"],
                         ids=["none", "reversed", "twice"])
def test_a_readme_without_its_markers_is_refused_and_left(tmp_path, capsys, text):
    path = tmp_path / "README.md"
    path.write_text(text, encoding="utf-8")
    for action in ("--write", "--check"):
        code, out, err = run_command(["--results", str(tmp_path / "nowhere"), action, str(path)], capsys)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "markers" in err
        assert path.read_text(encoding="utf-8") == text


def test_a_missing_readme_or_source_and_a_damaged_source_are_one_sentence(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(headline, "ROWS", [PREFIX])
    code, _, err = run_command(["--check", str(tmp_path / "README.md")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "README.md" in err

    path = readme(tmp_path)
    before = path.read_bytes()
    code, _, err = run_command(["--results", str(tmp_path / "empty"), "--write", str(path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no file matches" in err

    root = copy_sources([PREFIX], tmp_path / "results")
    (root / headline.PREFIX_RUN).write_text("{", encoding="utf-8")
    code, _, err = run_command(["--results", str(root), "--write", str(path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not valid JSON" in err
    assert path.read_bytes() == before


@pytest.mark.parametrize("page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_the_printouts_on_a_page_are_their_runs_tables(page):
    """Every printed table a page shows (``<!-- printout: RUN/eval.json -->`` then the indented
    lines) is what ``format_table`` prints for that committed eval.json, so it cannot go stale."""
    from benchmark.evaluation.extrapolation import format_table

    lines = (ROOT / page).read_text().splitlines()
    marks = [i for i, line in enumerate(lines) if line.startswith("<!-- printout: ")]
    if page == "README.md":
        assert marks, "the README shows no printout"
    for i in marks:
        path = ROOT / lines[i].removeprefix("<!-- printout: ").removesuffix(" -->")
        shown = []
        for line in lines[i + 1:]:
            if not line.startswith("    "):
                break
            shown.append(line[4:])
        title = shown[0] if not shown[0].lstrip().startswith("size") else ""
        table = format_table(EvalResult.read(path), title).splitlines()
        assert shown == table[:len(shown)] and len(shown) >= 4, path  # the legend line may be left out


@pytest.mark.parametrize("page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_the_files_a_page_includes_are_quoted_whole(page):
    """A table a page copies from a committed file (``<!-- include: PATH -->`` then the file's
    lines, e.g. a seeds table of ``python -m benchmark.analysis.ladder_plots``) is that file's text."""
    lines = (ROOT / page).read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("<!-- include: "):
            path = ROOT / line.removeprefix("<!-- include: ").removesuffix(" -->")
            included = path.read_text().splitlines()
            assert lines[i + 1:i + 1 + len(included)] == included, f"{page} line {i + 1}: {path}"


@pytest.mark.parametrize("page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_the_leaderboard_tables_a_page_quotes_are_the_committed_ones(page):
    """``<!-- leaderboard-summary: CSV SIZE -->`` then the table ``summary_table`` makes of that
    committed leaderboard.csv: the docs' leaderboard tables cannot drift from the files."""
    from benchmark.analysis.leaderboard import summary_table

    lines = (ROOT / page).read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("<!-- leaderboard-summary: "):
            csv_path, size = line.removeprefix("<!-- leaderboard-summary: ").removesuffix(" -->").split()
            table = summary_table(ROOT / csv_path, int(size)).splitlines()
            assert lines[i + 1:i + 1 + len(table)] == table, f"{page} line {i + 1}"
