"""The configs: every option of every group validates, the main command's effective settings are
pinned, and every refusal of ``check_config`` is one sentence before anything is written."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path

import hydra.errors
import omegaconf.errors
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from benchmark.config.classification import ClassificationTrainConfig, check_classification_config
from benchmark.config.schema import ConfigError, EvalConfig, TrainConfig, check_config, check_run_settings
from benchmark.pipelines.algorithmic import build_model, build_task, instantiate_user, run
from tasks.base import TaskError

from conftest import PUZZLE_TASKS, TASKS, TINY, compose_config, config_groups, config_options


def _validate(cfg) -> None:
    """The checks a run makes before writing anything, on the config alone and then with its
    built task and model: ``check_config`` (puzzles) or the classification pipeline's checks."""
    if cfg.pipeline._target_ == "benchmark.pipelines.classification.main":
        check_run_settings(cfg)
        check_classification_config(cfg.size, cfg.train, cfg.eval)
        task = instantiate_user(cfg.task)
        build_model(cfg, task)
        return
    check_config(cfg)
    task = build_task(cfg)
    check_config(cfg, task, build_model(cfg, task))


# A group option that belongs to one pipeline (train=cifar_paper, model=shared) does not compose
# with the other pipeline's tasks: Hydra or OmegaConf refuse it, or the checks do.
MISMATCH = (ConfigError, hydra.errors.ConfigCompositionException, omegaconf.errors.OmegaConfBaseException)


def _group_cases() -> list[tuple[str, ...]]:
    cases = []
    for group in config_groups():
        for option in config_options(group):
            if group == "experiment":
                cases.append((f"+experiment={option}",))
            else:
                cases.append((f"{group}={option}",))
    return cases


@pytest.mark.parametrize("overrides", _group_cases(), ids=lambda o: " ".join(o))
def test_every_option_of_every_group_validates_with_some_task(overrides, tmp_path):
    accepted = []
    for task in TASKS:
        try:
            _validate(compose_config(f"task={task}", *overrides, f"results_dir={tmp_path}", "cache_dir=null"))
            accepted.append(task)
        except MISMATCH:
            pass
    assert accepted, f"{overrides} suits no task of {TASKS}"


@pytest.mark.parametrize("experiment", config_options("experiment"))
def test_every_point_of_an_experiment_sweep_validates(experiment, tmp_path):
    cfg = compose_config(f"+experiment={experiment}", hydra=True)
    params = cfg.hydra.sweeper.params or {}
    values = [[f"{key}={v}" for v in str(choices).split(",")] for key, choices in params.items()]
    for point in itertools.product(*values):
        _validate(compose_config(f"+experiment={experiment}", *point, f"results_dir={tmp_path}", "cache_dir=null"))


def test_the_main_command_composes_to_the_settings_of_the_reference_run():
    """``python -m benchmark task=maze size=train9_test15``: the values results/reference/main ran with."""
    cfg = OmegaConf.to_container(compose_config("task=maze", "size=train9_test15"), resolve=True)
    assert cfg["task"] == {"_target_": "tasks.maze.MazeTask", "rendering": "compact", "generator": "dfs", "percolation": 0.0,
                           "start": "random", "goal": "random"}
    assert cfg["size"] == {"train": 9, "test": [15], "n_train": 40000, "n_test": 1000, "n_val": None}  # n_val: protocol 1 (docs/protocol.md)
    assert cfg["model"] == {"_target_": "benchmark.models.recurrent.RecurrentConvNet", "name": "shared", "width": 32, "depth": 1,
                            "templates": 2, "coefficient_init": "orthogonal", "recall": True, "compile": False}
    assert cfg["train"] == {"epochs": 4, "batch_size": 64, "lr": 0.002, "weight_decay": 0.0002, "warmup_steps": 100, "clip": 1.0,
                            "alpha": 1.0, "iters": 20, "detach_extra": 20, "progressive_min_iters": 1, "init_noise": 0.0, "log_every": 50, "checkpoint_every": 200,
                            "loop_weight": 0.0, "loop_form": "squared", "curriculum_steps": 0, "curriculum_start": 8,
                            "stop_at_acc": None, "probe_size": 512, "ema_horizon": 0.4,
                            "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 0.002, "weight_decay": 0.0002},
                            "scheduler": {"_target_": "benchmark.training.optim.warmup_cosine_schedule", "_partial_": True,
                                          "warmup_steps": 100}}
    assert cfg["eval"] == {"iters": 100, "batch_size": 256, "fold_threshold": 0.99, "halt_after": 0}
    assert (cfg["seed"], cfg["device"], cfg["progress"], cfg["resume"], cfg["precision"]) == (0, "auto", True, None, "auto")
    # The schema's defaults are these defaults: a TrainConfig() in a test is the command line's.
    # The schema's defaults, its partials' ${train.*} interpolations resolved as a run resolves them.
    schema_train = OmegaConf.to_container(OmegaConf.create({"train": asdict(TrainConfig())}), resolve=True)["train"]
    assert schema_train == cfg["train"] and asdict(EvalConfig()) == cfg["eval"]


