import torch

from benchmark.bank import TemplateBank, no_decay_parameters
from benchmark.model import RecurrentConvNet
from benchmark.train import make_optimizer
from benchmark.config import TrainConfig
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
