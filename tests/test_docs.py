"""The README is a short guide and the docs hold the rest: every link, image and quoted results/
path in README.md and docs/*.md points at a file that exists. Fast: reads text, trains nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target), ![alt](src)
HTML = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.I)
CODE = re.compile(r"(`+)(.+?)\1", re.S)
# A results/ path inside inline code: not one that a command writes to (results_dir=...), not one
# read from an older commit (git show <commit>:results/...), not a pattern (<run-id>, ..., *, $R).
RESULTS_PATH = re.compile(r"(?<![=:\w./-])results/[^\s`'\"),;\]]*")


def prose(page: Path) -> str:
    """The page without fenced code blocks (indented code has no links and no backticks to check)."""
    return FENCE.sub("", page.read_text(encoding="utf-8"))


def targets(page: Path) -> list[str]:
    text = prose(page)
    found = LINK.findall(text) + HTML.findall(text)
    return [t for t in found if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I) and not t.startswith("#")]


def quoted_results_paths(page: Path) -> list[str]:
    paths = []
    for _, code in CODE.findall(prose(page)):
        for path in RESULTS_PATH.findall(code):
            path = path.rstrip(".:")
            if path == "results/" or any(c in path for c in "<>*$") or "..." in path:
                continue
            paths.append(path)
    return paths


def test_the_readme_is_a_guide_of_at_most_300_lines():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move the detail to docs/"


def test_the_pages_are_found():
    names = {p.name for p in PAGES}
    assert "README.md" in names and len(PAGES) > 5
    assert all(targets(p) or quoted_results_paths(p) or p.name != "README.md" for p in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(page):
    missing = []
    for target in targets(page):
        file_part = target.split("#", 1)[0].split("?", 1)[0]
        if not file_part:
            continue
        if not (page.parent / file_part).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_results_path_exists(page):
    missing = sorted({p for p in quoted_results_paths(page) if not (ROOT / p).exists()})
    assert not missing, f"{page.relative_to(ROOT)} quotes results/ paths that do not exist: {missing}"


def test_the_checks_catch_what_they_are_for(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See [a](missing.md#x), ![b](img/none.png), <img src=\"gone.png\" width=\"3\">, [web](https://x.org),\n"
                    "[anchor](#here), `results/reference/nowhere/` and `python -m benchmark.report results/none`;\n"
                    "not `results_dir=results/new`, `git show abc:results/old/`, `results/<task>/<run-id>/`.\n"
                    "```\n[code](not/checked.md) `results/not/checked`\n```\n", encoding="utf-8")
    assert targets(page) == ["missing.md#x", "img/none.png", "gone.png"]
    assert quoted_results_paths(page) == ["results/reference/nowhere/", "results/none"]
