import pytest
import torch

from baselines.feedforward import FeedForwardNet
from benchmark.models.recurrent import RecurrentConvNet
from tasks.base import TaskSpec

SPECS = {1: TaskSpec(dims=1, in_channels=1, num_classes=2), 2: TaskSpec(dims=2, in_channels=3, num_classes=2)}


def _input(dims: int, n: int = 2, side: int = 7) -> torch.Tensor:
    return torch.randn(n, SPECS[dims].in_channels, *(side,) * dims)


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("templates,depth", [(2, 1), (None, 1), (2, 3)])
def test_one_class_serves_1d_and_2d(dims, templates, depth):
    model = RecurrentConvNet(SPECS[dims], width=8, depth=depth, templates=templates)
    x = _input(dims)
    assert model(x, 4).shape == (2, 2, *x.shape[2:])
    # Bigger inputs than any seen before run unchanged (fully convolutional).
    assert model(_input(dims, side=13), 4).shape[2:] == (13,) * dims


def test_parameter_count_does_not_depend_on_iterations():
    model = RecurrentConvNet(SPECS[2], width=8, templates=2)
    before = {k: v.shape for k, v in model.state_dict().items()}
    x = _input(2)
    outputs = [model(x, iters) for iters in (1, 5, 40)]
    assert {k: v.shape for k, v in model.state_dict().items()} == before
    assert not torch.allclose(outputs[0], outputs[2])  # the extra iterations did compute something


def test_unrolled_pass_scores_every_iteration_like_separate_runs():
    torch.manual_seed(0)
    model = RecurrentConvNet(SPECS[2], width=8, depth=2, templates=2).eval()
    x = _input(2)
    with torch.no_grad():
        unrolled = list(model.iter_logits(x, 6))
        for t, logits in enumerate(unrolled, start=1):
            torch.testing.assert_close(logits, model(x, t))
            assert logits.grad_fn is None  # nothing kept for backward: memory does not grow with T


def test_extra_iterations_reuse_the_last_position():
    torch.manual_seed(0)
    model = RecurrentConvNet(SPECS[1], width=4, depth=2, templates=2)
    x = _input(1)
    h = model.initial_state(x)
    torch.testing.assert_close(model.run(x, 1, state=h, start=7), model.run(x, 1, state=h, start=1))


def test_recurrent_model_is_the_degenerate_setting_of_the_same_code():
    model = RecurrentConvNet(SPECS[2], name="recurrent", width=8, depth=1, templates=None)
    assert model.iteration_limit is None and not model.bank.learns_coefficients
    assert model.bank.num_templates == 4  # one weight per conv of the block, no mixing


def test_feedforward_cannot_extrapolate():
    model = FeedForwardNet(SPECS[2], width=8, depth=5)
    assert model.iteration_limit == 5
    model(_input(2), 5)
    with pytest.raises(ValueError, match="cannot run 6 iterations"):
        model(_input(2), 6)
    shared = RecurrentConvNet(SPECS[2], width=8, depth=5, templates=2)
    assert shared.iteration_limit is None
    # Same layers: the shared model differs only in its bank (5*4 weights from 2 templates).
    n_ff, n_shared = (sum(p.numel() for p in m.parameters()) for m in (model, shared))
    assert n_ff - n_shared == (20 - 2) * 8 * 8 * 9 - 20 * 2


@pytest.mark.parametrize("bad", [{"width": 0}, {"depth": 0}, {"templates": 0}, {"width": 2.5}])
def test_bad_model_options_are_rejected(bad):
    with pytest.raises(ValueError, match="must be an integer"):
        RecurrentConvNet(SPECS[2], **bad)


def test_run_and_iter_logits_walk_the_same_states():
    torch.manual_seed(0)
    model = RecurrentConvNet(SPECS[1], width=4, depth=3, templates=2).eval()
    x = _input(1)
    with torch.no_grad():
        states = list(model.states(x, 5))
        assert len(states) == 5
        torch.testing.assert_close(model.run(x, 5), states[-1])
        torch.testing.assert_close(model.run(x, 0), model.initial_state(x))  # no iteration: the projected input
        torch.testing.assert_close(model.run(x, 3, state=states[1], start=2), states[-1])  # resumed mid-way
        for logits, h in zip(model.iter_logits(x, 5), states, strict=True):
            torch.testing.assert_close(logits, model.head(h))


