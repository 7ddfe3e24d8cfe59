"""Restart from a checkpoint: restored state, catch-up median, bad input, the CLI flag."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from p2pfl import wire
from p2pfl.checkpoint import Checkpoint, save_checkpoint
from p2pfl.cli.main import main
from p2pfl.config import load_scenario
from p2pfl.experiment import build_experiment
from p2pfl.node import Node, NodeSetup
from p2pfl.node.node import coordinate_median
from p2pfl.node.process import keep_previous_log, log_path
from p2pfl.transport import MemoryNetwork, MemoryTransport

pytestmark = pytest.mark.timeout(60)

OVERRIDES = [
    "topology.kind=ring",
    "topology.n=4",
    "topology.params={}",
    "run.rounds=6",
    "model.params.hidden=[8]",
    "training.momentum=0.5",
    "byzantine.count=0",
    "aggregator.name=mean",
    "aggregator.f=0",
]


def node_with(ckpt: Checkpoint) -> Node:
    exp = build_experiment(load_scenario(None, OVERRIDES))
    setup = NodeSetup.from_experiment(exp, 1)
    peers = {j: f"127.0.0.1:{42000 + j}" for j in setup.neighbours}
    transport = MemoryTransport(MemoryNetwork(), 1, "127.0.0.1:42001", peers)
    return Node(setup, transport, resume=ckpt)


def checkpoint(d: int, *, node_id: int = 1, round_: int = 3) -> Checkpoint:
    gen = torch.Generator().manual_seed(0)
    return Checkpoint(
        node_id=node_id,
        round=round_,
        params=torch.randn(d, generator=gen),
        momentum=torch.randn(d, generator=gen),
        extra={"train_loss": 0.25},
    )


def param_count() -> int:
    return int(build_experiment(load_scenario(None, OVERRIDES)).initial.numel())


def test_a_resumed_node_restores_params_momentum_round_and_loss() -> None:
    ckpt = checkpoint(param_count())
    node = node_with(ckpt)
    assert node.resumed_from == 3 and node.round == 3
    assert torch.equal(node.params, ckpt.params)
    assert node._momentum is not None and ckpt.momentum is not None
    assert torch.equal(node._momentum[0], ckpt.momentum)
    assert node._train_loss == 0.25
    hello = node._hello()
    announced = wire.decode(hello)
    assert isinstance(announced, wire.Hello) and announced.round == 3


def test_a_checkpoint_that_does_not_fit_is_refused_by_name() -> None:
    d = param_count()
    with pytest.raises(ValueError, match="checkpoint of node 0"):
        node_with(checkpoint(d, node_id=0))
    with pytest.raises(ValueError, match="parameters; the model has"):
        node_with(checkpoint(d + 1))
    with pytest.raises(ValueError, match="the run has 6 rounds"):
        node_with(checkpoint(d, round_=7))


def test_coordinate_median_averages_the_middle_pair_and_refuses_empty_input() -> None:
    rows = torch.tensor([[0.0, 10.0], [1.0, -5.0], [100.0, 0.0]])
    assert torch.equal(coordinate_median(rows), torch.tensor([1.0, 0.0]))
    assert torch.equal(coordinate_median(rows[:2]), torch.tensor([0.5, 2.5]))
    with pytest.raises(ValueError, match="non-empty"):
        coordinate_median(torch.zeros(0, 3))


def test_the_previous_log_is_kept_under_a_fresh_name(tmp_path: Path) -> None:
    assert keep_previous_log(tmp_path, 4) is None
    log_path(tmp_path, 4).write_text("first\n")
    assert keep_previous_log(tmp_path, 4) == tmp_path / "node-4.before-resume-1.jsonl"
    log_path(tmp_path, 4).write_text("second\n")
    assert keep_previous_log(tmp_path, 4) == tmp_path / "node-4.before-resume-2.jsonl"
    assert (tmp_path / "node-4.before-resume-1.jsonl").read_text() == "first\n"
    assert not log_path(tmp_path, 4).exists()


def test_resume_without_out_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["node", "--id", "0", "--resume", "--insecure"])
    assert code != 0
    assert "--resume needs --out" in capsys.readouterr().err


def test_resume_with_a_checkpoint_of_another_model_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topo = tmp_path / "t.toml"
    main(["topology", "generate", "ring", "--n", "4", "--out", str(topo), "--base-port", "43100"])
    save_checkpoint(tmp_path / "out" / "checkpoints", 0, 2, torch.zeros(3), None, {})
    args = ["node", "--id", "0", "--out", str(tmp_path / "out"), "--resume", "--insecure"]
    code = main([*args, "--set", f"topology.file={topo}", "--set", "model.params.hidden=[8]"])
    assert code != 0
    err = capsys.readouterr().err
    assert "node-0.round-0000000002.ckpt" in err and "model has" in err
