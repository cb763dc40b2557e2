"""The project's task classes, registered by a decorator beside each class.

    @register_task("maze", env_id="algoreason/Maze-v0", env_size=9)
    class MazeTask(Task): ...

adds ``"maze" -> "tasks.maze:MazeTask"`` to ``TASKS`` (the table of task classes a checkpoint
may name, read by ``benchmark.models.registry``) and, with ``env_id``, registers the task's
one-step gymnasium environment (``tasks.env.TaskEnv`` at ``env_size``, ``env_options`` passed to
the task) for ``gymnasium.make``. ``import_builtins()`` imports every module of the ``tasks``
package, so importing ``tasks.env`` or ``benchmark.models.registry`` registers them all.

Outside packages register a task for checkpoints through the ``algoreason.tasks`` entry-point
group of their own ``pyproject.toml``, and its environment with ``register_task_env``
(docs/adding_a_task.md): what a checkpoint may name never depends on what happens to be imported.

This module imports only gymnasium (the environment's entry point is the string
``"tasks.env:TaskEnv"``), so every task module can use the decorator without import cycles;
nothing here imports ``benchmark``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

import gymnasium

ENTRY_POINT = "tasks.env:TaskEnv"

# Registered name -> "module:Class" of the project's task classes (filled by ``register_task``).
TASKS: dict[str, str] = {}

T = TypeVar("T", bound=type)


def register_task_env(env_id: str, task_target: str, default_size: int, **default_options: Any) -> None:
    """Register ``env_id`` for ``gymnasium.make`` (a no-op if it is already registered).

    ``task_target`` is the import path of a Task subclass (``"my_pkg.tasks.MyTask"``);
    ``default_size`` and ``default_options`` can be overridden by ``gymnasium.make`` kwargs.
    """
    if env_id in gymnasium.registry:
        return
    gymnasium.register(
        id=env_id,
        entry_point=ENTRY_POINT,
        kwargs={"task": task_target, "size": default_size, **default_options},
    )


def register_task(name: str, *, env_id: str | None = None, env_size: int | None = None,
                  **env_options: Any) -> Callable[[T], T]:
    """Class decorator: register a project task class under ``name`` and, given ``env_id`` and
    ``env_size``, its gymnasium environment. A name is registered once: a second class under the
    same name is a ``ValueError``."""
    if (env_id is None) != (env_size is None) or (env_options and env_id is None):
        raise TypeError(f"register_task({name!r}): env_id and env_size go together (env options need them).")

    def decorate(cls: T) -> T:
        if not isinstance(cls, type):
            raise TypeError(f"@register_task({name!r}) decorates a class, got {cls!r}.")
        path = f"{cls.__module__}:{cls.__qualname__}"
        if TASKS.get(name, path) != path:
            raise ValueError(f"task name {name!r} is already registered for {TASKS[name]}.")
        TASKS[name] = path
        if env_id is not None:
            register_task_env(env_id, f"{cls.__module__}.{cls.__qualname__}", env_size, **env_options)
        return cls

    return decorate


def import_builtins() -> dict[str, str]:
    """Import every module of the ``tasks`` package (their decorators register the built-in
    tasks and environments); returns ``TASKS``."""
    package = importlib.import_module("tasks")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"tasks.{module.name}")
    return TASKS


__all__ = ["ENTRY_POINT", "TASKS", "import_builtins", "register_task", "register_task_env"]
