"""Path independence of an iterative model: does it reach the same state from any start?

    python -m benchmark.path_independence RUN_DIR --sizes 15 33 --n 50 --iters 200 [--generator prim]
        [--starts 4] [--noise 1] [--out FILE.json]

Anil et al., "Path Independent Equilibrium Models Can Better Exploit Test-Time Computation"
(NeurIPS 2022), call a model path independent when it converges to the same steady state
whatever state it starts from, and found that such models solve harder instances by iterating
longer. Two measures per sample, after T = ``--iters`` iterations from the model's own
initial state h_0:

- **fixed-point residual** ``||h_{T+1} - h_T|| / ||h_T||``: 0 at a fixed point; a cycle or a
  drift keeps it away from 0;
- **asymptotic alignment**: their AA score, the cosine similarity between h_T and the state
  reached after T iterations from another start, here the mean over K = ``--starts`` starts
  ``perturbed_state(h_0, s)`` for each noise scale s of ``--noise``: the very starts that
  ``train.init_noise`` trains from (``benchmark.training.losses``), Gaussian noise at s times
  h_0's spread (a small s perturbs the start, a large one makes it random). A path-independent
  model scores 1. Beside it, the share of those starts whose **answer** (the prediction on the
  positions the task scores) is the one reached from h_0, and the share whose answer is right.

Whether they predict extrapolation: per size the command reports the mean alignment and
residual of the samples solved from h_0 and of those not, and the AUC with which each score
separates them (``auc``: 0.5 carries no information; above 0.5 a high alignment, or a low
residual, goes with a solved sample).

The data are the run's own test samples of each size (its test seed: the first n of
``python -m benchmark.evaluate --sizes``); ``--generator`` swaps the maze generator (one name, or
several for a mixture) and keeps the seed. The starts' noise comes from per-sample generators
(``--seed``, the sample's index, the start's number), so a sample's numbers do not depend on
the batch size or on n. Nothing is written without ``--out`` (an atomic JSON of the per-sample
values and the summaries); every check runs before anything is computed, and a user error is one
sentence on stderr and exit status 2.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.infra import precision
from benchmark.config.schema import CommandParser, ConfigError, data_seeds, exit_on_user_error
from benchmark.evaluation.rescore import with_generator as _test_task  # shared with the failure scripts
from benchmark.models.contract import IterativeModel
from benchmark.training.losses import perturbed_state
from tasks.base import Task
from tasks.fileio import check_writable_dir, write_json


# ---------------------------------------------------------------------------- the measures
def residual(h: torch.Tensor, h_next: torch.Tensor) -> torch.Tensor:
    """``||h_next - h|| / ||h||`` per sample ``(N,)``, in float32 (a zero state counts as norm 1e-12)."""
    h, h_next = h.float().flatten(1), h_next.float().flatten(1)
    return (h_next - h).norm(dim=1) / h.norm(dim=1).clamp_min(1e-12)


def alignment(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The cosine similarity of two states per sample ``(N,)``, in float32."""
    return F.cosine_similarity(a.float().flatten(1), b.float().flatten(1), dim=1, eps=1e-12)


