"""The runs of a study: each finished puzzle run directory read into a ``StudyRun``, with its kind."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from benchmark.analysis.formatting import reached
from benchmark.analysis.plots import read_metrics
from benchmark.analysis.report import find_runs, incomplete_runs, is_classification_run, read_run
from benchmark.config.schema import BaselineModelConfig, ConfigError, ModelConfig, size_name
from benchmark.infra.results import EvalResult, FoldResult, ResultFormatError, SimilarityRecord
from benchmark.infra.rundir import RunDir
from benchmark.models.registry import model_kind_of_config

KINDS = ("unshared", "recurrent", "in-block", "depth-wise", "unknown")
BASELINE_KIND = {"depth-wise": "unshared", "in-block": "recurrent"}  # what each shared kind is compared against


@dataclass(frozen=True)
class StudyRun:
    """One finished run, as the study reads it.

    ``reached_step``/``reached_seconds``: the first record at the target (None: never reached);
    ``steps``/``seconds``: where training ended; ``cap``: the steps train.epochs allows.
    """

    run_dir: Path
    task: str  # the task, with its size setting (e.g. ``prefix_sums train32_test512``) where the folders hold several
    model: str
    seed: int
    kind: str
    depth: int
    width: int
    parameters: int
    loop_weight: float
    target: float
    reached_step: int | None
    reached_seconds: float | None
    steps: int
    seconds: float
    cap: int
    final_probe_acc: float | None
    evaluation: EvalResult
    fold: FoldResult | None
    similarity: SimilarityRecord | None
    size_setting: str = ""  # ``benchmark.config.schema.size_name`` of the run's size config

    @property
    def train_size(self) -> int:
        return self.evaluation.run.train_size

    @property
    def biggest_size(self) -> int:
        return max(self.evaluation.sizes)


def model_kind(model_node: Any) -> str:
    """The study's kind of a run's ``model`` config node (see the module docstring): the kind its
    class declares, a "shared" one split by depth into ``in-block`` and ``depth-wise``."""
    if "_target_" not in model_node:  # written by hand (every run's config.yaml has one): the schema's default target
        schema = ModelConfig if "templates" in model_node else BaselineModelConfig
        model_node = {**model_node, "_target_": schema._target_}
    kind = model_kind_of_config(model_node)
    if kind == "shared":
        return "depth-wise" if int(model_node.get("depth", 1)) > 1 else "in-block"
    return kind




def read_study_run(run_dir: Path) -> StudyRun:
    """A finished run directory's figures for the study (its config.yaml, metrics.jsonl, eval.json, fold.json, lsm.json);
    a file that is damaged or lacks a field the study reads is a ``ConfigError`` or ``ResultFormatError`` of one sentence."""
    try:
        return _read_study_run(run_dir)
    except (ConfigError, ResultFormatError):
        raise
    except (OmegaConfBaseException, KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        first_line = (str(err).splitlines() or [""])[0]
        raise ConfigError(f"{run_dir} is not a run the study can read: its config.yaml or metrics.jsonl lacks or "
                          f"garbles a field ({type(err).__name__}: {first_line}).") from err


def _read_study_run(run_dir: Path) -> StudyRun:
    evaluation, info = read_run(run_dir)
    run = RunDir(run_dir)
    if not run.config.exists():
        raise ConfigError(f"{run_dir} has no config.yaml: the study needs each run's composed config.")
    cfg = OmegaConf.create(run.read_config())  # plain data: read, never instantiated
    metrics = read_metrics(run_dir)
    if not metrics:
        raise ConfigError(f"{run_dir} has no metrics.jsonl records: the study needs each run's training log.")
    target = cfg.train.stop_at_acc if cfg.train.get("stop_at_acc") is not None else 0.99
    hit = reached(metrics, target)
    return StudyRun(
        run_dir=run_dir, task=info.task, model=info.model, seed=info.seed, kind=model_kind(cfg.model), depth=int(cfg.model.depth),
        width=int(cfg.model.width), parameters=info.parameters, loop_weight=float(cfg.train.get("loop_weight", 0.0)),
        target=float(target), reached_step=None if hit is None else hit["step"],
        reached_seconds=None if hit is None else hit["seconds"], steps=metrics[-1]["step"], seconds=metrics[-1]["seconds"],
        cap=int(cfg.train.epochs) * (int(cfg.size.n_train) // int(cfg.train.batch_size)),  # the loader drops the last partial batch
        final_probe_acc=metrics[-1].get("probe_acc"), evaluation=evaluation, size_setting=size_name(cfg.size),
        fold=FoldResult.read(run.fold) if run.fold.exists() else None, similarity=run.read_lsm())


def read_study(folders: list[Path]) -> list[StudyRun]:
    """Every finished puzzle run below ``folders``; refuses (ConfigError, one sentence) when there is none."""
    try:
        run_dirs = [d for d in find_runs(folders) if not is_classification_run(d)]
        if not run_dirs:
            unfinished = len(incomplete_runs(folders))
            raise ConfigError(f"no finished puzzle run directories (folders with eval.json and config.yaml) under "
                              f"{', '.join(map(str, folders))}" + (f" ({unfinished} incomplete)." if unfinished else "."))
        runs = [read_study_run(d) for d in run_dirs]
    except ResultFormatError as err:
        raise ConfigError(str(err)) from err
    # A task studied at several size settings (separate sweeps) is one study per setting.
    settings = {task: {r.size_setting for r in runs if r.task == task} for task in {r.task for r in runs}}
    return [replace(r, task=f"{r.task} {r.size_setting}") if len(settings[r.task]) > 1 else r for r in runs]


def duplicate_notes(runs: list[StudyRun]) -> list[str]:
    """One line per task, model and seed trained more than once (every table counts each run;
    pairings by seed use the last)."""
    counts: dict[tuple[str, str, int], int] = {}
    for r in runs:
        counts[(r.task, r.model, r.seed)] = counts.get((r.task, r.model, r.seed), 0) + 1
    return [f"note: {task} / {model} seed {seed} has {n} runs; the tables count each, pairings by seed use the last."
            for (task, model, seed), n in sorted(counts.items()) if n > 1]


def incomplete_notes(folders: list[Path]) -> list[str]:
    """One line per run directory below ``folders`` that never finished (INCOMPLETE marker): left
    out of every table, so the study says which runs are missing and how far each got."""
    notes = []
    for run_dir in incomplete_runs(folders):
        metrics = read_metrics(run_dir)
        probe = next((m["probe_acc"] for m in reversed(metrics) if "probe_acc" in m), None)
        got = (f"{metrics[-1]['step']} steps, last probe accuracy {100 * probe:.1f}%" if probe is not None
               else f"{metrics[-1]['step']} steps" if metrics else "no training record")
        notes.append(f"note: incomplete run left out of the tables (interrupted, diverged or crashed; resume=<it> continues it): "
                     f"{run_dir} ({got}).")
    return notes
