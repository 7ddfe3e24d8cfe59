"""Generic models trained vectorized (``functional_call`` + ``vmap``, or grouped
convolutions for sequential conv nets) give the numbers of a plain per-node PyTorch
loop: convolutions, pooling, normalization layers, BatchNorm's running statistics
(buffers) and frozen layers included."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from p2pfl import grouped
from p2pfl.grouped import GroupedSequential
from p2pfl.learning import FunctionalModel, LocalData, TrainingSpec, evaluate, local_steps
from p2pfl.models import cnn, freeze
from p2pfl.params import ParamLayout, flatten, frozen_names, load_flat, unflatten
from p2pfl.seeding import round_batch_indices

pytestmark = pytest.mark.timeout(60)


def bn_cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    c, h, w = input_shape
    return nn.Sequential(
        nn.Conv2d(c, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.LayerNorm(4 * (h // 2) * (w // 2)),
        nn.Linear(4 * (h // 2) * (w // 2), num_classes),
    )


def assorted_convnet(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Nested containers, grouped and biasless convolutions, average pooling, other
    activations, a biasless hidden linear layer: what the grouped path must get right."""
    c, h, w = input_shape
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(c, 4, 3, padding="same"), nn.LeakyReLU(0.1), nn.MaxPool2d(2)),
        nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * (h // 4) * (w // 4), 12, bias=False),
        nn.Tanh(),
        nn.Linear(12, num_classes),
    )


MODELS = {
    "cnn": lambda: cnn((1, 8, 8), 10, channels=(4, 8)),
    "batchnorm": lambda: bn_cnn((1, 8, 8), 10),
    "assorted": lambda: assorted_convnet((1, 8, 8), 10),
}


def shards(n: int) -> LocalData:
    g = torch.Generator().manual_seed(5)
    # digit-like inputs: many equal pixels, so max pooling meets ties
    parts = []
    for k in range(n):
        x = (torch.randint(0, 3, (20 + k, 1, 8, 8), generator=g) * 0.5).to(torch.float32)
        parts.append((x, torch.randint(0, 10, (20 + k,), generator=g)))
    return LocalData.from_shards(parts)