def test_every_train_config_keeps_what_it_does_not_change():
    """Each train YAML lists only its changes; the rest (detach_extra included) is the schema's."""
    for option in config_options("train"):
        composed = compose_config(f"train={option}").train
        schema = OmegaConf.get_type(composed)  # TrainConfig, or the image tasks' ClassificationTrainConfig
        assert schema in (TrainConfig, ClassificationTrainConfig) and set(composed) == {f.name for f in fields(schema)}
    assert compose_config("train=gpu").train.detach_extra == TrainConfig.detach_extra == 20
    assert compose_config("+experiment=maze_gpu").train.detach_extra == 20


STUDY_MODELS = ["recurrent", "shared_k2", "feedforward", "depth_k2", "shared_k1", "shared_k4", "depth_k2_tail", "depth_k2_loopreg"]


@pytest.mark.parametrize(
    "task,study,looped",
    [("maze", dict(size=dict(train=9, test=[15], n_train=20000, n_test=500, n_val=None), eval=dict(iters=100, batch_size=250, fold_threshold=0.99, halt_after=0),
                   train=dict(epochs=16, batch_size=64, lr=0.002, weight_decay=0.0002, warmup_steps=100, clip=1.0, iters=20, log_every=25,
                              checkpoint_every=200, stop_at_acc=0.99, probe_size=512, ema_horizon=None,
                              curriculum_steps=0, curriculum_start=8, progressive_min_iters=1, init_noise=0.0)),
      dict(alpha=1.0, detach_extra=20)),
     ("prefix_sums", dict(size=dict(train=32, test=[128, 512], n_train=10000, n_test=200, n_val=None),
                          eval=dict(iters=300, batch_size=500, fold_threshold=0.99, halt_after=20),
                          train=dict(epochs=60, batch_size=100, lr=0.002, weight_decay=0.0002, warmup_steps=100, clip=1.0, iters=30,
                                     log_every=20, checkpoint_every=200, stop_at_acc=0.99, probe_size=512, ema_horizon=None,
                                     curriculum_steps=600, curriculum_start=8, progressive_min_iters=1, init_noise=0.0)),
      dict(alpha=1.0, detach_extra=0))],
)
def test_the_study_experiments_give_each_family_its_recipe(task, study, looped):
    """+experiment=study_<task>: the shared settings spelt out, training until 99% on the probe or
    the cap, two one-thread jobs; the loss and init from each family's model config: the
    full-depth loss and the depth-wise init for the fixed-depth stacks, the task's progressive
    loss for the looped blocks."""
    cfg = compose_config(f"+experiment=study_{task}", hydra=True)
    assert cfg.hydra.sweeper.params.seed == "0,1,2" and cfg.hydra.launcher.n_jobs == 2
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    models = cfg.hydra.sweeper.params.model.split(",")
    assert models == STUDY_MODELS
    expected = {"depth_k2": (20 if task == "maze" else 30, 2), "depth_k2_tail": (10, 2), "shared_k1": (1, 1), "shared_k4": (1, 4)}
    for model in models:
        c = OmegaConf.to_container(compose_config(f"+experiment=study_{task}", f"model={model}"), resolve=True)
        assert c["task"]["_target_"].endswith({"maze": "MazeTask", "prefix_sums": "PrefixSumsTask"}[task])
        assert c["size"] == study["size"] and c["eval"] == study["eval"]
        fixed_depth = model == "feedforward" or model.startswith("depth_")
        recipe = dict(alpha=0.0, detach_extra=looped["detach_extra"]) if fixed_depth else looped
        loop = dict(loop_weight=0.1, loop_form="abs") if model == "depth_k2_loopreg" else dict(loop_weight=0.0, loop_form="squared")
        optimizer, scheduler = c["train"].pop("optimizer"), c["train"].pop("scheduler")
        assert (optimizer["lr"], scheduler["warmup_steps"]) == (c["train"]["lr"], c["train"]["warmup_steps"])
        assert c["train"] == {**study["train"], **recipe, **loop}
        assert c["model"]["name"] == model and c["model"]["width"] == 32 and c["model"]["recall"] is True
        if fixed_depth:
            # The tail's looped last position starts as a hard-recurrent block's (kaiming_loop).
            recall_init = "kaiming_loop" if model == "depth_k2_tail" else "kaiming"
            assert (c["model"]["recall_init"], c["model"]["block_scale"]) == (recall_init, 0.16)
        if model in expected:
            assert (c["model"]["depth"], c["model"]["templates"]) == expected[model]
        # The in-block banks start at unit rows (their block at an unshared block's scale); the
        # depth-wise ones keep the paper's orthogonal rows (block_scale sets their scale).
        in_block = model.startswith("shared_k")
        assert c["model"].get("coefficient_init") == ("orthogonal_unit" if in_block else None if model == "feedforward" else "orthogonal")


