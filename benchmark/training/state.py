"""What lets a run be interrupted and continued: the training-state file and the INCOMPLETE marker.

``train_state.pt`` (format ``algoreason-train-state-1``) sits beside ``model.pt`` in a run
directory. ``model.pt`` is the model checkpoint others load (``benchmark.infra.checkpoint``); the
training state is what only ``resume=<run dir>`` reads, a dict of plain data and tensors::

    format     "algoreason-train-state-1"
    step       optimizer steps done (an int >= 0)
    model      {parameter name: tensor}
    optimizer  the optimizer's state_dict (tensors, numbers, lists, dicts)
    scheduler  the scheduler's state_dict
    rng        every random generator the training draws from, as tensors and ints:
               "generator" (the loop's own torch.Generator: data order, progressive draws,
               augmentation), "torch" (torch's global CPU generator: initialisation, dropout),
               "cuda" (one state per CUDA device; absent without CUDA), "numpy", "python"
    loop       where the loop stands: plain values and tensors the loop needs to continue
               exactly (metrics records so far, the open metrics window, the generator's state
               at the start of the epoch, seconds trained)

It is written atomically (``tasks.fileio.atomic_path``) and read with
``torch.load(weights_only=True)``: no pickled object, so reading it cannot run code; its keys and
types are checked before anything uses it.

``INCOMPLETE`` is a one-line marker file a run writes into its directory before it trains and
removes when every result is written: a directory that still has it was interrupted, diverged or
crashed, and ``python -m benchmark.report`` lists it instead of tabulating it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from benchmark.config.schema import ConfigError
from benchmark.infra.results import ResultFormatError
from benchmark.infra.rundir import RunDir
from tasks.fileio import atomic_path

FORMAT = "algoreason-train-state-1"
STATE_FILE = RunDir.STATE
INCOMPLETE = RunDir.INCOMPLETE
FIELDS = ("format", "step", "model", "optimizer", "scheduler", "rng", "loop")
_RNG_KEYS = {"generator", "torch", "cuda", "numpy", "python"}


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: ``run_dir`` holds the last training state (``step``: None when the
    interrupt came before the first one was saved)."""

    def __init__(self, run_dir: Path, step: int | None):
        super().__init__(f"interrupted: {run_dir}")
        self.run_dir, self.step = run_dir, step