def plain_loop(
    model: nn.Module, start: torch.Tensor, data: LocalData, spec: TrainingSpec, round_: int
) -> torch.Tensor:
    """What a per-node PyTorch loop does: ``model.train()``, SGD, the same minibatches."""
    n = start.shape[0]
    idx = round_batch_indices(
        0, torch.arange(n), round_, spec.local_steps, spec.batch_size, data.sizes
    )
    out = []
    for k in range(n):
        node = copy.deepcopy(model)
        frozen = frozen_names(node)
        state = unflatten(start[k], ParamLayout.of(node, exclude=frozen))
        node.load_state_dict(state, strict=not frozen)
        node.train()
        opt = torch.optim.SGD(node.parameters(), lr=spec.lr, momentum=spec.momentum)
        for step in range(spec.local_steps):
            rows = idx[k, step] + data.offsets[k]
            opt.zero_grad()
            nn.functional.cross_entropy(node(data.x[rows]), data.y[rows]).backward()
            opt.step()
        out.append(flatten(node, exclude=frozen))
    return torch.stack(out)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_vectorized_training_matches_a_per_node_loop(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = MODELS[name]()
    fmodel = FunctionalModel(model)
    assert (fmodel._grouped is not None) == (name != "batchnorm")
    monkeypatch.setattr(grouped, "CHUNK_BYTES", 1)  # one node per chunk: chunks must join up
    data = shards(3)
    spec = TrainingSpec(local_steps=4, batch_size=8, lr=0.1, momentum=0.5)
    start = fmodel.initial().repeat(3, 1) + 0.05 * torch.randn(3, fmodel.shared.size)
    start[:, fmodel.buffer_columns] = fmodel.initial()[fmodel.buffer_columns]  # counts stay whole

    got, _, _ = local_steps(
        fmodel, start, torch.zeros_like(start), data, torch.arange(3), spec, 0, 2
    )
    want = plain_loop(model, start, data, spec, 2)

    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    if name == "batchnorm":  # the running statistics moved, as in the loop
        cols = fmodel.buffer_columns
        assert cols.numel() == 4 + 4 + 1
        assert not torch.equal(got[:, cols], start[:, cols])


def test_evaluation_uses_the_running_statistics() -> None:
    torch.manual_seed(1)
    model = bn_cnn((1, 8, 8), 10)
    fmodel = FunctionalModel(model)
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    with torch.no_grad():
        model[1].running_mean.fill_(0.3)
        model[1].running_var.fill_(2.0)
        model.eval()
        want = (model(x).argmax(1) == y).float().mean()
    acc, _ = evaluate(fmodel, flatten(model).reshape(1, -1), x, y)
    assert float(acc[0]) == pytest.approx(float(want))
    assert model.training is False  # evaluation put back the mode it found


def test_a_frozen_batchnorm_layer_keeps_its_statistics_while_the_rest_trains() -> None:
    torch.manual_seed(2)
    model = bn_cnn((1, 8, 8), 10)
    freeze(model, ["0.*", "1.*"])
    fmodel = FunctionalModel(model)
    assert fmodel.buffer_columns.numel() == 0  # the BatchNorm buffers are frozen
    data = shards(2)
    spec = TrainingSpec(local_steps=3, batch_size=8, lr=0.1)
    start = fmodel.initial().repeat(2, 1)
    before = {k: v.clone() for k, v in fmodel.frozen_state.items()}

    got, _, _ = local_steps(fmodel, start, None, data, torch.arange(2), spec, 0, 1)

    assert not torch.equal(got, start)
    for k, v in before.items():
        assert torch.equal(fmodel.frozen_state[k], v), k


def test_the_grouped_path_recognizes_plain_sequential_conv_nets_only() -> None:
    assert GroupedSequential.match(cnn((1, 8, 8), 10)) is not None
    assert GroupedSequential.match(assorted_convnet((1, 8, 8), 10)) is not None
    assert GroupedSequential.match(bn_cnn((1, 8, 8), 10)) is None  # buffers
    assert GroupedSequential.match(nn.Sequential(nn.Flatten(), nn.Linear(64, 10))) is None

    class Residual(nn.Sequential):  # its own forward: not what the layers say
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * 2

    assert GroupedSequential.match(Residual(*cnn((1, 8, 8), 10))) is None
    no_flatten = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1))
    assert GroupedSequential.match(no_flatten) is None
    reflect = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), nn.Flatten())
    assert GroupedSequential.match(reflect) is None


def test_a_frozen_feature_extractor_trains_the_rest_as_a_per_node_loop_does() -> None:
    torch.manual_seed(3)
    model = cnn((1, 8, 8), 10, channels=(4, 8))
    freeze(model, ["0.*"])
    fmodel = FunctionalModel(model)
    assert fmodel._grouped is not None and fmodel.frozen
    data = shards(3)
    spec = TrainingSpec(local_steps=3, batch_size=8, lr=0.1)
    start = fmodel.initial().repeat(3, 1) + 0.05 * torch.randn(3, fmodel.shared.size)

    got, _, _ = local_steps(fmodel, start, None, data, torch.arange(3), spec, 0, 4)

    torch.testing.assert_close(got, plain_loop(model, start, data, spec, 4), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["cnn", "assorted"])
def test_grouped_logits_are_each_nodes_own_forward_pass(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(4)
    model = MODELS[name]()
    fmodel = FunctionalModel(model)
    monkeypatch.setattr(grouped, "CHUNK_BYTES", 3000)  # a few nodes per chunk
    params = fmodel.initial().repeat(5, 1) + 0.1 * torch.randn(5, fmodel.shared.size)
    shared_x = torch.rand(7, 1, 8, 8)
    own_x = torch.rand(5, 7, 1, 8, 8)
    want_shared, want_own = [], []
    for k in range(5):
        node = copy.deepcopy(model)
        load_flat(node, params[k])
        with torch.no_grad():
            want_shared.append(node(shared_x))
            want_own.append(node(own_x[k]))

    with torch.no_grad():
        got_shared = fmodel.logits(params, shared_x)
        got_own = fmodel.per_node_logits(params, own_x)

    torch.testing.assert_close(got_shared, torch.stack(want_shared), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_own, torch.stack(want_own), rtol=1e-5, atol=1e-6)
