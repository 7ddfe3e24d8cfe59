"""Frozen layers (``model.freeze``): neither trained nor exchanged, covered by the fingerprint."""

from __future__ import annotations

import asyncio

import pytest
import torch
from test_node import Network, assert_parity, experiment, run_all
from torch import nn

from p2pfl import wire
from p2pfl.config import load_scenario
from p2pfl.errors import ConfigError, ProtocolError
from p2pfl.experiment import build_experiment
from p2pfl.learning import FunctionalModel
from p2pfl.models import cnn, freeze
from p2pfl.node import Node, NodeSetup
from p2pfl.params import frozen_names
from p2pfl.sim import Simulation
from p2pfl.sim.outputs import sim_summary
from p2pfl.sweep import cell_id

pytestmark = pytest.mark.timeout(60)


def test_patterns_that_match_nothing_or_everything_are_config_errors() -> None:
    model = cnn((1, 8, 8), 10)
    with pytest.raises(ConfigError, match=r"model.freeze: pattern 'features\.\*' matches no"):
        freeze(model, ["0.*", "features.*"])
    with pytest.raises(ConfigError, match="freezes every parameter"):
        freeze(model, ["*"])
    with pytest.raises(ConfigError, match=r"model.freeze: pattern 'nope'"):
        build_experiment(load_scenario(None, ["model.freeze=['nope']"]))
    assert all(p.requires_grad for p in model.parameters())  # a failed freeze froze nothing


def test_batchnorm_statistics_freeze_with_their_layer() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    freeze(model, ["1.*"])
    assert frozen_names(model) == {
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    }
    freeze(model, ["0.weight"])  # a partly frozen layer keeps nothing else frozen
    assert "0.bias" not in frozen_names(model)


def test_gradients_of_the_shared_slice_are_those_of_the_whole_model() -> None:
    torch.manual_seed(0)
    whole = cnn((1, 8, 8), 10)
    part = cnn((1, 8, 8), 10)
    part.load_state_dict(whole.state_dict())
    freeze(part, ["0.*"])
    full, shared = FunctionalModel(whole), FunctionalModel(part)
    keep = torch.ones(full.layout.size, dtype=torch.bool)
    for s in full.layout.slots:
        if s.name.startswith("0."):
            keep[s.offset : s.offset + s.numel] = False
    params = full.initial().reshape(1, -1).repeat(3, 1) + 0.01 * torch.randn(3, full.layout.size)
    x, y = torch.randn(3, 5, 1, 8, 8), torch.randint(0, 10, (3, 5))
    # the frozen part of the shared model is its initial state, so compare from there
    params[:, ~keep] = full.initial()[~keep]

    g_full, loss_full = full.grads(params, x, y)
    g_shared, loss_shared = shared.grads(params[:, keep], x, y)

    assert shared.shared.size == int(keep.sum()) < full.layout.size
    torch.testing.assert_close(g_shared, g_full[:, keep], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_shared, loss_full)


def test_fingerprint_covers_which_entries_are_frozen_and_their_values() -> None:
    torch.manual_seed(1)
    a = cnn((1, 8, 8), 10)
    b = cnn((1, 8, 8), 10)
    b.load_state_dict(a.state_dict())
    plain = FunctionalModel(a).fingerprint()
    freeze(a, ["0.*"])
    freeze(b, ["0.*"])
    assert FunctionalModel(a).fingerprint() == FunctionalModel(b).fingerprint() != plain
    with torch.no_grad():
        b[0].weight[0, 0, 0, 0] += 1e-3
    assert FunctionalModel(b).fingerprint() != FunctionalModel(a).fingerprint()


def test_a_frozen_run_exchanges_and_reports_only_the_trainable_slice() -> None:
    exp = build_experiment(
        load_scenario(None, ["model.freeze=['1.*']", "run.rounds=2", "topology.n=6"])
    )
    result = Simulation(exp).run()
    summary = sim_summary(result)
    first = exp.model[1]
    assert isinstance(first, nn.Linear)
    frozen_count = first.weight.numel() + first.bias.numel()
    assert summary["parameters"] == exp.fmodel.layout.size
    assert summary["shared_parameters"] == summary["parameters"] - frozen_count
    assert result.params.shape == (6, summary["shared_parameters"])
    frames = wire.encode(wire.Params(0, 1, result.params[0]))
    payload = sum(memoryview(f).nbytes for f in frames[1:])
    assert payload == 4 * summary["shared_parameters"]


async def test_nodes_with_a_frozen_model_match_the_simulator() -> None:
    exp = experiment("byzantine.count=1", "aggregator.name=median", "model.freeze=['1.*']")
    assert exp.shared_parameters < exp.parameters

    results = await run_all(exp)

    assert_parity(exp, results)


async def test_nodes_with_other_frozen_weights_refuse_each_other_by_name() -> None:
    mine = experiment("byzantine.count=0", "model.freeze=['1.*']", "network.hello_timeout=1.0")
    theirs = experiment("byzantine.count=0", "model.freeze=['1.*']", "network.hello_timeout=1.0")
    with torch.no_grad():
        theirs.model[1].weight.mul_(1.01)  # another pre-trained feature layer
    network = Network(mine, nodes=[0, 1])
    try:
        zero = Node(NodeSetup.from_experiment(mine, 0), network.transports[0])
        one = Node(NodeSetup.from_experiment(theirs, 1), network.transports[1])
        assert zero.setup.d == one.setup.d  # same length: only the fingerprint tells them apart
        outcomes = await asyncio.gather(zero.run(), one.run(), return_exceptions=True)
    finally:
        await network.close()
    for node, outcome in zip((zero, one), outcomes, strict=True):
        assert isinstance(outcome, ProtocolError)
        assert "announced a different model" in str(outcome)
        assert node.counters.rejections.by_reason().get("wrong_model", 0) >= 1


def test_new_keys_at_their_defaults_keep_a_scenarios_sweep_identity() -> None:
    plain = load_scenario(None, [])
    same = load_scenario(None, ["model.freeze=[]", "evaluation.local_test=false"])
    frozen = load_scenario(None, ["model.freeze=['1.*']"])
    local = load_scenario(None, ["evaluation.local_test=true"])
    assert cell_id(same) == cell_id(plain)
    assert len({cell_id(plain), cell_id(frozen), cell_id(local)}) == 3
    assert "evaluation" not in plain.identity() and "evaluation" in plain.to_dict()
    assert plain.identity()["model"] == {
        k: v for k, v in plain.to_dict()["model"].items() if k != "freeze"
    }