# ---------------------------------------------------------------------------- random generators
def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """The state of ``generator`` and of the global generators (torch CPU and CUDA, numpy, python)."""
    np_state = np.random.get_state(legacy=True)  # ('MT19937', keys (624,) uint32, pos, has_gauss, gauss)
    py_version, py_keys, py_gauss = random.getstate()
    state = dict(
        generator=generator.get_state(),
        torch=torch.get_rng_state(),
        numpy=dict(keys=torch.from_numpy(np_state[1].astype(np.int64)), pos=int(np_state[2]),
                   has_gauss=int(np_state[3]), gauss=float(np_state[4])),
        python=dict(version=py_version, keys=torch.tensor(py_keys, dtype=torch.int64), gauss=py_gauss),
    )
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    """Set ``generator`` and the global generators to what ``rng_state`` saved."""
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"], np_state["has_gauss"],
                         np_state["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(k) for k in py["keys"].tolist()), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------- the file
@dataclass(frozen=True)
class TrainState:
    """The training state after ``step`` optimizer steps, as ``train_state.pt`` holds it (module
    docstring): what ``read_train_state`` returns once every field is checked."""

    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    loop: dict[str, Any]

    def to_file(self) -> dict[str, Any]:
        """The dict ``torch.save`` writes, in the field order the file has always had."""
        return dict(format=FORMAT, step=self.step, model=self.model, optimizer=self.optimizer,
                    scheduler=self.scheduler, rng=self.rng, loop=self.loop)


def save_train_state(path: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any, generator: torch.Generator, loop: dict[str, Any]) -> None:
    """Write the training state after ``step`` optimizer steps to ``path``, atomically."""
    state = TrainState(step=step, model=model.state_dict(), optimizer=optimizer.state_dict(),
                       scheduler=scheduler.state_dict(), rng=rng_state(generator), loop=loop)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # a file object: identical runs, identical bytes
        torch.save(state.to_file(), handle)


_LEAVES = (type(None), bool, int, float, str, torch.Tensor)
MAX_STATE_NODES = 10_000_000  # values in the optimizer, scheduler and loop entries together


def _check_tree(value: Any, where: str, key: str, budget: list[int], depth: int = 0) -> None:
    """``value`` is plain data: None, bools, numbers, strings, tensors, and lists, tuples and dicts
    of those (dict keys strings or ints), at most 32 levels deep; the walk is bounded by ``budget``."""
    budget[0] -= 1
    if budget[0] < 0 or depth > 32:
        raise ConfigError(f"{where}: its {key} entry is nested too deeply or holds too many values.")
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            raise ConfigError(f"{where}: its {key} entry holds a {value.layout} tensor, not a dense one.")
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_tree(v, where, key, budget, depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise ConfigError(f"{where}: its {key} entry has a key of type {type(k).__name__}, not a string or int.")
            _check_tree(v, where, key, budget, depth + 1)
    elif not isinstance(value, _LEAVES):
        raise ConfigError(f"{where}: its {key} entry holds a {type(value).__name__}, which a training state never stores.")


def _check_rng(rng: Any, where: str) -> None:
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def byte_state(v: Any) -> bool:
        return isinstance(v, torch.Tensor) and v.dtype == torch.uint8 and v.dim() == 1 and v.layout == torch.strided

    numpy, python = rng.get("numpy"), rng.get("python")
    if not ({"generator", "torch", "numpy", "python"} <= set(rng) <= _RNG_KEYS
            and byte_state(rng["generator"]) and byte_state(rng["torch"])
            and (("cuda" not in rng) or (isinstance(rng["cuda"], (list, tuple)) and all(byte_state(c) for c in rng["cuda"])))
            and isinstance(numpy, dict) and set(numpy) == {"keys", "pos", "has_gauss", "gauss"}
            and isinstance(numpy["keys"], torch.Tensor) and tuple(numpy["keys"].shape) == (624,)
            and is_int(numpy["pos"]) and 0 <= numpy["pos"] <= 624 and is_int(numpy["has_gauss"])
            and isinstance(numpy["gauss"], float)
            and isinstance(python, dict) and set(python) == {"version", "keys", "gauss"} and is_int(python["version"])
            and isinstance(python["keys"], torch.Tensor) and tuple(python["keys"].shape) == (625,)
            and (python["gauss"] is None or isinstance(python["gauss"], float))):
        raise ConfigError(f"{where}: its rng entry must hold the generator states {sorted(_RNG_KEYS)} as saved.")


def _check_optimizer(opt: dict, where: str) -> None:
    groups, per_param = opt.get("param_groups"), opt.get("state")
    if not (set(opt) == {"state", "param_groups"} and isinstance(per_param, dict) and isinstance(groups, list)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)
            and all(isinstance(v, dict) for v in per_param.values())):
        raise ConfigError(f"{where}: its optimizer entry must be an optimizer's state_dict "
                          f"(a 'state' mapping and a list of 'param_groups').")


def read_train_state(path: Path, map_location: str | torch.device = "cpu", *, total_steps: int | None = None,
                     model: torch.nn.Module | None = None) -> TrainState:
    """The validated training state at ``path``; ``ConfigError`` (one sentence) for anything else.

    Read with the checkpoint's bounds (a regular file within ``MAX_CHECKPOINT_BYTES``, members
    uncompressed, tensors paid for by the file's bytes), then checked whole: the step within
    ``total_steps`` (the run's, when the caller knows it), the weights those of ``model`` (names,
    shapes, dtypes, when given), the optimizer a state_dict, the random generators as saved, and
    the scheduler and loop entries plain data.
    """
    from benchmark.infra.checkpoint import _check_file, _check_shapes, _check_tensors  # the one set of file bounds

    _check_file(path, "the training state", "delete it to restart that run's training from step 0")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # empty, truncated, random bytes, pickled objects
        raise ConfigError(f"cannot read the training state {path} ({type(err).__name__}); "
                          f"delete it to restart that run's training from step 0.") from err
    where = f"the training state {path}"
    if not isinstance(state, dict) or state.get("format") != FORMAT or set(state) != set(FIELDS):
        raise ConfigError(f"{where} is not a {FORMAT} file holding exactly the fields {list(FIELDS)}.")
    step = state["step"]
    if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
        raise ConfigError(f"{where} has no valid step count (got {step!r}).")
    if total_steps is not None and step > total_steps:
        raise ConfigError(f"{where} records step {step}, past the run's {total_steps} training steps; it belongs to "
                          f"another run or is damaged (delete it to restart that run's training from step 0).")
    if not (isinstance(state["model"], dict)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state["model"].items())):
        raise ConfigError(f"{where}: its model entry must map parameter names to tensors.")
    for key in ("optimizer", "scheduler", "loop", "rng"):
        if not isinstance(state[key], dict):
            raise ConfigError(f"{where}: its {key} entry must be a mapping.")
    _check_rng(state["rng"], where)
    _check_optimizer(state["optimizer"], where)
    budget = [MAX_STATE_NODES]
    for key in ("optimizer", "scheduler", "loop", "rng"):
        _check_tree(state[key], where, key, budget)
    every = []  # every tensor of the file: together no more bytes than the file has
    _gather(state, every, [MAX_STATE_NODES])
    _check_tensors({str(i): t for i, t in enumerate(every)}, Path(path).stat().st_size, where)
    if model is not None:
        _check_shapes(model, state["model"], type(model).__name__, where)
    return TrainState(**{key: state[key] for key in FIELDS if key != "format"})


