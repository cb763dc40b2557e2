"""Crafted checkpoints are refused in one sentence with bounded memory, and saving is byte-identical.

A checkpoint's arguments decide the size of the model it names; ``load_checkpoint`` must compare
them with the stored weights before it allocates anything real (``benchmark.infra.checkpoint``).
The memory test runs the loads in a fresh interpreter and reads its peak resident size
(``ru_maxrss``) before and after: no wall-clock assertion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from benchmark.config.schema import ConfigError
from benchmark.infra.checkpoint import load_checkpoint, save_checkpoint
from benchmark.models.recurrent import RecurrentConvNet
from tasks.maze import MazeTask

ROOT = Path(__file__).resolve().parents[1]
MODEL = {"_target_": "benchmark.models.recurrent.RecurrentConvNet", "name": "shared", "width": 4, "depth": 1, "templates": 2, "recall": True}
TASK = {"_target_": "tasks.maze.MazeTask", "rendering": "compact"}
LIMIT_MB = 200

# name -> (model args replacing the stored ones, extra stored elements that make the file big enough
# to pass the size bound and reach the meta-device comparison)
CRAFTED = {
    "depth_1e5": (dict(depth=100000), 0),
    "depth_1e5_padded": (dict(depth=100000), 45000),  # a 178 kB file, as in the report
    "depth_40000_padded": (dict(depth=40000), 45000),  # within the size bound: stopped by the meta build's budget
    "depth_1e9": (dict(depth=10**9), 0),
    "width_1e9": (dict(width=10**9), 0),
    "width_20000": (dict(width=20000), 0),
    "width_20000_padded": (dict(width=20000), 40000),
    "width_1e30": (dict(width=10**30), 0),
    "templates_1e7": (dict(templates=10**7), 0),
    "templates_1e5_padded": (dict(templates=100000), 120000),
    "depth_negative": (dict(depth=-5), 0),
    "width_negative": (dict(width=-(10**12)), 0),
    "width_bool": (dict(width=True), 0),
    "width_float": (dict(width=2.5), 0),
    "depth_float_huge": (dict(depth=1e300), 0),
}


def _save(path: Path) -> dict:
    cfg = OmegaConf.create({"model": MODEL, "task": TASK})
    torch.manual_seed(0)
    model = RecurrentConvNet(MazeTask.spec, **{k: v for k, v in MODEL.items() if k != "_target_"})
    save_checkpoint(model, cfg, path)
    return torch.load(path, weights_only=True)


@pytest.fixture
def crafted(tmp_path) -> dict[str, Path]:
    raw = _save(tmp_path / "model.pt")
    paths = {}
    for name, (args, pad) in CRAFTED.items():
        ckpt = dict(raw, model=dict(raw["model"], args=dict(raw["model"]["args"], **args)))
        if pad:
            ckpt["state_dict"] = dict(raw["state_dict"], padding=torch.zeros(pad))
        paths[name] = tmp_path / f"{name}.pt"
        torch.save(ckpt, paths[name])
    return paths


def test_crafted_checkpoints_are_refused_in_one_sentence_with_bounded_memory(crafted, tmp_path):
    script = textwrap.dedent("""
        import json, resource, sys
        import torch
        from benchmark.config.schema import ConfigError
        from benchmark.infra.checkpoint import load_checkpoint
        torch.zeros(1)
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = {}
        for name, path in json.loads(sys.argv[1]).items():
            try:
                load_checkpoint(path)
                out[name] = None
            except ConfigError as err:
                out[name] = str(err)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(dict(messages=out, grown_kb=peak - start)))
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", script, json.dumps({k: str(v) for k, v in crafted.items()})],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, message in result["messages"].items():
        assert message is not None, f"{name} was loaded"
        assert "\n" not in message and message.endswith(".") and len(message) < 400, (name, message)
    assert result["grown_kb"] < LIMIT_MB * 1024, result  # ru_maxrss is in kB on Linux


def test_each_bound_refuses_what_it_is_for(crafted, tmp_path):
    with pytest.raises(ConfigError, match="out of bounds"):  # an argument beyond the stored weights
        load_checkpoint(crafted["depth_1e9"])
    with pytest.raises(ConfigError, match="far bigger model"):  # within them, but the meta build outgrows them
        load_checkpoint(crafted["width_20000_padded"])
    with pytest.raises(ConfigError, match="far bigger model"):
        load_checkpoint(crafted["depth_40000_padded"])
    raw = _save(tmp_path / "model.pt")  # within every budget, but the shapes differ: the comparison refuses
    torch.save(dict(raw, model=dict(raw["model"], args=dict(raw["model"]["args"], depth=2))), tmp_path / "depth2.pt")
    with pytest.raises(ConfigError, match="do not fit the model"):
        load_checkpoint(tmp_path / "depth2.pt")
    state = dict(raw["state_dict"], **{"bank.templates": raw["state_dict"]["bank.templates"].double()})
    torch.save(dict(raw, state_dict=state), tmp_path / "double.pt")
    with pytest.raises(ConfigError, match="torch.float64"):
        load_checkpoint(tmp_path / "double.pt")


def test_a_stride_zero_view_cannot_claim_memory(tmp_path):
    raw = _save(tmp_path / "model.pt")
    state = dict(raw["state_dict"])
    state["bank.templates"] = torch.zeros(1).expand(10**6, 4, 4, 3, 3)
    torch.save(dict(raw, state_dict=state), tmp_path / "view.pt")
    with pytest.raises(ConfigError, match="claim"):
        load_checkpoint(tmp_path / "view.pt")


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory", "compressed"])
def test_checkpoint_files_that_are_not_plain_archives_are_refused(tmp_path, kind):
    path = tmp_path / "model.pt"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would block forever
    elif kind == "dev_zero":
        path = Path("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    else:  # a zip bomb: the same archive with deflated members
        _save(tmp_path / "plain.pt")
        with zipfile.ZipFile(tmp_path / "plain.pt") as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                dst.writestr(info.filename, src.read(info))
    with pytest.raises(ConfigError) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value) and str(err.value).endswith(".")


def test_identical_saves_give_identical_bytes(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _save(tmp_path / "a" / "model.pt")
    _save(tmp_path / "b" / "model.pt")
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    model, _ = load_checkpoint(tmp_path / "a" / "model.pt")  # and it still loads
    assert isinstance(model, RecurrentConvNet)
