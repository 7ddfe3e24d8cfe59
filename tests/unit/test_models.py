"""The model zoo: output shapes, parameters, vmap training compatibility."""

from __future__ import annotations

import pytest
import torch

import p2pfl.models as models
from p2pfl.errors import ConfigError, UnknownNameError
from p2pfl.learning import FunctionalModel
from p2pfl.models import MODELS, build_model, cnn, logreg, mlp
from p2pfl.params import flatten

pytestmark = pytest.mark.timeout(60)

DIGITS = (1, 8, 8)
MNIST = (1, 28, 28)
CASES = [("logreg", {}), ("mlp", {"hidden": [32, 16]}), ("cnn", {"channels": [4, 8]})]


def test_public_api_is_all() -> None:
    assert sorted(models.__all__) == sorted(
        [
            "MODELS",
            "ModelFactory",
            "build_model",
            "cnn",
            "freeze",
            "import_factory",
            "load_initial_weights",
            "logreg",
            "mlp",
        ]
    )
    assert MODELS.names() == ["cnn", "logreg", "mlp"]


@pytest.mark.parametrize(("name", "params"), CASES)
@pytest.mark.parametrize("shape", [DIGITS, MNIST])
def test_output_shapes(name: str, params: dict[str, object], shape: tuple[int, ...]) -> None:
    model = build_model(name, params, shape, 10, seed=0)
    out = model(torch.rand(5, *shape))
    assert out.shape == (5, 10) and out.dtype == torch.float32


def test_flat_inputs_for_logreg_and_mlp() -> None:
    for name in ("logreg", "mlp"):
        assert build_model(name, {}, (20,), 4, seed=0)(torch.rand(3, 20)).shape == (3, 4)


def head(model: torch.nn.Module) -> torch.nn.Linear:
    last = list(model.children())[-1]
    assert isinstance(last, torch.nn.Linear)
    return last


def test_parameter_counts() -> None:
    assert sum(p.numel() for p in logreg(DIGITS, 10).parameters()) == 64 * 10 + 10
    assert sum(p.numel() for p in mlp(DIGITS, 10).parameters()) == 64 * 64 + 64 + 64 * 10 + 10
    assert sum(p.numel() for p in mlp(DIGITS, 10, hidden=[]).parameters()) == 650
    # cnn on 8x8: 8 -> 4 -> 2, flatten 32 * 2 * 2 = 128 features
    assert head(cnn(DIGITS, 10)).in_features == 32 * 2 * 2
    assert head(cnn(MNIST, 10)).in_features == 32 * 7 * 7


def test_cnn_stops_pooling_when_too_small() -> None:
    net = cnn((3, 2, 2), 5, channels=[4, 4, 4])
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()) == 1
    assert net(torch.rand(2, 3, 2, 2)).shape == (2, 5)


def test_no_batchnorm_or_dropout() -> None:
    for name, params in CASES:
        model = build_model(name, params, DIGITS, 10, seed=0)
        kinds = {type(m) for m in model.modules()}
        assert not kinds & {torch.nn.BatchNorm2d, torch.nn.BatchNorm1d, torch.nn.Dropout}
        assert not list(model.buffers())


@pytest.mark.parametrize(("name", "params"), CASES)
def test_vmapped_training_works(name: str, params: dict[str, object]) -> None:
    model = build_model(name, params, DIGITS, 10, seed=0)
    fm = FunctionalModel(model)
    flat = flatten(model).repeat(3, 1)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 4, *DIGITS, generator=g)
    y = torch.randint(0, 10, (3, 4), generator=g)
    grads, loss = fm.grads(flat, x, y)
    assert grads.shape == flat.shape and loss.shape == (3,)
    assert bool(torch.isfinite(grads).all()) and float(grads.abs().sum()) > 0


def test_cnn_needs_images() -> None:
    with pytest.raises(ConfigError, match=r"cnn: needs \(channels, height, width\) inputs"):
        build_model("cnn", {}, (20,), 4, seed=0)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("mlp", {"hidden": [0]}, "hidden: sizes must be positive"),
        ("mlp", {"hidden": 64}, "hidden: expected list of int"),
        ("mlp", {"width": 3}, "width: unknown parameter"),
        ("cnn", {"channels": []}, "at least one convolution"),
        ("cnn", {"channels": [-1]}, "channels: sizes must be positive"),
    ],
)
def test_bad_parameters(name: str, params: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_model(name, params, DIGITS, 10, seed=0)


@pytest.mark.parametrize(("shape", "classes"), [((0, 8), 10), ((), 10), (DIGITS, 1)])
def test_bad_shapes_or_classes(shape: tuple[int, ...], classes: int) -> None:
    with pytest.raises(ConfigError, match=r"input_shape|num_classes"):
        logreg(shape, classes)


def test_unknown_model() -> None:
    with pytest.raises(UnknownNameError, match="valid models: cnn, logreg, mlp"):
        build_model("resnet", {}, DIGITS, 10, seed=0)
