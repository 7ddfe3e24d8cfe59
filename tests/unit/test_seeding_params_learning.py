"""Counter-based seeding, parameter flattening and vectorized local training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from p2pfl.learning import FunctionalModel, LocalData, TrainingSpec, evaluate, local_steps
from p2pfl.params import ParamLayout, flatten, load_flat, unflatten
from p2pfl.seeding import batch_indices, derive_seed, round_batch_indices


def test_batch_indices_same_for_one_node_or_all() -> None:
    sizes = torch.tensor([7, 90, 13, 1, 250])
    nodes = torch.tensor([3, 8, 11, 12, 40])
    all_rows = batch_indices(5, nodes, 4, 2, 16, sizes)
    for k in range(5):
        one = batch_indices(5, nodes[k : k + 1], 4, 2, 16, sizes[k : k + 1])
        assert torch.equal(one[0], all_rows[k])
    assert bool((all_rows < sizes.reshape(-1, 1)).all())
    assert bool((all_rows >= 0).all())


def test_round_batch_indices_are_every_steps_batch_indices() -> None:
    sizes = torch.tensor([7, 90, 13])
    nodes = torch.tensor([3, 8, 11])
    steps = round_batch_indices(5, nodes, 4, 6, 16, sizes)
    assert steps.shape == (3, 6, 16)
    for step in range(6):
        assert torch.equal(steps[:, step], batch_indices(5, nodes, 4, step, 16, sizes))
    assert torch.equal(round_batch_indices(5, nodes, 4, 6, 16, sizes, first=4), steps[:, 4:])
    assert not torch.equal(steps[:, 0], steps[:, 1])


def test_batch_indices_depend_on_every_coordinate() -> None:
    sizes = torch.tensor([1000])
    base = batch_indices(0, torch.tensor([1]), 1, 1, 64, sizes)
    for args in [(1, [1], 1, 1), (0, [2], 1, 1), (0, [1], 2, 1), (0, [1], 1, 2)]:
        seed, node, r, step = args
        other = batch_indices(seed, torch.tensor(node), r, step, 64, sizes)
        assert not torch.equal(base, other)


def test_batch_indices_roughly_uniform() -> None:
    idx = batch_indices(0, torch.arange(200), 0, 0, 100, torch.full((200,), 10))
    counts = torch.bincount(idx.flatten(), minlength=10).float()
    assert float(counts.min()) > 0.9 * 2000 and float(counts.max()) < 1.1 * 2000


def test_derive_seed_is_stable_and_32_bit() -> None:
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    assert derive_seed(1, 2, 3) != derive_seed(1, 3, 2)
    assert 0 <= derive_seed(2**40, -5) < 2**32


def test_flatten_round_trip_with_buffers() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model[1].running_mean.fill_(0.5)
    model[1].num_batches_tracked.fill_(7)
    layout = ParamLayout.of(model)
    vec = flatten(model)
    assert vec.dtype == torch.float32 and vec.numel() == layout.size
    state = unflatten(vec, layout)
    for name, t in model.state_dict().items():
        assert state[name].dtype == t.dtype and torch.equal(state[name], t)
    assert int(layout.trainable_mask.sum()) == sum(p.numel() for p in model.parameters())
    load_flat(model, vec * 0 + 2)
    assert float(model[0].weight.detach()[0, 0]) == 2.0 and int(model[1].num_batches_tracked) == 2
    with pytest.raises(ValueError, match="does not match a layout"):
        unflatten(vec[:-1], layout)


def test_fingerprint_distinguishes_architectures() -> None:
    a = ParamLayout.of(nn.Linear(3, 4)).fingerprint()
    assert a == ParamLayout.of(nn.Linear(3, 4)).fingerprint()
    assert a != ParamLayout.of(nn.Linear(4, 3)).fingerprint()


def _toy(n_nodes: int = 4) -> tuple[FunctionalModel, torch.Tensor, LocalData]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(1)
    shards = []
    for k in range(n_nodes):
        x = torch.randn(10 + 3 * k, 6, generator=g)
        shards.append((x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()))
    fm = FunctionalModel(model)
    params = flatten(model).repeat(n_nodes, 1)
    return fm, params, LocalData.from_shards(shards)


def test_local_steps_batched_equals_one_node_at_a_time() -> None:
    fm, params, data = _toy()
    spec = TrainingSpec(local_steps=3, batch_size=5, lr=0.1, momentum=0.5, weight_decay=1e-3)
    nodes = torch.arange(4)
    out, buf, loss = local_steps(fm, params, torch.zeros_like(params), data, nodes, spec, 7, 2)
    assert buf is not None
    for k in range(4):
        sel = torch.tensor([k])
        one, one_buf, one_loss = local_steps(
            fm, params[sel], torch.zeros_like(params[sel]), data.select(sel), sel, spec, 7, 2
        )
        assert torch.allclose(one[0], out[k], rtol=1e-6, atol=1e-7)
        assert one_buf is not None and torch.allclose(one_buf[0], buf[k], atol=1e-7)
        assert float(one_loss[0]) == pytest.approx(float(loss[k]), rel=1e-6)
    assert not torch.equal(out, params)


def test_local_steps_matches_manual_sgd() -> None:
    fm, params, data = _toy(1)
    spec = TrainingSpec(local_steps=1, batch_size=4, lr=0.5)
    nodes = torch.tensor([0])
    out, _, _ = local_steps(fm, params, None, data, nodes, spec, 3, 1)
    idx = batch_indices(3, nodes, 1, 0, 4, data.sizes)[0]
    model = fm.module
    load_flat(model, params[0])
    model.zero_grad()
    nn.functional.cross_entropy(model(data.x[idx]), data.y[idx]).backward()
    expected = torch.cat([(p - 0.5 * p.grad).reshape(-1) for p in model.parameters()])
    assert torch.allclose(out[0], expected, atol=1e-6)


def test_training_reduces_loss_and_evaluate_counts_correct() -> None:
    fm, params, data = _toy(2)
    spec = TrainingSpec(local_steps=60, batch_size=8, lr=0.3)
    out, _, _ = local_steps(fm, params, None, data, torch.arange(2), spec, 0, 1)
    _, before = evaluate(fm, params, data.x, data.y)
    acc, after = evaluate(fm, out, data.x, data.y)
    assert bool((after < before).all())
    logits = fm.logits(out, data.x)
    manual = (logits.argmax(-1) == data.y).float().mean(-1)
    assert torch.allclose(acc, manual)


def test_local_data_rejects_empty_shard() -> None:
    with pytest.raises(ValueError, match="at least one training sample"):
        LocalData.from_shards([(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))])