def _gather(value: Any, out: list[torch.Tensor], budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        return
    if isinstance(value, torch.Tensor):
        out.append(value)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _gather(v, out, budget)
    elif isinstance(value, dict):
        for v in value.values():
            _gather(v, out, budget)


# ---------------------------------------------------------------------------- resume=<run dir>
# The settings that decide what a run computes: a resumed run must have them all as stored.
# Left out: where things go (results_dir, run_id, cache_dir), how it shows (progress), the device
# (a CPU can continue a GPU run), and train.checkpoint_every (it changes when states are saved,
# not what is trained).
RESUME_KEYS = ("pipeline", "task", "size", "model", "train", "eval", "seed")


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def check_resume(cfg: DictConfig) -> Path | None:
    """The run directory ``resume`` names (None without ``resume``), checked before anything is
    written: an interrupted run (config.yaml and the INCOMPLETE marker present) whose stored
    settings are those of ``cfg``; otherwise ``ConfigError`` with one sentence."""
    if cfg.get("resume") is None:
        return None
    run = RunDir(Path(cfg.resume).expanduser())
    run_dir, stored_path = run.path, run.config
    if not stored_path.is_file():
        raise ConfigError(f"resume={cfg.resume} is not a run directory (it has no config.yaml); give the directory "
                          f"an interrupted run printed.")
    if not run.is_incomplete():
        raise ConfigError(f"resume={cfg.resume} is a finished run (it has no {INCOMPLETE} marker); there is nothing to resume.")
    try:
        stored = run.read_config()
    except ResultFormatError as err:
        raise ConfigError(str(err)) from err
    stored.get("train", {}).pop("checkpoint_every", None)
    current = OmegaConf.to_container(cfg, resolve=True)
    current["train"].pop("checkpoint_every", None)
    old = _flat({k: stored.get(k) for k in RESUME_KEYS})
    new = _flat({k: current.get(k) for k in RESUME_KEYS})
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key):
            raise ConfigError(f"resume={cfg.resume} was run with {key}={old.get(key)!r}, not {new.get(key)!r}; resume "
                              f"with the options the run was started with (its config.yaml).")
    return run_dir


# ---------------------------------------------------------------------------- the marker
def mark_incomplete(run_dir: Path, note: str) -> None:
    RunDir(run_dir).mark_incomplete(note)


def mark_complete(run_dir: Path) -> None:
    RunDir(run_dir).mark_complete()


def is_incomplete(run_dir: Path) -> bool:
    return RunDir(run_dir).is_incomplete()


__all__ = ["FORMAT", "INCOMPLETE", "STATE_FILE", "RunInterrupted", "check_resume", "is_incomplete", "mark_complete", "mark_incomplete",
           "TrainState", "read_train_state", "restore_rng", "rng_state", "save_train_state"]
