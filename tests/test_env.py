"""Every task as a gymnasium environment, parametrized over the `task` config group (a new task is
tested without editing this file)."""

from dataclasses import asdict
import warnings

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from hydra.utils import instantiate

import tasks.env  # noqa: F401  (registers the environments)
from tasks.env import ENTRY_POINT, TaskEnv, register_task_env
from tasks.prefix_sums import PrefixSumsTask
from tasks.shortest_path import ShortestPathTask

from conftest import PUZZLE_TASKS, compose_config


def make_env(task_name: str) -> TaskEnv:
    """The environment of a task config, at the training size of the task's own default size config."""
    cfg = compose_config(f"task={task_name}")
    return TaskEnv(instantiate(cfg.task), size=cfg.size.train)


@pytest.mark.parametrize("task_name", PUZZLE_TASKS)
def test_every_task_config_has_a_registered_environment(task_name):
    target = compose_config(f"task={task_name}").task._target_
    registered = [spec for spec in gymnasium.registry.values() if spec.entry_point == ENTRY_POINT and spec.kwargs["task"] == target]
    assert len(registered) == 1, f"no gymnasium id registered for {target}"
    env = gymnasium.make(registered[0].id)
    assert isinstance(env.unwrapped.task, type(instantiate(compose_config(f"task={task_name}").task)))


def true_solution(env):
    return env.unwrapped._puzzle[1].copy()


@pytest.mark.parametrize(
    "env_id,obs_shape,act_shape",
    [("algoreason/PrefixSums-v0", (1, 32), (32,)), ("algoreason/ShortestPath-v0", (4, 12, 12), (12, 12)),
     ("algoreason/Maze-v0", (3, 11, 11), (11, 11))],
)
def test_registered_ids_and_their_default_sizes(env_id, obs_shape, act_shape):
    env = gymnasium.make(env_id)
    assert env.observation_space.shape == obs_shape and env.action_space.shape == act_shape


@pytest.mark.parametrize("task_name", PUZZLE_TASKS)
def test_check_env(task_name):
    env = make_env(task_name)
    assert env.observation_space.shape[1:] == env.action_space.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checker's advice (e.g. unbounded boxes) is not a failure
        check_env(env)
    env.close()


@pytest.mark.parametrize("task_name", PUZZLE_TASKS)
def test_correct_and_wrong_solutions(task_name):
    env = make_env(task_name)
    obs, info = env.reset(seed=11)
    assert env.observation_space.contains(obs) and isinstance(info, dict)
    obs2, reward, terminated, truncated, info = env.step(true_solution(env))
    assert (reward, terminated, truncated, info) == (1.0, True, False, {"correct": True})
    assert np.array_equal(obs, obs2)

    env.reset(seed=11)
    wrong = true_solution(env)
    valid = env.unwrapped.task.valid(torch.from_numpy(obs[None]))[0].numpy()
    wrong[np.unravel_index(np.flatnonzero(valid)[0], wrong.shape)] ^= 1
    _, reward, terminated, truncated, info = env.step(wrong)
    assert (reward, terminated, truncated, info) == (0.0, True, False, {"correct": False})


@pytest.mark.parametrize("task_name", PUZZLE_TASKS)
def test_bad_solutions_raise(task_name):
    env = make_env(task_name)
    env.reset(seed=0)
    good = true_solution(env)
    bad = [
        good.astype(np.float32),  # wrong dtype
        good.ravel()[:-1],  # wrong shape
        good[None],  # batched instead of one solution
        np.full_like(good, 2),  # out-of-range class
        "not an array",
    ]
    for solution in bad:
        with pytest.raises(ValueError, match="MultiDiscrete") as err:
            env.step(solution)
        assert str(env.action_space) in str(err.value)
    # Lists of ints are fine; the puzzle is still open after the rejected submissions.
    assert env.step(good.tolist())[1] == 1.0
    with pytest.raises(RuntimeError, match="reset"):
        env.step(good)  # one submission per episode


def test_seeding_is_reproducible():
    env = gymnasium.make("algoreason/ShortestPath-v0")
    a, _ = env.reset(seed=3)
    b, _ = env.reset()
    c, _ = env.reset(seed=3)
    assert np.array_equal(a, c) and not np.array_equal(a, b)


def test_make_overrides_and_module_prefix():
    env = gymnasium.make("tasks.env:algoreason/PrefixSums-v0", size=7)
    assert env.observation_space.shape == (1, 7)
    env = gymnasium.make("algoreason/ShortestPath-v0", size=6, cost_max=1, obstacle_density=0.1)
    task = env.unwrapped.task
    assert asdict(task.options) == {"obstacle_density": 0.1, "cost_min": 1, "cost_max": 1, "unique_path": False}
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 6, 6) and set(np.unique(obs[3])) <= {0.0, 1.0}


def test_maze_rendering_kwarg():
    compact = gymnasium.make("algoreason/Maze-v0")
    e2h = gymnasium.make("algoreason/Maze-v0", rendering="e2h")
    assert asdict(e2h.unwrapped.task.options)["rendering"] == "e2h"
    assert compact.observation_space.shape != e2h.observation_space.shape


def test_task_env_accepts_instances_classes_and_paths():
    for task in (PrefixSumsTask(), PrefixSumsTask, "tasks.prefix_sums.PrefixSumsTask", "tasks.prefix_sums:PrefixSumsTask"):
        env = TaskEnv(task, size=5)
        assert isinstance(env.task, PrefixSumsTask) and env.observation_space.shape == (1, 5)
    env = TaskEnv(ShortestPathTask, size=5, cost_max=3)
    assert env.task.options.cost_max == 3
    with pytest.raises(TypeError):
        TaskEnv(PrefixSumsTask(), size=5, cost_max=3)
    with pytest.raises(TypeError):
        TaskEnv("tasks.env.TaskEnv", size=5)
    with pytest.raises(ValueError, match="integer >= 4"):  # TaskError is a ValueError
        TaskEnv(ShortestPathTask, size=3)


def test_register_task_env_for_plugins():
    register_task_env("algoreason-test/Parity-v0", "tasks.prefix_sums.PrefixSumsTask", 9)
    register_task_env("algoreason-test/Parity-v0", "tasks.prefix_sums.PrefixSumsTask", 9)  # idempotent
    env = gymnasium.make("algoreason-test/Parity-v0")
    assert env.observation_space.shape == (1, 9)
    # Registering the built-ins again (as a second import would) neither warns nor fails.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_task_env("algoreason/PrefixSums-v0", "tasks.prefix_sums.PrefixSumsTask", 32)
