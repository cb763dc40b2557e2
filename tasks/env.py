"""Gymnasium interface: every task as a one-step environment.

An episode is one puzzle. ``reset`` draws it (from the environment's own seeded generator,
so ``reset(seed=...)`` is reproducible) and returns its input as the observation; ``step``
takes a whole solution (a class index per position, an element of ``action_space``), scores
it with the task's own verifier and ends the episode: reward 1.0 if correct else 0.0,
``terminated=True``, ``info={"correct": bool}``. A solution outside ``action_space`` (wrong
shape, non-integer dtype, out-of-range class) raises ``ValueError``; it is never scored 0.

Importing this module registers the built-in environments (``import tasks.env``), each declared
beside its class by ``tasks.registry.register_task``::

    algoreason/Maze-v0          tasks.maze.MazeTask              size 9   (rendering=...)
    algoreason/PrefixSums-v0    tasks.prefix_sums.PrefixSumsTask  size 32
    algoreason/ShortestPath-v0  tasks.shortest_path.ShortestPathTask size 12

``gymnasium.make("tasks.env:algoreason/Maze-v0")`` imports it for you. Keyword arguments to
``gymnasium.make`` override the size and pass task options through, e.g.
``gymnasium.make("algoreason/Maze-v0", size=15, rendering="e2h")``. Plugin packages register
their own tasks' environments with ``register_task_env`` (``tasks.registry``); ``TaskEnv`` can also be built directly from a registered task name, a Task
instance, a Task class or an import path.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium
import numpy as np
import torch

from tasks.base import Task
from tasks.registry import ENTRY_POINT, import_builtins, register_task_env

__all__ = ["ENTRY_POINT", "TaskEnv", "register_task_env", "registered_tasks", "resolve_task"]


def registered_tasks() -> dict[str, str]:
    """Every registered task ``name -> "module:Class"``: the project's own (``tasks.registry.TASKS``),
    then those of installed plugins (the ``algoreason.tasks`` entry-point group)."""
    from importlib.metadata import entry_points

    table = dict(import_builtins())
    for point in entry_points(group="algoreason.tasks"):
        table.setdefault(point.name, point.value)
    return table


def _task_path(task: str) -> str:
    """The ``"module:Class"`` a string names: a registered task name (``"maze"``) or the import path
    of a registered class first; otherwise an import path as given, which is how a plugin's
    environment names its class (``register_task_env``; docs/adding_a_task.md)."""
    table = registered_tasks()
    if task in table:
        return table[task]
    for path in table.values():
        if task in (path, path.replace(":", ".")):
            return path
    module_name, sep, attr = task.partition(":") if ":" in task else task.rpartition(".")
    if not sep or not module_name or not attr:
        raise ValueError(f"task must be a registered task name ({', '.join(sorted(table))}) or an import path "
                         f"'package.module.Class', got {task!r}.")
    return f"{module_name}:{attr}"


def resolve_task(task: Task | type[Task] | str, **task_options: Any) -> Task:
    """A Task instance from an instance, a Task subclass, a registered task name or an import path.

    A string is looked up among the registered tasks first (``"maze"``, ``"tasks.maze.MazeTask"``);
    any other is imported as ``"package.module.Class"`` or ``"package.module:Class"`` (a plugin's
    class), and one that is not importable is a ``ValueError`` of one sentence. Options are passed
    to the class's constructor (they are not allowed with an instance).
    """
    if isinstance(task, Task):
        if task_options:
            raise TypeError(f"task options {sorted(task_options)} can only be given with a task class or import path.")
        return task
    if isinstance(task, str):
        module_name, _, attr = _task_path(task).partition(":")
        try:
            task = getattr(importlib.import_module(module_name), attr)
        except Exception as err:  # not installed, broken on import, no such attribute: not a task this can build
            first_line = (str(err).splitlines() or [""])[0]
            raise ValueError(f"task {task!r} is neither a registered task name ({', '.join(sorted(registered_tasks()))}) "
                             f"nor an importable class ({type(err).__name__}: {first_line}).") from err
    if not (isinstance(task, type) and issubclass(task, Task)):
        raise TypeError(f"task must be a Task instance, a Task subclass or an import path to one, got {task!r}.")
    return task(**task_options)


class TaskEnv(gymnasium.Env):
    """One puzzle of ``task`` at ``size`` per episode; one step submits a whole solution.

    ``task`` is a Task instance, a Task subclass or an import path (``"tasks.maze.MazeTask"``);
    ``task_options`` go to the class's constructor.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self, task: Task | type[Task] | str, size: int, render_mode: str | None = None, **task_options: Any
    ) -> None:
        if render_mode is not None:
            raise ValueError(f"TaskEnv has no render modes, got render_mode={render_mode!r}.")
        self.task = resolve_task(task, **task_options)
        self.task.check_size(size)
        self.size = size
        self.render_mode = None
        self.observation_space = self.task.observation_space(size)
        self.action_space = self.task.solution_space(size)
        self._puzzle: tuple[np.ndarray, np.ndarray] | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        inputs, targets = self.task.sample(self.size, self.np_random)
        self._puzzle = (inputs, targets)
        return inputs.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._puzzle is None:
            raise RuntimeError("TaskEnv.step() needs a puzzle: call reset() first (each episode is one step).")
        solution = np.asarray(action)
        if not self.action_space.contains(solution):
            raise ValueError(
                f"the solution must be an element of {self.action_space} (an integer array of shape "
                f"{self.action_space.shape}), got an array of dtype {solution.dtype} and shape {solution.shape}."
            )
        inputs, targets = self._puzzle
        self._puzzle = None  # one submission per puzzle
        correct = bool(
            self.task.score(
                torch.from_numpy(inputs[None]),
                torch.from_numpy(targets[None]),
                torch.from_numpy(solution.astype(np.int64)[None]),
            )[0]
        )
        return inputs.copy(), 1.0 if correct else 0.0, True, False, {"correct": correct}


# Every task module's ``@register_task(..., env_id=...)`` registers its environment as it is
# imported: import them all, so that importing this module registers every built-in environment.
import_builtins()
