"""DP-SGD (p2pfl.privacy, the private path of p2pfl.learning.local_steps) and its accounting.

Clipping is checked against a per-sample autograd loop on the module itself, on both
gradient paths (the closed-form ReLU-MLP one and the generic vmap one); the reported
epsilon against Opacus's RDP accountant stepped directly.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants import RDPAccountant
from torch import nn

from p2pfl.cli.main import main
from p2pfl.config import PrivacyConfig, Scenario, load_scenario, scenario_from_dict
from p2pfl.errors import ConfigError
from p2pfl.experiment import build_experiment
from p2pfl.launcher.outputs import privacy_fields
from p2pfl.learning import FunctionalModel, LocalData, TrainingSpec, local_steps
from p2pfl.params import flatten
from p2pfl.privacy import DPSpec, NoiseStreams, poisson_batches, sample_rates, seeded_noise
from p2pfl.privacy.accounting import default_delta, epsilon
from p2pfl.sim import Simulation
from p2pfl.sim.outputs import sim_summary

pytestmark = pytest.mark.timeout(120)

SMALL = [
    "run.rounds=3",
    "run.eval_every=3",
    "topology.n=6",
    "topology.params.degree=3",
    "byzantine.count=0",
    "training.local_steps=2",
    "privacy.mechanism=dp_sgd",
    "privacy.clip_norm=0.5",
]


def _models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "relu_mlp": nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)),
        "generic_cnn": nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64, 10),
        ),
    }


def _loop_clipped_sum(
    model: nn.Module,
    flat: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    c: float,
) -> torch.Tensor:
    """sum_b w_b clip(g_b, c), one sample at a time with autograd on the module."""
    fm = FunctionalModel(model)
    out = torch.zeros_like(flat)
    for b in range(len(y)):
        p = flat.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(fm.forward(p, x[b : b + 1]), y[b : b + 1])
        (g,) = torch.autograd.grad(loss, p)
        out += w[b] * g * min(1.0, c / float(g.norm()))
    return out


@pytest.mark.parametrize("kind", ["relu_mlp", "generic_cnn"])
@settings(max_examples=6, deadline=None)
@given(clip=st.floats(0.05, 5.0), seed=st.integers(0, 1000))
def test_per_sample_clipping_is_exact(kind: str, clip: float, seed: int) -> None:
    model = _models()[kind]
    fm = FunctionalModel(model)
    assert (fm._relu_mlp is not None) == (kind == "relu_mlp")
    g = torch.Generator().manual_seed(seed)
    n, b = 3, 7
    params = flatten(model).repeat(n, 1) + 0.3 * torch.randn(n, fm.layout.size, generator=g)
    x = torch.randn(n, b, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (n, b), generator=g)
    w = (torch.rand(n, b, generator=g) < 0.7).float()

    got, loss_sum = fm.clipped_grad_sum(params, x, y, w, clip)

    for k in range(n):
        expected = _loop_clipped_sum(model, params[k], x[k], y[k], w[k], clip)
        torch.testing.assert_close(got[k], expected, rtol=1e-4, atol=1e-5)
        logits = fm.forward(params[k], x[k])
        ce = nn.functional.cross_entropy(logits, y[k], reduction="none")
        assert float(loss_sum[k]) == pytest.approx(float((ce * w[k]).sum()), rel=1e-5)


def test_generic_path_in_chunks_of_nodes_gives_the_same_sums() -> None:
    model = _models()["generic_cnn"]
    fm = FunctionalModel(model)
    g = torch.Generator().manual_seed(2)
    params = flatten(model).repeat(5, 1) + 0.1 * torch.randn(5, fm.layout.size, generator=g)
    x = torch.randn(5, 4, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (5, 4), generator=g)
    w = torch.ones(5, 4)
    whole = fm.clipped_grad_sum(params, x, y, w, 0.5)
    one_node = 4 * 4 * fm.layout.size  # bytes of one node's per-sample gradients
    chunked = fm.clipped_grad_sum(params, x, y, w, 0.5, max_bytes=2 * one_node)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_clipping_bounds_every_sample_and_leaves_small_ones_alone() -> None:
    fm = FunctionalModel(_models()["relu_mlp"])
    params = flatten(fm.module).reshape(1, -1)
    x = torch.randn(1, 5, 64)
    y = torch.randint(0, 10, (1, 5))
    one = torch.eye(5).reshape(5, 1, 5)
    norms = [float(fm.clipped_grad_sum(params, x, y, one[b], 1e9)[0].norm()) for b in range(5)]
    clip = sorted(norms)[2]  # the median: some samples are clipped, some are not
    for b in range(5):
        clipped = float(fm.clipped_grad_sum(params, x, y, one[b], clip)[0].norm())
        assert clipped == pytest.approx(min(norms[b], clip), rel=1e-5)


def test_poisson_batches_do_not_depend_on_the_other_nodes_and_hit_the_rate() -> None:
    sizes = torch.tensor([40, 90, 13, 200])
    rates = sample_rates(32, sizes)
    assert rates.tolist() == pytest.approx([0.8, 32 / 90, 1.0, 0.16])
    nodes = torch.tensor([5, 1, 7, 2])
    idx, valid = poisson_batches(3, nodes, 4, 50, rates, sizes)
    for k in range(4):
        alone_idx, alone_valid = poisson_batches(
            3, nodes[k : k + 1], 4, 50, rates[k : k + 1], sizes[k : k + 1]
        )
        for s in range(50):
            mine = idx[k, s][valid[k, s]]
            torch.testing.assert_close(mine, alone_idx[0, s][alone_valid[0, s]])
            assert torch.all(mine[1:] > mine[:-1])  # sorted, no repeats
            assert bool((mine < sizes[k]).all())
        counts = valid[k].sum(-1).double()
        # 50 steps of Binomial(n, q): the mean is within 5 standard errors of n q
        mean, var = float(sizes[k] * rates[k]), float(sizes[k] * rates[k] * (1 - rates[k]))
        assert abs(float(counts.mean()) - mean) <= 5 * math.sqrt(var / 50) + 1e-9
    assert valid[2].sum(-1).tolist() == [13] * 50  # rate 1: the whole shard, every step
    assert not torch.equal(
        poisson_batches(4, nodes, 4, 1, rates, sizes)[1],
        poisson_batches(3, nodes, 4, 1, rates, sizes)[1][:, :1],
    )


def test_noise_streams_are_per_node_and_seeded() -> None:
    streams = NoiseStreams(9, torch.tensor([3, 0, 5]), 2)
    rows = torch.stack([streams.next(100) for _ in range(4)], 1)  # (3, steps, d)
    for k, node in enumerate([3, 0, 5]):
        torch.testing.assert_close(rows[k], seeded_noise(9, node, 2, 4, 100), rtol=0, atol=0)
    assert not torch.equal(seeded_noise(9, 3, 2, 1, 100), seeded_noise(9, 3, 3, 1, 100))
    big = seeded_noise(1, 0, 1, 1, 100_000)
    assert float(big.mean()) == pytest.approx(0.0, abs=0.02)
    assert float(big.std()) == pytest.approx(1.0, abs=0.02)


def test_one_private_step_is_dp_sgd() -> None:
    """x' = x - lr (sum_e clip(g_e, C) + sigma C xi) / (q n), with the node's batch and noise."""
    model = _models()["relu_mlp"]
    fm = FunctionalModel(model)
    g = torch.Generator().manual_seed(1)
    shards = [
        (torch.randn(s, 64, generator=g), torch.randint(0, 10, (s,), generator=g)) for s in (20, 50)
    ]
    data = LocalData.from_shards(shards)
    dp = DPSpec(clip_norm=0.7, noise_multiplier=1.3, delta=1e-2)
    spec = TrainingSpec(local_steps=1, batch_size=10, lr=0.1, privacy=dp)
    nodes = torch.tensor([4, 8])
    params = flatten(model).repeat(2, 1)

    new, _, _ = local_steps(fm, params, None, data, nodes, spec, seed=5, round_=2)

    rates = sample_rates(10, data.sizes)
    idx, valid = poisson_batches(5, nodes, 2, 1, rates, data.sizes)
    for k, (x, y) in enumerate(shards):
        chosen = idx[k, 0][valid[k, 0]]
        w = torch.ones(len(chosen))
        total = _loop_clipped_sum(model, params[k], x[chosen], y[chosen], w, dp.clip_norm)
        noise = seeded_noise(5, int(nodes[k]), 2, 1, fm.layout.size)[0]
        step = (total + dp.noise_multiplier * dp.clip_norm * noise) / (float(rates[k]) * len(y))
        torch.testing.assert_close(new[k], params[k] - 0.1 * step, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_a_node_alone_trains_as_its_row_of_the_batch(model: str) -> None:
    extra = ["model.name=cnn", "model.params.channels=[4]"] if model == "cnn" else []
    exp = build_experiment(
        load_scenario(
            None, [*SMALL, "privacy.noise_multiplier=1.0", "training.momentum=0.5", *extra]
        )
    )
    n = exp.n
    params = exp.initial.repeat(n, 1)
    momentum = torch.zeros_like(params)
    nodes = torch.arange(n)
    all_new, all_buf, all_loss = local_steps(
        exp.fmodel, params, momentum, exp.local, nodes, exp.training, 1, 3
    )
    for i in (0, n - 1):
        one = torch.tensor([i])
        new, buf, loss = local_steps(
            exp.fmodel, params[one], momentum[one], exp.local.select(one), one, exp.training, 1, 3
        )
        torch.testing.assert_close(new[0], all_new[i], rtol=1e-5, atol=1e-6)
        assert buf is not None and all_buf is not None
        torch.testing.assert_close(buf[0], all_buf[i], rtol=1e-5, atol=1e-6)
        assert float(loss[0]) == pytest.approx(float(all_loss[i]), rel=1e-5)
    plain = dataclasses.replace(exp.training, privacy=None)
    assert not torch.allclose(
        local_steps(exp.fmodel, params, None, exp.local, nodes, plain, 1, 3)[0], all_new
    )


def test_reported_epsilon_is_opacus_rdp_accountant() -> None:
    exp = build_experiment(
        load_scenario(None, [*SMALL, "privacy.noise_multiplier=1.1", "privacy.delta=1e-3"])
    )
    summary = sim_summary(Simulation(exp).run())
    steps = 3 * 2
    per_node = {}
    for i in range(exp.n):
        acc = RDPAccountant()
        rate = min(1.0, 32 / int(exp.local.sizes[i]))
        for _ in range(steps):
            acc.step(noise_multiplier=1.1, sample_rate=rate)
        per_node[str(i)] = acc.get_epsilon(delta=1e-3)
    assert summary["epsilon_per_node"] == pytest.approx(per_node, rel=1e-9)
    assert summary["epsilon"] == pytest.approx(max(per_node.values()), rel=1e-9)
    assert summary["delta"] == 1e-3
    assert len(set(exp.local.sizes.tolist())) > 1  # shards differ: so do the epsilons
    assert len({round(v, 9) for v in per_node.values()}) > 1


@pytest.mark.parametrize("target", [2.0, 8.0])
def test_target_epsilon_is_met_within_five_percent(target: float) -> None:
    exp = build_experiment(load_scenario(None, [*SMALL, f"privacy.target_epsilon={target}"]))
    summary = sim_summary(Simulation(exp).run())
    assert 0.95 * target <= summary["epsilon"] <= target
    assert exp.training.privacy is not None
    assert summary["noise_multiplier"] == exp.training.privacy.noise_multiplier


def test_epsilon_helper_and_default_delta() -> None:
    assert epsilon(1.0, 0.1, 0, 1e-5) == 0.0
    assert epsilon(1.0, 0.1, 100, 1e-5) < epsilon(1.0, 0.1, 200, 1e-5)
    assert epsilon(2.0, 0.1, 100, 1e-5) < epsilon(1.0, 0.1, 100, 1e-5)
    assert default_delta(torch.tensor([71, 90])) == 0.01
    assert default_delta(torch.tensor([100])) == 0.01
    assert default_delta(torch.tensor([101, 5])) == 0.001
    exp = build_experiment(load_scenario(None, [*SMALL, "privacy.noise_multiplier=1.0"]))
    assert exp.training.privacy is not None
    assert exp.training.privacy.delta == default_delta(exp.local.sizes)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["privacy.mechanism=laplace"], "privacy.mechanism"),
        (["privacy.clip_norm=0"], "privacy.clip_norm"),
        (["privacy.clip_norm=nan"], "privacy.clip_norm"),
        (["privacy.noise_multiplier=-1"], "privacy.noise_multiplier"),
        (["privacy.target_epsilon=0"], "privacy.target_epsilon"),
        (["privacy.delta=1.5"], "privacy.delta"),
        (["privacy.delta=0"], "privacy.delta"),
        (["privacy.epsilon=1"], "privacy.epsilon"),
        (["privacy.mechanism=dp_sgd"], "privacy.noise_multiplier"),
        (
            ["privacy.mechanism=dp_sgd", "privacy.noise_multiplier=1", "privacy.target_epsilon=3"],
            "privacy.target_epsilon",
        ),
    ],
)
def test_bad_privacy_values_are_config_errors_naming_the_key(
    overrides: list[str], key: str
) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_scenario(None, overrides)


def test_default_privacy_leaves_the_scenario_identity_unchanged_and_dp_round_trips() -> None:
    assert "privacy" not in Scenario().identity()
    dp_noise = ["privacy.mechanism=dp_sgd", "privacy.noise_multiplier=1"]
    assert "privacy" in load_scenario(None, dp_noise).identity()
    dp = load_scenario(None, ["privacy.mechanism=dp_sgd", "privacy.target_epsilon=4"])
    data = dp.to_dict()
    assert data["privacy"]["target_epsilon"] == 4
    assert scenario_from_dict(json.loads(json.dumps(data))) == dp
    assert dp.privacy == PrivacyConfig(mechanism="dp_sgd", target_epsilon=4.0)


def test_sim_cli_reports_epsilon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    sets = [a for o in [*SMALL, "privacy.noise_multiplier=1.0"] for a in ("--set", o)]
    assert main(["sim", *sets, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epsilon"] > 0
    assert set(summary["epsilon_per_node"]) == {str(i) for i in range(6)}
    text = " ".join(capsys.readouterr().out.split())
    assert f"epsilon {summary['epsilon']:.3g}" in text
    assert f"delta {summary['delta']:.3g}" in text


def test_networked_summaries_take_each_honest_nodes_epsilon_from_its_end_event() -> None:
    run = {"delta": 0.01, "noise_multiplier": 1.5, "clip_norm": 2.0}
    counters = {
        "0": {"rounds_trained": 4, "epsilon": 3.5, **run},
        "1": {"rounds_trained": 4, "epsilon": 9.0, **run},  # Byzantine: not reported
        "2": {"rounds_trained": 3, "epsilon": 2.5, **run},
        "10": {"rounds_trained": 4, "epsilon": 3.75, **run},
    }
    fields = privacy_fields(counters, [1])
    assert fields == {
        "epsilon": 3.75,
        "epsilon_per_node": {"0": 3.5, "2": 2.5, "10": 3.75},
        **run,
    }
    assert list(fields["epsilon_per_node"]) == ["0", "2", "10"]
    assert privacy_fields({"0": {"rounds_trained": 4}}, []) == {}


BN_MODEL = """
from torch import nn


def bn_mlp(input_shape, num_classes):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, num_classes)
    )
"""


def test_dp_sgd_refuses_a_model_with_running_statistics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bn_model_for_dp.py").write_text(BN_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    bn = "bn_model_for_dp:bn_mlp"
    build_experiment(load_scenario(None, [f"model.name={bn}", "run.rounds=1"]))  # fine without DP
    with pytest.raises(ConfigError, match="running statistics"):
        build_experiment(
            load_scenario(
                None,
                [f"model.name={bn}", "privacy.mechanism=dp_sgd", "privacy.noise_multiplier=1.0"],
            )
        )