def test_the_width_64_prefix_study_changes_only_the_width():
    """+experiment=study_prefix_sums_w64 is study_prefix_sums with model.width=64 for every model of
    its sweep, and nothing else (its committed runs are compared with the width-32 study's)."""
    wide = compose_config("+experiment=study_prefix_sums_w64", hydra=True)
    assert wide.hydra.sweeper.params == compose_config("+experiment=study_prefix_sums", hydra=True).hydra.sweeper.params
    for model in STUDY_MODELS:
        a = OmegaConf.to_container(compose_config("+experiment=study_prefix_sums_w64", f"model={model}"), resolve=True)
        b = OmegaConf.to_container(compose_config("+experiment=study_prefix_sums", f"model={model}"), resolve=True)
        assert (a["model"].pop("width"), b["model"].pop("width")) == (64, 32)
        assert {k: v for k, v in a.items() if k != "run_id"} == {k: v for k, v in b.items() if k != "run_id"}


# ------------------------------------------------------------------ refusals, through run(cfg)
REFUSALS = [
    ("seed=-1", "seed must be an integer in [0, 4294967295], got -1."),
    ("seed=abc", "seed must be an integer in [0, 4294967295], got 'abc'."),
    ("seed=1.5", "seed must be an integer in [0, 4294967295], got 1.5."),
    ("seed=4294967296", "seed must be an integer in [0, 4294967295], got 4294967296."),
    ("device=meta", "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'meta'."),
    ("device=mps", "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'mps'."),
    ("progress=maybe", "progress must be true or false, got 'maybe'."),
    ("train.batch_size=65", "train.batch_size (65) must not exceed the training set (size.n_train=64)."),
    ("model.width=1", "model.width must be an integer >= 2, got 1."),
    ("model.templates=0", "model.templates must be an integer >= 1 or null (unshared), got 0."),
    ("train.lr=inf", "train.lr must be a finite number >= 0, got inf."),
    ("train.optimizer._target_=os.system", "train.optimizer must be a partial (_partial_: true) of one of torch.optim.AdamW"),
    ("train.scheduler._target_=builtins.exec", "train.scheduler must be a partial (_partial_: true) of one of"),
    ("train.optimizer._partial_=false", "got 'torch.optim.AdamW'."),
    ("train.optimizer.lr=0.5", "train.optimizer.lr (0.5) differs from train.lr (0.002); set train.lr, which the optimizer takes."),
    ("eval.halt_after=-1", "eval.halt_after must be an integer >= 0 (0: no halting), got -1."),
    ("train.loop_form=l1", "train.loop_form must be one of squared, abs, got 'l1'."),
    ("train.curriculum_steps=-1", "train.curriculum_steps must be an integer >= 0 (0: no length curriculum), got -1."),
    ("train.curriculum_steps=100", "train.curriculum_steps needs a task whose puzzles can be cut to smaller ones "
                                   "(prefix_sums), and maze puzzles cannot; set train.curriculum_steps=0."),
    ("run_id=/abs/path", "run_id must be a single directory name"),
    ("run_id=..", "run_id must be a single directory name"),
    ("run_id=a/b", "run_id must be a single directory name"),
    ("model.name=../../..", "model.name must be a single directory name"),
    ("size.train=8", "maze size must be an odd integer >= 3"),
    ("task.rendering=fancy", "maze rendering must be 'compact' or 'e2h', got 'fancy'."),
    ("+task.colour=red", "maze takes the options rendering, generator, percolation, start, goal, got 'colour'."),
    ("+variant=shared_k2", "the config has no key 'variant' (a removed option or a typo?)"),
]


