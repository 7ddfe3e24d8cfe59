"""The closed-form ReLU-MLP path: which models it takes, and that it agrees with autograd."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from p2pfl.learning import FunctionalModel, LocalData, TrainingSpec, local_steps
from p2pfl.models import build_model
from p2pfl.params import ParamLayout, flatten
from p2pfl.relu_mlp import ReluMLP

pytestmark = pytest.mark.timeout(120)


def _mlp(sizes: list[int], flatten_input: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()] if flatten_input else []
    for a, b in itertools.pairwise(sizes[:-1]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


def _autograd(
    model: nn.Module, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: one node at a time, ``nn.Module`` + ``backward``, float64."""
    grads, losses = [], []
    for k in range(params.shape[0]):
        m = _as_float64_copy(model, params[k])
        loss = nn.functional.cross_entropy(m(x[k].double()), y[k])
        loss.backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in m.parameters() if p.grad is not None]))
        losses.append(loss.detach())
    return torch.stack(grads), torch.stack(losses)


def _as_float64_copy(model: nn.Module, flat: torch.Tensor) -> nn.Module:
    m = copy.deepcopy(model).double()
    offset = 0
    for p in m.parameters():
        p.data.copy_(flat[offset : offset + p.numel()].reshape(p.shape))
        offset += p.numel()
    return m


def _kernel(model: nn.Module) -> ReluMLP:
    kernel = ReluMLP.match(model, ParamLayout.of(model))
    assert kernel is not None
    return kernel


@pytest.mark.parametrize(
    ("name", "params", "linears"),
    [("mlp", {}, 2), ("mlp", {"hidden": [32, 16]}, 3), ("logreg", {}, 1)],
)
def test_the_zoo_mlps_take_the_closed_form_path(
    name: str, params: dict[str, object], linears: int
) -> None:
    model = build_model(name, params, (1, 8, 8), 10, seed=0)
    kernel = _kernel(model)
    assert len(kernel.layers) == linears
    assert kernel.flattens and kernel.size == flatten(model).numel()
    assert FunctionalModel(model)._relu_mlp == kernel


@pytest.mark.parametrize(
    "model",
    [
        build_model("cnn", {"channels": [4]}, (1, 8, 8), 10, seed=0),
        nn.Sequential(nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2)),
        nn.Sequential(nn.Linear(4, 3, bias=False)),
        nn.Sequential(nn.Flatten(start_dim=2), nn.Linear(4, 2)),
        nn.Sequential(nn.Linear(4, 3), nn.ReLU()),
        nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2)),
        nn.Sequential(),
        nn.Linear(4, 2),
    ],
)
def test_other_models_are_left_to_autograd(model: nn.Module) -> None:
    assert ReluMLP.match(model, ParamLayout.of(model)) is None


def test_frozen_parameters_are_left_to_autograd() -> None:
    model = _mlp([4, 3, 2])
    model[1].weight.requires_grad_(False)
    assert ReluMLP.match(model, ParamLayout.of(model)) is None


def test_inputs_without_a_flatten_must_be_flat() -> None:
    kernel = _kernel(_mlp([4, 3, 2], flatten_input=False))
    assert kernel.accepts(torch.zeros(2, 5, 4))
    assert not kernel.accepts(torch.zeros(2, 5, 1, 4))
    assert not kernel.accepts(torch.zeros(2, 5, 4, dtype=torch.float64))


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    classes=st.integers(2, 6),
    nodes=st.integers(1, 4),
    batch=st.integers(1, 7),
    seed=st.integers(0, 2**16),
)
def test_gradients_and_losses_match_autograd(
    sizes: list[int], classes: int, nodes: int, batch: int, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    model = _mlp([*sizes, classes])
    d = flatten(model).numel()
    params = torch.randn(nodes, d, generator=g)
    x = torch.randn(nodes, batch, sizes[0], generator=g)
    y = torch.randint(0, classes, (nodes, batch), generator=g)
    grads, loss = _kernel(model).loss_and_grads(params, x, y)
    ref_grads, ref_loss = _autograd(model, params.double(), x, y)
    # float32 against float64: relative to the largest gradient, with a float32-sized floor
    scale = float(ref_grads.abs().max())
    assert float((grads.double() - ref_grads).abs().max()) <= 1e-5 * scale + 1e-6
    assert torch.allclose(loss.double(), ref_loss, rtol=1e-5, atol=1e-6)


def test_local_training_agrees_with_the_generic_path() -> None:
    torch.manual_seed(0)
    model = _mlp([64, 32, 10])
    gen = torch.Generator().manual_seed(1)
    shards = [
        (torch.randn(20, 1, 8, 8, generator=gen), torch.randint(0, 10, (20,))) for _ in range(5)
    ]
    data = LocalData.from_shards(shards)
    params = flatten(model).repeat(5, 1)
    spec = TrainingSpec(local_steps=4, batch_size=8, lr=0.3, momentum=0.9, weight_decay=1e-3)
    fast = FunctionalModel(model)
    generic = FunctionalModel(model)
    generic._relu_mlp = None  # force vmap(grad)
    nodes = torch.arange(5)
    a, buf_a, loss_a = local_steps(fast, params, torch.zeros_like(params), data, nodes, spec, 3, 1)
    b, buf_b, loss_b = local_steps(
        generic, params, torch.zeros_like(params), data, nodes, spec, 3, 1
    )
    assert not torch.equal(a, params)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert buf_a is not None and buf_b is not None and torch.allclose(buf_a, buf_b, atol=1e-5)
    assert torch.allclose(loss_a, loss_b, rtol=1e-5)
