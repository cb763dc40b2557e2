import pytest
import torch

from benchmark.models.bank import TemplateBank, no_decay_parameters
from benchmark.models.recurrent import RecurrentConvNet
from benchmark.training.trainer import make_optimizer
from benchmark.config.schema import TrainConfig
from tasks.base import TaskSpec


def test_one_template_makes_every_layer_a_multiple_of_it():
    bank = TemplateBank(num_layers=5, num_templates=1, shape=(4, 4, 3, 3))
    weights = bank.weights()
    template = bank.templates[0]
    for i in range(5):
        scale = bank.coefficients[i, 0]
        torch.testing.assert_close(weights[i], scale * template)
        cos = torch.nn.functional.cosine_similarity(weights[i].flatten(), template.flatten(), dim=0)
        assert abs(cos.item()) > 1 - 1e-5


def test_identity_coefficients_give_the_templates_back():
    learned = TemplateBank(num_layers=4, num_templates=4, shape=(3, 3, 3))
    with torch.no_grad():
        learned.coefficients.copy_(torch.eye(4))
    torch.testing.assert_close(learned.weights(), learned.templates)
    fixed = TemplateBank(num_layers=4, num_templates=4, shape=(3, 3, 3), learn_coefficients=False)
    torch.testing.assert_close(fixed.weights(), fixed.templates)
    assert not fixed.learns_coefficients and "coefficients" not in dict(fixed.named_parameters())


def test_weights_are_the_linear_mix_of_templates():
    bank = TemplateBank(num_layers=6, num_templates=3, shape=(2, 5, 3))
    expected = torch.stack([sum(bank.coefficients[i, j] * bank.templates[j] for j in range(3)) for i in range(6)])
    torch.testing.assert_close(bank.weights(), expected)


def test_initialisation_follows_the_paper():
    torch.manual_seed(0)
    bank = TemplateBank(num_layers=8, num_templates=3, shape=(64, 64, 3, 3))
    alpha = bank.coefficients.detach()
    # Orthogonal init of an (L, k) matrix with L > k: orthonormal columns.
    torch.testing.assert_close(alpha.T @ alpha, torch.eye(3), atol=1e-5, rtol=0)
    # Kaiming normal (fan-in, ReLU gain): std sqrt(2 / fan_in), each template on its own.
    fan_in = 64 * 9
    for template in bank.templates.detach():
        assert abs(template.std().item() / (2 / fan_in) ** 0.5 - 1) < 0.05


def test_coefficients_are_excluded_from_weight_decay():
    model = RecurrentConvNet(TaskSpec(dims=2, in_channels=3, num_classes=2), width=8, templates=2)
    assert no_decay_parameters(model) == {"bank.coefficients"}
    optimizer = make_optimizer(model, TrainConfig(weight_decay=0.1))
    by_decay = {g["weight_decay"]: g["params"] for g in optimizer.param_groups}
    assert [p is model.bank.coefficients for p in by_decay[0.0]] == [True]
    assert all(p is not model.bank.coefficients for p in by_decay[0.1])
    assert len(by_decay[0.1]) == len(list(model.parameters())) - 1


def test_unit_row_init_keeps_the_papers_directions_at_the_scale_of_one_template():
    # The paper's init of an 80 x 2 bank (a 20-position depth-wise model): squared row norms
    # average k / L, so each mixed weight is about sqrt(2 / 80) = 0.16 of a template's std.
    torch.manual_seed(0)
    paper = TemplateBank(num_layers=80, num_templates=2, shape=(32, 32, 3, 3))
    torch.manual_seed(0)
    unit = TemplateBank(num_layers=80, num_templates=2, shape=(32, 32, 3, 3), coefficient_init="orthogonal_unit")
    a_paper, a_unit = paper.coefficients.detach(), unit.coefficients.detach()
    assert abs(a_paper.square().sum(1).mean().item() - 2 / 80) < 1e-5
    # The same orthogonal directions (same draw), the whole matrix scaled by sqrt(L / k).
    torch.testing.assert_close(a_unit, a_paper * (80 / 2) ** 0.5)
    torch.testing.assert_close(a_unit.T @ a_unit, torch.eye(2) * 40, atol=1e-4, rtol=0)
    assert abs(a_unit.square().sum(1).mean().item() - 1) < 1e-5
    # Each mixed weight has the variance ||a_i||^2 * var(template): on average one Kaiming template's.
    kaiming_var = 2 / (32 * 9)
    mixed_var = unit.weights().detach().flatten(1).var(dim=1)  # (80,)
    expected = a_unit.square().sum(1) * kaiming_var
    assert ((mixed_var / expected) - 1).abs().max() < 0.15
    assert abs(mixed_var.mean().item() / kaiming_var - 1) < 0.15
    assert paper.weights().detach().var().item() < 0.05 * kaiming_var


def test_unit_row_init_leaves_orthonormal_rows_alone_and_refuses_unknown_names():
    torch.manual_seed(0)
    bank = TemplateBank(num_layers=3, num_templates=5, shape=(2, 2), coefficient_init="orthogonal_unit")
    torch.testing.assert_close(bank.coefficients.norm(dim=1), torch.ones(3))  # L <= k: rows already orthonormal
    fixed = TemplateBank(num_layers=4, num_templates=4, shape=(2, 2), learn_coefficients=False, coefficient_init="orthogonal_unit")
    torch.testing.assert_close(fixed.coefficients, torch.eye(4))  # unshared banks keep the identity
    with pytest.raises(ValueError, match="coefficient_init must be one of orthogonal, orthogonal_unit"):
        TemplateBank(num_layers=4, num_templates=2, shape=(2, 2), coefficient_init="unit")