def _assert_nothing_written(cfg) -> None:
    assert not Path(cfg.results_dir).exists() and not Path(cfg.cache_dir).exists()


@pytest.mark.parametrize("override,message", REFUSALS, ids=[o for o, _ in REFUSALS])
def test_bad_values_are_refused_before_anything_is_written(make_cfg, override, message):
    cfg = make_cfg(override)
    with pytest.raises(ConfigError) as err:
        run(cfg)
    text = str(err.value)
    assert message in text and text.endswith(".") and "\n" not in text
    _assert_nothing_written(cfg)


@pytest.mark.parametrize("start", [0, 9])
def test_a_curriculum_start_outside_the_training_sizes_is_refused(make_cfg, start):
    cfg = make_cfg("task=prefix_sums", "size=train8_test16", "train=prefix_sums", "train.curriculum_steps=10",
                   f"train.curriculum_start={start}", "size.n_train=64", "train.batch_size=16")
    with pytest.raises(ConfigError, match=f"train.curriculum_start must be a size from 1 to the training size 8, got {start}."):
        run(cfg)
    _assert_nothing_written(cfg)


def test_a_model_without_weights_for_the_training_iterations_is_refused(make_cfg):
    cfg = make_cfg("model=feedforward", "model.depth=5", "train.iters=20")
    with pytest.raises(ConfigError, match=r"model 'feedforward' has weights for at most 5 iterations, fewer than train\.iters=20"):
        run(cfg)
    _assert_nothing_written(cfg)


