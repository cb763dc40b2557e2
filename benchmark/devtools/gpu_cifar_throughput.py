"""Training throughput and peak memory of WRN-28-10 and SWRN-28-10-1 on CIFAR-shaped data.

    python -m benchmark.devtools.gpu_cifar_throughput [--steps 50] [--warmup 10] [--out FILE.json]
    python -m benchmark.devtools.gpu_cifar_throughput --tiny          # WRN-16-1 / SWRN-16-1-1, 3 steps: a CPU check

Each model is built from its config (``task=cifar10 model=wrn|swrn``, the ``cifar_paper`` SGD
recipe) and trained by ``benchmark.pipelines.classification.Classifier`` exactly as a run trains it: uint8
batches normalised and augmented on the device, bf16 autocast and channels-last on CUDA (float32
on the CPU). The data is random (no CIFAR archive needed; throughput does not depend on pixel
values). ``--warmup`` steps (cuDNN autotuning, allocator growth) are not timed; then ``--steps``
steps are, between two device synchronisations. Peak memory is
``torch.cuda.max_memory_allocated`` over the warm-up and timed steps of one model.

Prints a Markdown table headed by the device's name and writes the figures as JSON (``--out``,
default ``gpu_cifar_throughput.json`` in the current folder).
"""

from __future__ import annotations

import argparse
import platform
from dataclasses import asdict, dataclass
from pathlib import Path


import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from benchmark.pipelines.classification import Classifier, DeviceSplit, make_optimizer
from benchmark.config.schema import ConfigError
from tasks.fileio import write_json
from benchmark.pipelines.algorithmic import build_model, instantiate_user, pick_device, seed_everything

MODELS = ("wrn", "swrn")  # the unshared WRN-d-w and the shared SWRN-d-w-1 of the configs
TINY = ["model.depth=16", "model.widen=1"]  # the smallest sizes whose SWRN has a shared block per stage


@dataclass(frozen=True)
class Throughput:
    """One model's figures: training images per second over the timed steps, peak memory (CUDA only)."""

    model: str
    parameters: int
    images_per_s: float
    timed_images: int
    seconds: float
    peak_memory_bytes: int | None


@dataclass(frozen=True)
class Measurement:
    """What one call measured, and on what."""

    device: str  # the GPU's name, or "cpu (<processor>)"
    torch: str
    autocast: str  # "bfloat16" on CUDA, "off" on the CPU
    channels_last: bool
    batch_size: int
    warmup_steps: int
    steps: int
    models: list[Throughput]


def model_config(model: str, tiny: bool) -> DictConfig:
    with initialize_config_module(config_module="configs", version_base="1.3"):
        return compose("config", overrides=["task=cifar10", f"model={model}", *(TINY if tiny else [])])


def random_split(n: int, task, device: torch.device, generator: torch.Generator) -> DeviceSplit:
    """``n`` random uint8 images ``(n, C, 32, 32)`` with random labels, on ``device``."""
    images = torch.randint(0, 256, (n, task.spec.in_channels, 32, 32), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, task.spec.num_classes, (n,), generator=generator)
    return DeviceSplit(images.to(device), labels.to(device))


def measure(cfg: DictConfig, clf: Classifier, batch_size: int, warmup: int, steps: int) -> Throughput:
    """Train ``cfg``'s model with ``clf`` for ``warmup`` untimed and ``steps`` timed steps of ``batch_size`` images."""
    seed_everything(0)
    task, device = clf.task, clf.device
    model = clf.place(build_model(cfg, task))
    optimizer, _ = make_optimizer(model, cfg.train)
    cpu = torch.Generator().manual_seed(0)
    generator = torch.Generator(device=device).manual_seed(0)  # order and augmentation, as in a run
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    # Whole batches only: train_epoch drops nothing then, and every timed step has batch_size images.
    clf.train_epoch(model, optimizer, random_split(warmup * batch_size, task, device, cpu), batch_size, generator)
    timed = clf.train_epoch(model, optimizer, random_split(steps * batch_size, task, device, cpu), batch_size, generator)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return Throughput(model=model.name, parameters=sum(p.numel() for p in model.parameters()),
                      images_per_s=timed["images"] / timed["seconds"], timed_images=timed["images"],
                      seconds=timed["seconds"], peak_memory_bytes=peak)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def markdown(m: Measurement) -> str:
    lines = [f"Training throughput on {m.device}: torch {m.torch}, batch {m.batch_size}, autocast {m.autocast}, "
             f"channels-last {'on' if m.channels_last else 'off'}, {m.steps} timed steps after {m.warmup_steps}.", "",
             "| model | parameters | images/s | peak memory (GiB) |", "|---|---|---|---|"]
    for t in m.models:
        memory = "-" if t.peak_memory_bytes is None else f"{t.peak_memory_bytes / 2**30:.2f}"
        lines.append(f"| {t.model} | {t.parameters:,} | {t.images_per_s:,.0f} | {memory} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Measurement:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 50; 3 with --tiny)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10; 1 with --tiny)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (default 128, the paper's; 8 with --tiny)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--tiny", action="store_true", help="WRN-16-1 and SWRN-16-1-1, a few small steps: a quick check on a CPU")
    parser.add_argument("--out", type=Path, default=Path("gpu_cifar_throughput.json"), help="where the JSON goes")
    args = parser.parse_args(argv)
    steps = args.steps if args.steps is not None else (3 if args.tiny else 50)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 10)
    batch_size = args.batch_size if args.batch_size is not None else (8 if args.tiny else 128)
    if min(steps, warmup, batch_size) < 1 or batch_size == 1:
        parser.error(f"--steps and --warmup must be at least 1 and --batch-size at least 2, got {steps}, {warmup}, {batch_size}.")
    try:
        device = pick_device(args.device)
    except ConfigError as err:
        parser.error(str(err))

    configs = [model_config(m, args.tiny) for m in MODELS]
    task = instantiate_user(configs[0].task)  # reads no data: only its spec and augmentation settings are used
    # Normalisation statistics of uniform random bytes (mean 0.5, std ~0.29 after /255); any would do.
    clf = Classifier(task, torch.full((3,), 0.5), torch.full((3,), 0.29), device)
    models = [measure(cfg, clf, batch_size, warmup, steps) for cfg in configs]
    result = Measurement(device=device_name(device), torch=torch.__version__, autocast="bfloat16" if clf.cuda else "off",
                         channels_last=clf.layout == torch.channels_last, batch_size=batch_size, warmup_steps=warmup,
                         steps=steps, models=models)
    write_json(args.out, asdict(result))
    print(markdown(result))
    print(f"\n{args.out}")
    return result


if __name__ == "__main__":
    main()
