"""Data-poisoning attacks: label flip, backdoor, trigger and attack success rate."""

from __future__ import annotations

import pytest
import torch

from p2pfl.attacks import apply_trigger, attack_success_rate, make_attack
from p2pfl.attacks.data_poisoning import backdoor, label_flip

pytestmark = pytest.mark.timeout(30)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 20, c: int = 1, hw: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(42)
    x = torch.rand(n, c, hw, hw, generator=g) * 0.5
    y = torch.arange(n) % 10
    return x, y


def test_label_flip_maps_y_to_c_minus_1_minus_y() -> None:
    x = torch.randn(5, 3)
    y = torch.tensor([0, 1, 2, 3, 4])
    x2, y2 = label_flip(x, y, 5, gen())
    assert torch.equal(y2, torch.tensor([4, 3, 2, 1, 0]))
    assert torch.equal(x2, x)
    assert torch.equal(y, torch.tensor([0, 1, 2, 3, 4]))  # input untouched


@pytest.mark.parametrize(
    ("x", "y", "c", "message"),
    [
        (torch.zeros(3, 2), torch.tensor([0, 1, 5]), 3, r"labels must lie in \[0, 2\]"),
        (torch.zeros(3, 2), torch.tensor([0, -1, 1]), 3, "labels must lie"),
        (torch.zeros(3, 2), torch.tensor([0, 1]), 3, r"y must have shape \(3,\)"),
        (torch.zeros(3, 2), torch.tensor([0.0, 1.0, 2.0]), 3, "integer labels"),
        (torch.zeros(3), torch.tensor([0, 1, 2]), 3, r"x must have shape \(N, \.\.\.\)"),
        (torch.zeros(3, 2), torch.tensor([0, 0, 0]), 1, "num_classes must be"),
    ],
)
def test_label_flip_validates_data(x: torch.Tensor, y: torch.Tensor, c: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        label_flip(x, y, c, gen())


def test_apply_trigger_image_patch_in_corner() -> None:
    x, _ = images(4, c=3)
    out = apply_trigger(x, size=3)
    top = float(x.max())
    assert torch.all(out[..., 5:, 5:] == top)
    assert torch.equal(out[..., :5, :], x[..., :5, :])
    assert torch.equal(out[..., :, :5], x[..., :, :5])
    assert not torch.equal(out, x)
    assert torch.equal(
        apply_trigger(x, size=2, value=7.0)[..., 6:, 6:], torch.full((4, 3, 2, 2), 7.0)
    )


def test_apply_trigger_flat_features() -> None:
    x = torch.zeros(3, 20)
    x[0, 0] = 1.0
    out = apply_trigger(x, size=2)
    assert torch.all(out[:, 16:] == 1.0)
    assert torch.equal(out[:, :16], x[:, :16])
    assert torch.equal(x[:, 16:], torch.zeros(3, 4))  # input untouched


def test_apply_trigger_validation() -> None:
    with pytest.raises(ValueError, match="exceeds the image size"):
        apply_trigger(torch.zeros(2, 1, 4, 4), size=5)
    with pytest.raises(ValueError, match="more than d=8"):
        apply_trigger(torch.zeros(2, 8), size=3)
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        apply_trigger(torch.zeros(2, 8), size=0)
    with pytest.raises(ValueError, match="must be a batch"):
        apply_trigger(torch.zeros(8))


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.33, 1.0])
def test_backdoor_stamps_round_fraction_and_relabels(fraction: float) -> None:
    x, y = images(20)
    x2, y2 = backdoor(x, y, 10, gen(), fraction=fraction, target=7, size=2)
    k = round(fraction * 20)
    stamped = (x2 != x).flatten(1).any(dim=1)
    assert int(stamped.sum()) == k  # pixels < 0.5 in x, so every stamp changes the sample
    triggered = torch.all(x2[..., 6:, 6:].flatten(1) == float(x.max()), dim=1)
    assert torch.equal(triggered, stamped)
    assert torch.all(y2[stamped] == 7)
    assert torch.equal(y2[~stamped], y[~stamped])
    assert torch.equal(x2[~stamped], x[~stamped])
    assert torch.equal(x, images(20)[0])  # inputs untouched


def test_backdoor_deterministic_under_generator() -> None:
    x, y = images(30)
    a = backdoor(x, y, 10, gen(3), fraction=0.3)
    b = backdoor(x, y, 10, gen(3), fraction=0.3)
    c = backdoor(x, y, 10, gen(4), fraction=0.3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_backdoor_through_make_attack() -> None:
    x, y = images(10)
    attack = make_attack("backdoor", {"fraction": 0.5, "target": 3})
    assert attack.kind == "data"
    _, y2 = attack.poison(x, y, 10, gen())
    assert int((y2 == 3).sum()) >= 5


def test_backdoor_validation() -> None:
    x, y = images(10)
    with pytest.raises(ValueError, match="fraction must be in"):
        backdoor(x, y, 10, gen(), fraction=-0.1)
    with pytest.raises(ValueError, match="target=10 is not a class"):
        backdoor(x, y, 10, gen(), target=10)
    with pytest.raises(ValueError, match="target must be"):
        backdoor(x, y, 10, gen(), target=-1)
    with pytest.raises(ValueError, match="value must be finite"):
        backdoor(x, y, 10, gen(), value=float("nan"))


def test_attack_success_rate_hand_examples() -> None:
    x = torch.zeros(6, 1, 4, 4)
    x[:, 0, 0, 0] = 1.0
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    target = 2

    def always_target(batch: torch.Tensor) -> torch.Tensor:
        return torch.full((batch.shape[0],), target)

    seen: list[torch.Tensor] = []

    def true_label(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch)
        return y[y != target]

    assert attack_success_rate(always_target, x, y, target) == 1.0
    assert attack_success_rate(true_label, x, y, target) == 0.0
    # only the 4 non-target inputs are evaluated, and they carry the trigger
    assert seen[0].shape == (4, 1, 4, 4)
    assert torch.all(seen[0][..., 1:, 1:] == 1.0)


def test_attack_success_rate_partial_and_scores() -> None:
    x = torch.zeros(4, 9)
    y = torch.tensor([0, 1, 1, 0])

    def half(batch: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(batch.shape[0], 2)
        scores[0, 1] = 1.0  # first non-target input -> class 1 (target)
        return scores

    # non-target (target = 1) inputs: indices 0 and 3; one predicted as target
    assert attack_success_rate(half, x, y, 1) == 0.5


def test_attack_success_rate_validation() -> None:
    x = torch.zeros(3, 9)
    with pytest.raises(ValueError, match="no test input"):
        attack_success_rate(lambda b: b[:, 0], x, torch.tensor([1, 1, 1]), 1)
    with pytest.raises(ValueError, match="predict_fn returned shape"):
        attack_success_rate(lambda b: b[:1, 0], x, torch.tensor([0, 0, 1]), 1)
    with pytest.raises(ValueError, match="predict_fn returned shape"):
        attack_success_rate(lambda b: b.reshape(-1, 3, 3), x, torch.tensor([0, 0, 1]), 1)
    with pytest.raises(ValueError, match="y_test must have shape"):
        attack_success_rate(lambda b: b[:, 0], x, torch.tensor([0, 1]), 1)
