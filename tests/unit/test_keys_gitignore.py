"""Keys stay private by default: ``p2pfl keys generate`` writes a ``.gitignore`` that keeps
the secret key files out of git, and says where the secrets are."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import networkx as nx
import pytest

from p2pfl.cli.main import main
from p2pfl.security.keys import generate_keys, ignore_secrets
from p2pfl.topology import Topology, save_topology


def test_generate_writes_a_gitignore_for_the_secrets(tmp_path: Path) -> None:
    generate_keys(tmp_path / "keys", [0, 1])
    lines = (tmp_path / "keys" / ".gitignore").read_text().splitlines()
    assert "*.key_secret" in lines


def test_an_existing_gitignore_gets_the_pattern_once(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("notes.txt")  # no final newline
    ignore_secrets(tmp_path)
    ignore_secrets(tmp_path)
    lines = (tmp_path / ".gitignore").read_text().splitlines()
    assert lines[0] == "notes.txt"
    assert lines.count("*.key_secret") == 1


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_cli_keys_in_a_git_work_tree_leave_no_secret_to_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    topology = tmp_path / "mynet" / "topology.toml"
    topology.parent.mkdir()
    addresses = {i: f"127.0.0.1:{47000 + i}" for i in range(3)}
    save_topology(Topology(graph=nx.cycle_graph(3), addresses=addresses), topology)

    code = main(["keys", "generate", "--topology", str(topology), "--dir", "mynet/keys"])

    assert code == 0
    out = capsys.readouterr().out
    assert "secret keys: mynet/keys/node-*.key_secret" in out and "keep them private" in out
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "mynet/keys/node-0.key" in status  # public keys may be committed
    assert "key_secret" not in status


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