def test_cuda_without_cuda_is_refused(make_cfg, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cfg = make_cfg("device=cuda:0")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        run(cfg)
    _assert_nothing_written(cfg)


def test_results_dir_that_is_a_file(make_cfg, tmp_path):
    (tmp_path / "file").write_text("x")
    cfg = make_cfg(f"results_dir={tmp_path / 'file'}")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        run(cfg)
    cfg = make_cfg(f"results_dir={tmp_path / 'file' / 'below'}")
    with pytest.raises(ConfigError, match="cannot be created because .* is a file"):
        run(cfg)
    assert not Path(cfg.cache_dir).exists() and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_results_dir_on_a_missing_mount(make_cfg, tmp_path):
    cfg = make_cfg("results_dir=/algoreason-missing-mount/results")
    with pytest.raises(ConfigError, match="top of the file system"):
        run(cfg)
    assert not Path("/algoreason-missing-mount").exists() and not Path(cfg.cache_dir).exists()


def test_unwritable_results_dir(make_cfg, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # chmod does not stop root (the CI user may be root), so the refusal is simulated where it is read.
    monkeypatch.setattr("benchmark.config.schema.os.access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    cfg = make_cfg(f"results_dir={locked / 'results'}")
    with pytest.raises(ConfigError, match="is not writable"):
        run(cfg)
    assert list(locked.iterdir()) == [] and not Path(cfg.cache_dir).exists()


def test_a_directory_where_a_cache_file_should_be(make_cfg):
    cfg = make_cfg("size.train=5", "size.test=[7]")
    task = build_task(cfg)
    blocked = task.cache_path(cfg.cache_dir, 7, cfg.size.n_test, 1)  # the test set of seed 0
    blocked.mkdir(parents=True)
    with pytest.raises(ConfigError, match="is a directory; remove it or choose another cache_dir"):
        run(cfg)
    assert not Path(cfg.results_dir).exists() and [p.name for p in Path(cfg.cache_dir).iterdir()] == [blocked.name]
    with pytest.raises(TaskError, match="is a directory"):  # the task refuses it too (python -m benchmark.evaluate)
        task.dataset(7, cfg.size.n_test, seed=1, cache_dir=cfg.cache_dir)


def test_a_bug_in_a_constructor_keeps_its_traceback(make_cfg, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr("benchmark.models.recurrent.RecurrentConvNet.__init__", broken)
    cfg = make_cfg()
    with pytest.raises(Exception) as err:
        run(cfg)
    assert not isinstance(err.value, ConfigError) and "a bug, not a user error" in repr(err.value.__cause__ or err.value)
    assert not Path(cfg.results_dir).exists()


# ------------------------------------------------------------------ refusals, through the command line
def _cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "benchmark", f"results_dir={tmp_path / 'results'}", f"cache_dir={tmp_path / 'cache'}", *TINY, *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("override", ["seed=-1", "device=mps", "run_id=/abs/path", "model=feedforward model.depth=5 train.iters=20"])
def test_command_line_refusals_exit_2_with_one_sentence(tmp_path, override):
    proc = _cli(tmp_path, *override.split())
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and proc.stderr.rstrip().endswith(".")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("override", ["model.recall=maybe", "train.lr=abc"])
def test_type_errors_on_schema_keys_are_refused_by_hydra(tmp_path, override):
    proc = _cli(tmp_path, override)
    assert proc.returncode != 0 and override.split("=")[0].split(".")[1] in proc.stderr
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ tasks: one options dataclass each
@pytest.mark.parametrize("task_name", PUZZLE_TASKS)
def test_every_task_option_is_part_of_the_cache_key(task_name):
    task = instantiate(compose_config(f"task={task_name}").task)
    for field in fields(task.Options):
        base = asdict(task.options)
        value = base[field.name]
        # Another accepted value of each text option (maze: rendering, generator, start, goal).
        other_text = {"compact": "e2h", "e2h": "compact", "dfs": "wilson", "random": "dead_end", "dead_end": "random"}
        changed = {str: other_text.get, float: lambda v: v / 2 if v else 0.1,
                   int: lambda v: v + 1, bool: lambda v: not v}[type(value)](value)
        if field.name == "cost_min":
            base["cost_max"] += 1  # room for cost_min + 1 (shortest_path_unit has cost_min == cost_max)
        key = type(task)(**base).cache_key(9, 10, 0)
        other = type(task)(**{**base, field.name: changed})
        assert other.cache_key(9, 10, 0) != key, field.name


@pytest.mark.parametrize("task_name", PUZZLE_TASKS)
def test_every_task_config_lists_the_options_of_its_dataclass(task_name):
    node = compose_config(f"task={task_name}").task
    task = instantiate(node)
    options = {k: v for k, v in node.items() if k != "_target_"}
    assert set(options) == {f.name for f in fields(task.Options)} and asdict(task.options) == options
    if task_name == task.name:  # the task's own option shows the defaults; a variant (shortest_path_unit) changes some
        assert options == asdict(task.Options())


@pytest.mark.parametrize(
    "task,scale",
    [("maze", dict(task={"_target_": "tasks.maze.MazeTask", "rendering": "e2h", "generator": "dfs", "percolation": 0.0,
                                 "start": "random", "goal": "random"}, width=128, n_train=50000,
                   train=dict(iters=30, batch_size=128, lr=0.001, epochs=40, detach_extra=20))),
     ("prefix_sums", dict(task={"_target_": "tasks.prefix_sums.PrefixSumsTask"}, width=400, n_train=10000,
                          train=dict(iters=30, batch_size=100, lr=0.001, epochs=40, detach_extra=0)))],
)
def test_train_paper_composes_to_the_published_scale_of_each_task(task, scale):
    """``python -m benchmark task=<task> train=paper``: the published width, iterations, training
    set and rendering (reference.md); the command line still wins; other tasks keep their own."""
    cfg = OmegaConf.to_container(compose_config(f"task={task}", "train=paper"), resolve=True)
    assert cfg["task"] == scale["task"] and cfg["model"]["width"] == scale["width"] and cfg["size"]["n_train"] == scale["n_train"]
    assert {k: cfg["train"][k] for k in scale["train"]} == scale["train"]
    assert set(cfg) == set(OmegaConf.to_container(compose_config(f"task={task}")))  # no key of its own
    mine = compose_config(f"task={task}", "train=paper", "model.width=64", "train.batch_size=32")
    assert (mine.model.width, mine.train.batch_size) == (64, 32)
    assert compose_config(f"task={task}", "train=gpu").model.width == 32  # only train=paper brings the scale
    _validate(compose_config(f"task={task}", "train=paper", *TINY, "results_dir=/tmp/unused", "cache_dir=null"))


def test_the_maze_gpu_experiment_runs_at_the_published_scale_of_train_paper():
    gpu = OmegaConf.to_container(compose_config("+experiment=maze_gpu"), resolve=True)
    paper = OmegaConf.to_container(compose_config("task=maze", "train=paper"), resolve=True)
    assert gpu["task"] == paper["task"] and gpu["model"] == paper["model"] and gpu["train"] == paper["train"]
    assert gpu["size"] == {**paper["size"], "train": 9, "test": [13, 15, 33, 59]}
    assert gpu["eval"]["iters"] == 300