def _start_generator(seed: int, index: int, start: int) -> torch.Generator:
    """The noise of one sample's one start: its own stream, so batching changes nothing."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, index, start]).generate_state(1)[0]))


@dataclass(frozen=True)
class SizeReport:
    """The per-sample measures of one test size (tuples of n values; the dicts keyed by noise scale)."""

    size: int
    residual: tuple[float, ...]
    solved: tuple[bool, ...]  # the answer after T iterations from h_0 is right
    alignment: dict[float, tuple[float, ...]]  # mean cosine over the starts
    same_answer: dict[float, tuple[float, ...]]  # share of the starts whose answer is h_0's
    solved_from_starts: dict[float, tuple[float, ...]]  # share of the starts whose answer is right

    def summary(self) -> dict[str, Any]:
        solved = np.array(self.solved, dtype=bool)
        res = np.array(self.residual)
        out: dict[str, Any] = dict(n=len(solved), accuracy=float(solved.mean()), residual_median=float(np.median(res)),
                                   residual_mean=float(res.mean()), residual_median_solved=_median(res[solved]),
                                   residual_median_failed=_median(res[~solved]), auc_low_residual=auc(-res, solved), noise={})
        for scale, values in self.alignment.items():
            cos = np.array(values)
            out["noise"][str(scale)] = dict(
                alignment=float(cos.mean()), alignment_solved=_mean(cos[solved]), alignment_failed=_mean(cos[~solved]),
                auc_alignment=auc(cos, solved), same_answer=float(np.mean(self.same_answer[scale])),
                accuracy_from_starts=float(np.mean(self.solved_from_starts[scale])))
        return out

    def to_json(self) -> dict[str, Any]:
        per_scale = lambda d: {str(s): list(v) for s, v in d.items()}  # noqa: E731
        return dict(summary=self.summary(), samples=dict(
            residual=list(self.residual), solved=list(self.solved), alignment=per_scale(self.alignment),
            same_answer=per_scale(self.same_answer), solved_from_starts=per_scale(self.solved_from_starts)))


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if len(values) else None


def auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """The chance that a positive sample scores above a negative one (ties count half); None
    unless there are both (the area under the ROC curve, by direct count)."""
    scores, positive = np.asarray(scores, dtype=float), np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return None
    a, b = scores[positive][:, None], scores[~positive][None, :]
    return float((a > b).mean() + 0.5 * (a == b).mean())


@torch.inference_mode()
def measure(model: torch.nn.Module, task: Task, data: torch.utils.data.TensorDataset, size: int, iters: int,
            scales: tuple[float, ...] = (1.0,), starts: int = 4, batch_size: int = 50,
            device: torch.device = torch.device("cpu"), seed: int = 0) -> SizeReport:
    """Residual and alignment (module docstring) of every sample of ``data`` after ``iters`` iterations."""
    model.eval()
    inputs_all, targets_all = data.tensors
    res, solved = [], []
    cos = {s: [] for s in scales}
    same = {s: [] for s in scales}
    right = {s: [] for s in scales}
    for lo in range(0, len(inputs_all), batch_size):
        x, y = inputs_all[lo : lo + batch_size].to(device), targets_all[lo : lo + batch_size].to(device)
        h0 = model.initial_state(x)
        h = model.run(x, iters, state=h0)
        res.append(residual(h, model.run(x, 1, state=h, start=iters)))
        answer = model.logits(h).argmax(1)  # (b, *S)
        scored = task.valid(x)
        solved.append(task.score(x, y, answer))
        for scale in scales:
            total, agree, good = torch.zeros(len(x), device=device), torch.zeros(len(x), device=device), torch.zeros(len(x), device=device)
            for k in range(starts):
                start = torch.cat([perturbed_state(h0[j : j + 1], scale, _start_generator(seed, lo + j, k)) for j in range(len(x))])
                h_k = model.run(x, iters, state=start)
                other = model.logits(h_k).argmax(1)
                total += alignment(h, h_k)
                agree += ~((other != answer) & scored).flatten(1).any(dim=1)
                good += task.score(x, y, other)
            cos[scale].append(total / starts)
            same[scale].append(agree / starts)
            right[scale].append(good / starts)
    flat = lambda parts: tuple(torch.cat(parts).cpu().tolist())  # noqa: E731
    return SizeReport(size=size, residual=flat(res), solved=flat(solved), alignment={s: flat(v) for s, v in cos.items()},
                      same_answer={s: flat(v) for s, v in same.items()}, solved_from_starts={s: flat(v) for s, v in right.items()})


# ---------------------------------------------------------------------------- the command
def _parser() -> CommandParser:
    parser = CommandParser(prog="python -m benchmark.path_independence",
                           description="Fixed-point residual and asymptotic alignment (Anil et al. 2022) of a run's model.")
    parser.add_argument("run_dir", type=Path, help="a finished puzzle run's directory (model.pt and config.yaml)")
    parser.add_argument("--sizes", type=int, nargs="+", required=True, help="test sizes of the run's task (its test seed)")
    parser.add_argument("--n", type=int, default=50, help="samples per size: the run's own first n test samples")
    parser.add_argument("--iters", type=int, default=200, help="T: iterations from each start")
    parser.add_argument("--generator", nargs="+", default=None, metavar="NAME",
                        help="maze runs: test on mazes of this generator instead (several: a mixture)")
    parser.add_argument("--starts", type=int, default=4, help="K: perturbed starts per sample and noise scale")
    parser.add_argument("--noise", type=float, nargs="+", default=[1.0], metavar="S",
                        help="noise scales of the starts, in units of the initial state's standard deviation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the starts' noise")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else the CPU), cpu, cuda or cuda:N")
    parser.add_argument("--precision", default=None, choices=precision.PRECISIONS,
                        help="default: the precision the run trained in")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE.json", help="write the summaries and per-sample values here")
    return parser


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse, check everything, measure, print, write ``--out``; returns the JSON document. Raises ``ConfigError``."""
    from benchmark.evaluation.rescore import load_run  # the one reader of a finished run (checks included)

    args = _parser().parse_args(argv)
    for flag, value in (("--n", args.n), ("--iters", args.iters), ("--starts", args.starts), ("--batch-size", args.batch_size)):
        if value < 1:
            raise ConfigError(f"{flag} must be a positive integer, got {value}.")
    if args.seed < 0:
        raise ConfigError(f"--seed must be an integer >= 0, got {args.seed}.")
    bad = [s for s in args.noise if not (math.isfinite(s) and s >= 0)]
    if bad:
        raise ConfigError(f"--noise scales must be finite numbers >= 0, got {bad[0]}.")
    if args.out is not None:
        if args.out.suffix.lower() != ".json" or args.out.is_dir():
            raise ConfigError(f"--out must name a .json file, got {args.out}.")
        check_writable_dir(args.out.parent, "the path-independence results")
    model, ckpt, cfg, device = load_run(args.run_dir, args.device, args.precision)
    if not isinstance(model, IterativeModel):
        raise ConfigError(f"path independence needs an iterative puzzle model, and {args.run_dir} holds {type(model).__name__}.")
    try:
        model.check_iters(args.iters + 1)  # the residual runs one iteration past T
    except ValueError as err:
        raise ConfigError(f"{str(err).rstrip('.')}; path independence runs --iters + 1 iterations, so give fewer.") from err
    task = _test_task(ckpt.task, args.generator)
    sizes = list(dict.fromkeys(args.sizes))
    for size in sizes:
        task.check_size(size)
    scales = tuple(dict.fromkeys(float(s) for s in args.noise))
    seed = data_seeds(cfg["seed"]).test
    model = model.to(device)
    reports = [measure(model, task, task.dataset(size, args.n, seed=seed), size, args.iters, scales, args.starts,
                       args.batch_size, device, args.seed) for size in sizes]
    document = dict(run=str(args.run_dir), task=ckpt.task_name, options=asdict(task.options), data_seed=seed, iters=args.iters,
                    starts=args.starts, noise=list(scales), noise_seed=args.seed, precision=model.precision, device=str(device),
                    sizes={str(r.size): r.to_json() for r in reports})
    print(format_report(document))
    if args.out is not None:
        write_json(args.out, document)
        print(f"written {args.out}")
    return document


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_report(document: dict[str, Any]) -> str:
    """One row per size and noise scale: accuracy from h_0, residual, alignment and its AUC, answers from
    the starts. The alignment is printed as 1 - alignment: a model's states share most of their
    features (the input is recalled every iteration), so the cosines crowd just below 1."""
    generator = document["options"].get("generator")
    on = f" on {generator if isinstance(generator, str) else '+'.join(generator)} mazes" if generator is not None else ""
    header = (f"{'size':>5} {'n':>5} {'acc@T':>7} {'residual':>9} {'solved/failed':>17} {'AUC':>5} "
              f"{'noise':>6} {'1-align':>8} {'solved/failed':>17} {'AUC':>5} {'same answer':>11} {'acc starts':>10}")
    lines = [f"path independence of {document['run']}{on}: after {document['iters']} iterations from the model's own start "
             f"and from {document['starts']} perturbed starts per noise scale ({document['precision']})", header, "-" * len(header)]
    gap = lambda v: None if v is None else 1 - v  # noqa: E731
    for size, entry in document["sizes"].items():
        s = entry["summary"]
        for scale, m in s["noise"].items():
            lines.append(
                f"{size:>5} {s['n']:>5} {s['accuracy']:>7.1%} {s['residual_median']:>9.1e} "
                f"{_num(s['residual_median_solved'], '.1e'):>8}/{_num(s['residual_median_failed'], '.1e'):<8} "
                f"{_num(s['auc_low_residual'], '.2f'):>5} {float(scale):>6g} {1 - m['alignment']:>8.1e} "
                f"{_num(gap(m['alignment_solved']), '.1e'):>8}/{_num(gap(m['alignment_failed']), '.1e'):<8} "
                f"{_num(m['auc_alignment'], '.2f'):>5} {m['same_answer']:>11.1%} {m['accuracy_from_starts']:>10.1%}")
    lines.append("residual: median ||h_T+1 - h_T|| / ||h_T||, over all samples, then the solved and the failed ones; 1-align: "
                 "1 - the mean cosine of h_T from the own start and from the perturbed ones, likewise; AUC: how well the "
                 "measure tells solved from failed samples (0.5: not at all; '-': all solved or none); same answer, acc "
                 "starts: the share of the perturbed starts that end in the own start's answer, and in the right one")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: user errors end with one sentence on stderr and exit status 2."""
    exit_on_user_error(run, argv)


__all__ = ["SizeReport", "alignment", "auc", "format_report", "main", "measure", "residual", "run"]
