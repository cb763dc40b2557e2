"""benchmark.devtools.gpu_cifar_throughput: its JSON and table on the CPU (--tiny), and the real models on CUDA."""

from __future__ import annotations

import json

import pytest
import torch

from benchmark.models.wide_resnet import WideResNet
from tasks.base import TaskSpec

import importlib


@pytest.fixture(scope="module")
def script():
    return importlib.import_module("benchmark.devtools.gpu_cifar_throughput")


def parameters(depth: int, widen: int, templates: int | None) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in WideResNet(TaskSpec(2, 3, 10), depth=depth, widen=widen, templates=templates).parameters())


def test_tiny_run_on_the_cpu_writes_the_figures_and_the_table(script, tmp_path, capsys):
    out = tmp_path / "throughput.json"
    script.main(["--tiny", "--device", "cpu", "--steps", "2", "--warmup", "1", "--batch-size", "4", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["device"].startswith("cpu") and data["torch"] == torch.__version__
    assert (data["autocast"], data["channels_last"]) == ("off", False)  # the CPU path of benchmark.pipelines.classification.Classifier
    assert (data["batch_size"], data["warmup_steps"], data["steps"]) == (4, 1, 2)
    assert [m["model"] for m in data["models"]] == ["wrn-16-1", "swrn-16-1-1"]
    assert [m["parameters"] for m in data["models"]] == [parameters(16, 1, None), parameters(16, 1, 1)]
    for m in data["models"]:
        assert m["timed_images"] == 2 * 4 and m["peak_memory_bytes"] is None
        assert m["images_per_s"] > 0 and m["images_per_s"] == pytest.approx(m["timed_images"] / m["seconds"])
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith(f"Training throughput on {data['device']}: torch")
    assert table[2:4] == ["| model | parameters | images/s | peak memory (GiB) |", "|---|---|---|---|"]
    assert table[4].startswith(f"| wrn-16-1 | {parameters(16, 1, None):,} | ") and table[4].endswith(" | - |")


def test_bad_counts_are_refused_in_one_sentence(script, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        script.main(["--tiny", "--batch-size", "1", "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--batch-size at least 2" in err and not (tmp_path / "x.json").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_wrn_28_10_and_swrn_28_10_1_on_the_gpu(script, tmp_path):
    out = tmp_path / "throughput.json"
    script.main(["--steps", "5", "--warmup", "2", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["device"] == torch.cuda.get_device_name() and (data["autocast"], data["channels_last"]) == ("bfloat16", True)
    assert [(m["model"], m["parameters"]) for m in data["models"]] == [("wrn-28-10", 36_479_194), ("swrn-28-10-1", 12_287_212)]
    for m in data["models"]:
        assert m["timed_images"] == 5 * 128 and m["images_per_s"] > 0 and m["peak_memory_bytes"] > 0
