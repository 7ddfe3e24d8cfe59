"""``run.device``: checked names, a clear error for a missing device, and (with a GPU) the
simulator and the node computing there with the CPU's numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from p2pfl.cli.main import main
from p2pfl.config import load_scenario
from p2pfl.device import resolve_device
from p2pfl.errors import ConfigError
from p2pfl.experiment import build_experiment
from p2pfl.learning import local_steps
from p2pfl.node.setup import NodeSetup
from p2pfl.sim import Simulation

GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="needs a CUDA device")
without_gpu = pytest.mark.skipif(GPU, reason="checks the error on a machine without CUDA")


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "CPU", "cuda:0:1", ""])
def test_a_bad_device_name_is_a_config_error_naming_the_key(name: str) -> None:
    with pytest.raises(ConfigError, match=r"run\.device: expected 'cpu', 'cuda' or 'cuda:N'"):
        load_scenario(None, [f"run.device={name!r}"])


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_names_load_on_any_machine(name: str) -> None:
    assert load_scenario(None, [f"run.device={name!r}"]).run.device == name


def test_cpu_is_the_default() -> None:
    assert load_scenario(None).run.device == "cpu"
    assert resolve_device("cpu") == torch.device("cpu")


@without_gpu
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_a_missing_cuda_device_says_so(name: str) -> None:
    with pytest.raises(ConfigError, match=r"run\.device: .* requested but .*run\.device='cpu'"):
        resolve_device(name)


@without_gpu
def test_the_sim_command_exits_2_without_the_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["sim", "--set", "run.device=cuda", "--set", "run.rounds=1", "--out", str(tmp_path)]
    )
    assert code == 2
    assert "run.device: 'cuda' requested" in capsys.readouterr().err
    assert not (tmp_path / "summary.json").exists()


@without_gpu
def test_a_node_refuses_a_missing_device_before_any_socket() -> None:
    exp = build_experiment(load_scenario(None, ["run.device=cuda"]))
    with pytest.raises(ConfigError, match=r"run\.device"):
        NodeSetup.from_experiment(exp, 0)


def test_a_device_index_beyond_the_machine_is_an_error() -> None:
    if not GPU:
        pytest.skip("needs a CUDA device to count")
    count = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=f"has {count} CUDA device"):
        resolve_device(f"cuda:{count}")


def _run(overrides: list[str]) -> Simulation:
    sim = Simulation(build_experiment(load_scenario(None, overrides)))
    sim.run()
    return sim


@needs_gpu
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("overrides", "continuous"),
    [
        ([], True),
        (
            ["byzantine.attack=dissensus", "aggregator.name=trimmed_mean", "training.momentum=0.9"],
            True,
        ),
        (["byzantine.attack=label_flip", "aggregator.name=geometric_median"], True),
        # Krum selects one vector: a float difference may select another, so only accuracy
        (
            ["byzantine.attack=alie", "byzantine.knowledge=omniscient", "aggregator.name=krum"],
            False,
        ),
    ],
)
def test_the_simulator_on_cuda_gives_the_cpu_numbers(
    overrides: list[str], continuous: bool
) -> None:
    # Prepare
    base = [*overrides, "run.rounds=4"]
    # Execute
    cpu = _run(base)
    gpu = _run([*base, "run.device=cuda"])
    # Assert: the same run, up to float rounding on another device
    assert gpu.device.type == "cuda"
    assert gpu.params.device.type == "cuda"
    done = gpu.result(0.0)
    assert done.params.device.type == "cpu"
    assert bool(torch.isfinite(done.params).all())
    if continuous:
        torch.testing.assert_close(done.params, cpu.params, rtol=0, atol=1e-3)
    for a, b in zip(gpu.history, cpu.history, strict=True):
        assert float(a.honest_accuracy.mean()) == pytest.approx(
            float(b.honest_accuracy.mean()), abs=0.03
        )


@needs_gpu
def test_a_node_trains_on_cuda_with_the_cpu_numbers() -> None:
    # Prepare
    exp = build_experiment(load_scenario(None, ["run.device=cuda"]))
    setup = NodeSetup.from_experiment(exp, 0)
    params = setup.initial.reshape(1, -1)
    nodes = torch.tensor([0])
    # Execute
    on_gpu, _, loss_gpu = local_steps(
        setup.fmodel, params.cuda(), None, setup.local, nodes, setup.training, setup.seed, 1
    )
    cpu_local = exp.local.select(nodes)
    on_cpu, _, loss_cpu = local_steps(
        setup.fmodel, params, None, cpu_local, nodes, setup.training, setup.seed, 1
    )
    # Assert
    assert setup.device.type == "cuda" and setup.test_x.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=0, atol=1e-4)
    torch.testing.assert_close(loss_gpu.cpu(), loss_cpu, rtol=0, atol=1e-4)