def test_deep_stack_init_options():
    torch.manual_seed(0)
    kaiming_std = (2 / (32 * 9)) ** 0.5  # fan-in 32 * 3 * 3, ReLU gain
    for model in (RecurrentConvNet(SPECS[2], width=32, depth=20, templates=2, recall_init="kaiming", block_scale=0.16),
                  FeedForwardNet(SPECS[2], width=32, depth=20, recall_init="kaiming", block_scale=0.16)):
        # Block convs: root-mean-square std 0.16 of a Kaiming weight's, shared bank or not.
        rms = model.bank.weights().detach().flatten(1).var(dim=1).mean().sqrt().item()
        assert abs(rms / (0.16 * kaiming_std) - 1) < 0.03
        # Recall convs: Kaiming normal over their fan-in (features and input channels).
        recall = torch.stack([c.weight.detach() for c in model.recall_convs])
        assert abs(recall.std().item() / (2 / ((32 + 3) * 9)) ** 0.5 - 1) < 0.03
    # The shared model keeps its coefficients (so its layer similarity) as the bank drew them.
    torch.manual_seed(0)
    plain = RecurrentConvNet(SPECS[2], width=32, depth=20, templates=2)
    torch.manual_seed(0)
    scaled = RecurrentConvNet(SPECS[2], width=32, depth=20, templates=2, block_scale=0.16)
    torch.testing.assert_close(scaled.bank.coefficients, plain.bank.coefficients)
    ratio = (scaled.bank.templates / plain.bank.templates).detach()
    torch.testing.assert_close(ratio, torch.full_like(ratio, ratio.flatten()[0].item()))  # one factor for all templates
    # The defaults are the networks' own: PyTorch's recall init (std 1 / sqrt(3 fan_in)).
    recall = torch.stack([c.weight.detach() for c in plain.recall_convs])
    assert abs(recall.std().item() / (1 / (3 * (32 + 3) * 9)) ** 0.5 - 1) < 0.03


def test_kaiming_loop_keeps_the_looped_position_contractive():
    """recall_init="kaiming_loop": Kaiming recall convs but the last position's (the one iterated
    past the depth), which starts as PyTorch's; run 60 iterations, that loop settles where the
    all-Kaiming one keeps growing (the depth_k2_tail failure on prefix sums)."""
    x = torch.randint(0, 2, (8, 1, 32), generator=torch.Generator().manual_seed(0)).float()  # bit strings
    norms = {}
    for init in ("kaiming", "kaiming_loop"):
        torch.manual_seed(0)
        model = RecurrentConvNet(SPECS[1], width=32, depth=10, templates=2, recall_init=init, block_scale=0.16).eval()
        stds = [c.weight.detach().std().item() for c in model.recall_convs]
        fan_in = (32 + 1) * 3
        assert all(abs(s / (2 / fan_in) ** 0.5 - 1) < 0.1 for s in stds[:9])
        assert abs(stds[9] / ((2 / fan_in) ** 0.5 if init == "kaiming" else (1 / (3 * fan_in)) ** 0.5) - 1) < 0.1
        with torch.no_grad():
            norms[init] = [h.norm(dim=1).mean().item() for h in model.states(x, 60)]
    assert norms["kaiming"][59] > 5 * norms["kaiming"][19]
    assert norms["kaiming_loop"][59] < 1.01 * norms["kaiming_loop"][19]


@pytest.mark.parametrize("bad,match", [({"recall_init": "xavier"}, "recall_init must be one of default, kaiming, kaiming_loop"),
                                       ({"block_scale": 0.0}, "block_scale must be a positive number"),
                                       ({"coefficient_init": "unit"}, "coefficient_init must be one of")])
def test_bad_init_options_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        RecurrentConvNet(SPECS[2], **bad)


def test_unit_rows_start_every_in_block_bank_at_the_scale_of_an_unshared_block():
    """The sharing study's in-block models (``coefficient_init: orthogonal_unit``): whatever k, the
    block's 4 mixed convs start with the mean variance of the hard-recurrent block's 4 convs; the
    paper's orthogonal rows start them at k / 4 of it (k = 4: the two inits are the same)."""

    def mean_var(**kwargs) -> float:
        torch.manual_seed(0)
        return RecurrentConvNet(SPECS[1], width=32, **kwargs).bank.weights().detach().flatten(1).var(dim=1).mean().item()

    unshared = mean_var(templates=None)
    for k in (1, 2, 4):
        assert mean_var(templates=k, coefficient_init="orthogonal_unit") == pytest.approx(unshared, rel=0.1)
        assert mean_var(templates=k) == pytest.approx(unshared * k / 4, rel=0.1)
