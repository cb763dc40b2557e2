"""Frozen test splits: named, seeded sets of test data, and the ladders that group them.

    python -m benchmark.evaluation.splits --check                  # regenerate every split, compare its sha256
    python -m benchmark.evaluation.splits --write                  # regenerate, write the sha256s into the manifest
    python -m benchmark.evaluation.splits --check maze_dfs_13 ...  # only these splits (or ladders)
    python -m benchmark.evaluation.splits --list                   # the ladders and their splits

A split is a task (a registered name) with options, a size, a count and a seed: its data is
``Task.generate(size, n, seed)`` of that task, so the first ``m`` samples of a split are exactly
``generate(size, m, seed)`` (every sample has its own ``SeedSequence([seed, index])``). Its
``sha256`` is that of the arrays, computed as the dataset cache's checksum
(``tasks.base._checksum``: both arrays' dtypes, shapes and bytes). The manifest,
``configs/splits.yaml``, lists every standard split with its sha256 and groups them into
ladders; ``tests/test_splits.py`` regenerates the cheap ones, so a generator whose bytes change
without the manifest being rewritten fails the tests. Splits marked ``optional: true`` (the
99x99 mazes) are made on request only: they carry no sha256 unless ``--write --optional``
computed one, and ``--check`` verifies them only with ``--optional``.

Test seeds: every split's seed is above ``MAX_RUN_SEED`` = 2 * SEED_MAX + 1, the largest data
seed a run can use (``benchmark.config.schema.data_seeds``: 2*seed for training, 2*seed + 1 for
testing, seed <= SEED_MAX), so no split shares a sample stream with any run's training or test data.

docs/splits.md describes the splits and the ladder command (``python -m benchmark.evaluate RUN
--splits maze_ood``, ``benchmark.evaluation.ladder``).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmark.config.schema import SEED_MAX, VALIDATION_SEED_BASE, ConfigError
from tasks.base import Task, TaskError, _checksum, is_integer

MANIFEST = Path(__file__).resolve().parents[2] / "configs" / "splits.yaml"
MAX_RUN_SEED = 2 * SEED_MAX + 1  # the largest data seed of any run (data_seeds)
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_SHA = re.compile(r"[0-9a-f]{64}")
_KEYS = ("task", "options", "size", "n", "seed", "sha256", "optional")


@dataclass(frozen=True)
class Split:
    """One frozen test set: ``n`` puzzles of ``size`` of task ``task`` (with ``options``) from ``seed``.

    ``sha256``: the digest of its arrays recorded in the manifest (None: not recorded, for an
    optional split); ``optional``: generated on request only (too slow for every check).
    """

    name: str
    task: str
    options: Mapping[str, Any]
    size: int
    n: int
    seed: int
    sha256: str | None = None
    optional: bool = False

    def validation(self) -> "Split":
        """The split's validation counterpart: the same task, options, size and count from seed
        ``VALIDATION_SEED_BASE + seed``, never recorded (sha256 None). Its seed lies above every
        frozen split's and every run's data seed (validation included: VALIDATION_SEED_BASE + a
        run seed <= SEED_MAX), so recipes and iteration counts can be chosen on data of every axis
        without looking at the test splits (docs/protocol.md)."""
        return replace(self, seed=VALIDATION_SEED_BASE + self.seed, sha256=None)

    def make_task(self) -> Task:
        """The task with this split's options; an unknown task or a bad option is one sentence."""
        from benchmark.models.registry import resolve  # imported late: registers every task and model

        cls = resolve("task", self.task)
        try:
            return cls(**dict(self.options))
        except TaskError as err:
            raise ConfigError(f"split {self.name}: {err}") from err

    def check(self) -> Task:
        """Raise ``ConfigError`` (one sentence) unless the split is valid: its task options
        validate, its size is accepted, its count is positive and its seed lies above every run's
        data seeds; returns its task."""
        if not (is_integer(self.n) and self.n >= 1):
            raise ConfigError(f"split {self.name}: n must be a positive integer, got {self.n!r}.")
        if not (is_integer(self.seed) and self.seed > MAX_RUN_SEED):
            raise ConfigError(f"split {self.name}: the seed must be an integer above {MAX_RUN_SEED} "
                              f"(every run's data seeds), got {self.seed!r}.")
        if self.sha256 is not None and not (isinstance(self.sha256, str) and _SHA.fullmatch(self.sha256)):
            raise ConfigError(f"split {self.name}: sha256 must be 64 lower-case hex digits or null, got {self.sha256!r}.")
        task = self.make_task()
        try:
            task.check_size(self.size)
        except TaskError as err:
            raise ConfigError(f"split {self.name}: {err}") from err
        return task

    def generate(self, n: int | None = None) -> tuple[Any, Any]:
        """The split's arrays (its first ``n`` samples; all with None) through the task's own ``generate``."""
        return self.make_task().generate(self.size, self.n if n is None else min(n, self.n), self.seed)

    def dataset(self, n: int | None = None) -> torch.utils.data.TensorDataset:
        """``generate`` as tensors."""
        inputs, targets = self.generate(n)
        return torch.utils.data.TensorDataset(torch.from_numpy(inputs), torch.from_numpy(targets))

    def digest(self) -> str:
        """sha256 of the whole split's arrays (``tasks.base._checksum``, as the dataset cache stores it)."""
        return _checksum(*self.generate())

    def line(self) -> str:
        """The split's line in the manifest (one flow mapping, as ``--write`` writes it)."""
        options = ", ".join(f"{k}: {_scalar(v)}" for k, v in self.options.items())
        tail = ", optional: true" if self.optional else ""
        return (f"  {self.name}: {{task: {self.task}, options: {{{options}}}, size: {self.size}, n: {self.n}, "
                f"seed: {self.seed}, sha256: {self.sha256 or 'null'}{tail}}}")


