"""Key files: generation, permissions, loading errors, and ``p2pfl keys generate``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import networkx as nx
import pytest
import zmq
import zmq.auth

from p2pfl.cli.main import main
from p2pfl.security.keys import (
    KeyFileError,
    KeyPair,
    check_public_keys,
    check_z85_key,
    generate_keys,
    load_node_keys,
    load_public_key,
    public_key_path,
    secret_key_path,
    write_key_pair,
)
from p2pfl.topology import Topology, load_topology, save_topology

pytestmark = pytest.mark.timeout(30)
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ----------------------------------------------------------------------------- generate


def test_generate_writes_a_valid_pair_per_node(tmp_path: Path) -> None:
    # Prepare / Execute
    keys = generate_keys(tmp_path / "k", [0, 1, 2])
    # Assert
    assert sorted(keys) == [0, 1, 2]
    assert len(set(keys.values())) == 3
    for node, public in keys.items():
        pair = load_node_keys(tmp_path / "k", node)
        assert pair.public.decode() == public
        assert zmq.curve_public(pair.secret) == pair.public
        assert load_public_key(public_key_path(tmp_path / "k", node)) == pair.public


def test_secret_files_are_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        generate_keys(tmp_path, [4])
    finally:
        os.umask(old)
    assert mode_of(secret_key_path(tmp_path, 4)) == 0o600
    assert mode_of(public_key_path(tmp_path, 4)) == 0o644


def test_new_key_directory_is_private(tmp_path: Path) -> None:
    generate_keys(tmp_path / "fresh", [0])
    assert mode_of(tmp_path / "fresh") & 0o077 == 0


def test_files_are_readable_by_pyzmq_certificate_loader(tmp_path: Path) -> None:
    generate_keys(tmp_path, [7])
    public, secret = zmq.auth.load_certificate(secret_key_path(tmp_path, 7))
    pair = load_node_keys(tmp_path, 7)
    assert (public, secret) == (pair.public, pair.secret)
    public_only, none = zmq.auth.load_certificate(public_key_path(tmp_path, 7))
    assert public_only == pair.public and none is None


def test_refuses_to_overwrite_without_force_and_writes_nothing(tmp_path: Path) -> None:
    generate_keys(tmp_path, [1])
    before = load_node_keys(tmp_path, 1)
    with pytest.raises(KeyFileError, match=r"already exist.*--force"):
        generate_keys(tmp_path, [0, 1])
    assert not secret_key_path(tmp_path, 0).exists()  # checked before writing anything
    assert load_node_keys(tmp_path, 1) == before


def test_force_replaces_keys_and_keeps_mode(tmp_path: Path) -> None:
    generate_keys(tmp_path, [1])
    before = load_node_keys(tmp_path, 1)
    generate_keys(tmp_path, [1], force=True)
    after = load_node_keys(tmp_path, 1)
    assert after != before
    assert mode_of(secret_key_path(tmp_path, 1)) == 0o600
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_write_key_pair_rejects_a_mismatched_pair(tmp_path: Path) -> None:
    a, b = zmq.curve_keypair(), zmq.curve_keypair()
    with pytest.raises(KeyFileError, match="does not belong"):
        write_key_pair(tmp_path, 0, KeyPair(a[0], b[1]))


def test_generate_rejects_bad_node_ids_and_a_file_as_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="non-negative ints"):
        generate_keys(tmp_path, [-1])
    (tmp_path / "file").write_text("x")
    with pytest.raises(KeyFileError, match="not a directory"):
        generate_keys(tmp_path / "file", [0])


# ----------------------------------------------------------------------------- load errors


def test_load_missing_key_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"node-3\.key_secret: key file not found"):
        load_node_keys(tmp_path, 3)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_load_refuses_a_secret_readable_by_others(tmp_path: Path, mode: int) -> None:
    generate_keys(tmp_path, [0])
    os.chmod(secret_key_path(tmp_path, 0), mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_node_keys(tmp_path, 0)


@pytest.mark.skipif(IS_ROOT, reason="root can read a file of mode 000")
def test_load_reports_an_unreadable_secret(tmp_path: Path) -> None:
    generate_keys(tmp_path, [0])
    os.chmod(secret_key_path(tmp_path, 0), 0o000)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_node_keys(tmp_path, 0)


def test_load_rejects_malformed_and_public_only_files(tmp_path: Path) -> None:
    secret = secret_key_path(tmp_path, 0)
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'curve\n    public-key = "tooshort"\n')
    os.close(fd)
    with pytest.raises(KeyFileError, match="not a CurveZMQ key"):
        load_node_keys(tmp_path, 0)
    generate_keys(tmp_path / "other", [0])
    text = public_key_path(tmp_path / "other", 0).read_bytes()
    os.truncate(secret, 0)
    secret.write_bytes(text)
    with pytest.raises(KeyFileError, match="no secret-key line"):
        load_node_keys(tmp_path, 0)


def test_load_rejects_a_public_file_from_another_pair(tmp_path: Path) -> None:
    generate_keys(tmp_path / "a", [0])
    generate_keys(tmp_path / "b", [0])
    public_key_path(tmp_path / "a", 0).write_bytes(public_key_path(tmp_path / "b", 0).read_bytes())
    with pytest.raises(KeyFileError, match="differs"):
        load_node_keys(tmp_path / "a", 0)


def test_load_rejects_a_secret_that_does_not_match_its_public_line(tmp_path: Path) -> None:
    generate_keys(tmp_path, [0])
    path = secret_key_path(tmp_path, 0)
    other_public = zmq.curve_keypair()[0].decode()
    lines = [
        f'    public-key = "{other_public}"' if "public-key" in line else line
        for line in path.read_text().splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(KeyFileError, match="does not belong"):
        load_node_keys(tmp_path, 0)


def test_check_z85_and_duplicate_public_keys() -> None:
    key = zmq.curve_keypair()[0].decode()
    assert check_z85_key(key, "k") == key.encode()
    with pytest.raises(KeyFileError, match="not a CurveZMQ key"):
        check_z85_key("x" * 39 + "~", "k")
    with pytest.raises(KeyFileError, match="same public key"):
        check_public_keys({0: key, 1: key})


# ----------------------------------------------------------------------------- CLI


def ring_file(tmp_path: Path, n: int = 4) -> Path:
    path = tmp_path / "ring.toml"
    save_topology(Topology(nx.cycle_graph(n), name="ring"), path)
    return path


def test_cli_generate_records_public_keys_in_the_topology(tmp_path: Path) -> None:
    topo = ring_file(tmp_path)
    rc = main(["keys", "generate", "--topology", str(topo), "--dir", str(tmp_path / "keys")])
    assert rc == 0
    t = load_topology(topo)
    assert sorted(t.public_keys) == [0, 1, 2, 3]
    for node, public in t.public_keys.items():
        assert load_node_keys(tmp_path / "keys", node).public.decode() == public


def test_cli_refuses_to_replace_keys_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topo = ring_file(tmp_path)
    args = ["keys", "generate", "--topology", str(topo), "--dir", str(tmp_path / "keys")]
    assert main(args) == 0
    first = load_topology(topo).public_keys
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert load_topology(topo).public_keys == first
    assert main([*args, "--force"]) == 0
    second = load_topology(topo).public_keys
    assert set(second.values()).isdisjoint(first.values())


def test_cli_without_action_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys"]) == 2
    assert "generate" in capsys.readouterr().err


def test_cli_missing_topology_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["keys", "generate", "--topology", str(tmp_path / "no.toml"), "--dir", str(tmp_path)])
    assert rc == 2
    assert "no such topology file" in capsys.readouterr().err