def _scalar(value: Any) -> str:
    return "true" if value is True else "false" if value is False else str(value)


@dataclass(frozen=True)
class Manifest:
    """Every split by name, and every ladder: a name for an ordered list of split names."""

    splits: Mapping[str, Split]
    ladders: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    path: Path = MANIFEST

    def resolve(self, names: Iterable[str], optional: bool = False) -> list[Split]:
        """The splits that ladder and split ``names`` stand for, in order, each once: a ladder's
        optional members only with ``optional``, a split named itself always. An unknown name is
        one sentence naming what is known."""
        chosen: dict[str, Split] = {}
        for name in names:
            if name in self.ladders:
                chosen.update({s: self.splits[s] for s in self.ladders[name] if optional or not self.splits[s].optional})
            elif name in self.splits:
                chosen[name] = self.splits[name]
            else:
                raise ConfigError(f"{name!r} is neither a ladder ({', '.join(self.ladders)}) nor a split of "
                                  f"{self.path.name} (python -m benchmark.evaluation.splits --list shows them).")
        return list(chosen.values())


def load_manifest(path: str | Path = MANIFEST) -> Manifest:
    """The manifest at ``path``, its structure checked (names, keys, ladders naming known splits);
    each split's own validity is ``Split.check``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read the split manifest {path} ({type(err).__name__}).") from err
    if not isinstance(data, dict) or not isinstance(data.get("splits"), dict) or not isinstance(data.get("ladders", {}), dict):
        raise ConfigError(f"{path} must map 'splits' (and 'ladders') to mappings.")
    splits = {}
    for name, entry in data["splits"].items():
        if not (isinstance(name, str) and _NAME.fullmatch(name)) or not isinstance(entry, dict) \
                or not {"task", "size", "n", "seed"} <= set(entry) <= set(_KEYS) or not isinstance(entry.get("options", {}), dict):
            raise ConfigError(f"{path}: split {name!r} needs a lower-case name and task, size, n, seed "
                              f"(options, sha256, optional allowed), got {entry!r}.")
        splits[name] = Split(name=name, task=entry["task"], options=dict(entry.get("options") or {}), size=entry["size"],
                             n=entry["n"], seed=entry["seed"], sha256=entry.get("sha256"), optional=bool(entry.get("optional", False)))
    ladders = {}
    for name, members in data.get("ladders", {}).items():
        if not (isinstance(name, str) and _NAME.fullmatch(name)) or name in splits or not isinstance(members, list) \
                or not members or any(m not in splits for m in members):
            raise ConfigError(f"{path}: ladder {name!r} must be a new lower-case name listing known splits, got {members!r}.")
        ladders[name] = tuple(members)
    seeds = [s.seed for s in splits.values()]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{path}: two splits share a seed; give every split its own.")
    return Manifest(splits=splits, ladders=ladders, path=path)


def write_hashes(manifest: Manifest, digests: Mapping[str, str]) -> None:
    """Rewrite the manifest's lines of the splits in ``digests`` with their new sha256; every other
    line (comments, ladders) is kept as it is."""
    from tasks.fileio import write_text

    lines = manifest.path.read_text().splitlines()
    seen = set()
    for i, text in enumerate(lines):
        match = re.match(r"  ([a-z][a-z0-9_]*): \{", text)
        if match and match.group(1) in digests:
            split = manifest.splits[match.group(1)]
            lines[i] = replace(split, sha256=digests[split.name]).line()
            seen.add(split.name)
    missing = set(digests) - seen
    if missing:
        raise ConfigError(f"{manifest.path}: the splits {sorted(missing)} are not written one per line "
                          f"('  name: {{task: ...}}'), so their sha256 cannot be rewritten.")
    write_text(manifest.path, "\n".join(lines) + "\n")


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.evaluation.splits", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="regenerate the splits and compare with the manifest's sha256")
    mode.add_argument("--write", action="store_true", help="regenerate the splits and write their sha256 into the manifest")
    mode.add_argument("--list", action="store_true", help="print the ladders and their splits")
    parser.add_argument("names", nargs="*", help="splits or ladders (default: every split)")
    parser.add_argument("--optional", action="store_true", help="include the optional (on-request) splits")
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    args = parser.parse_args(argv)
    manifest = load_manifest(args.manifest)
    if args.list:
        for ladder, members in manifest.ladders.items():
            print(f"{ladder}: {' '.join(m + ('*' if manifest.splits[m].optional else '') for m in members)}")
        print("(* optional: made on request only)")
        return 0
    chosen = manifest.resolve(args.names or manifest.splits, optional=args.optional)
    chosen = [s for s in chosen if args.optional or not s.optional or s.name in args.names]
    for split in chosen:
        split.check()
    digests, bad, total = {}, [], time.perf_counter()
    for split in chosen:
        if args.check and split.sha256 is None:
            print(f"{split.name:<28} no sha256 recorded (optional; --write --optional records one)")
            continue
        t0 = time.perf_counter()
        digests[split.name] = digest = split.digest()
        ok = args.write or digest == split.sha256
        bad += [] if ok else [split.name]
        print(f"{split.name:<28} {split.n:>5} x {split.size:<5} {time.perf_counter() - t0:6.2f} s  {digest[:16]}"
              f"{'' if args.write else ('  ok' if ok else f'  MISMATCH (manifest {split.sha256[:16]})')}", flush=True)
    print(f"{len(digests)} splits in {time.perf_counter() - total:.1f} s")
    if args.write:
        write_hashes(manifest, digests)
        print(f"written {manifest.path}")
    elif bad:
        print(f"{len(bad)} split(s) differ from {manifest.path}: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    from benchmark.config.schema import exit_on_user_error

    sys.exit(exit_on_user_error(run, argv))


if __name__ == "__main__":
    main()
