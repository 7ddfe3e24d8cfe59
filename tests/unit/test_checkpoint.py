"""Checkpoints: round trip, atomic replacement, keeping two, corrupt and mismatched files."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import torch

from p2pfl.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointMismatch,
    checkpoint_paths,
    load_checkpoint,
    save_checkpoint,
)

pytestmark = pytest.mark.timeout(30)

D = 10


def vec(seed: int, d: int = D) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(seed))


def save(tmp_path: Path, round: int, **kw: object) -> Path:
    args: dict[str, object] = {"momentum": vec(100 + round), "extra": {"lr": 0.1, "step": round}}
    args.update(kw)
    return save_checkpoint(tmp_path, 3, round, vec(round), fingerprint="fp", **args)  # type: ignore[arg-type]


def test_round_trip_is_exact(tmp_path: Path) -> None:
    extra = {"lr": 0.05, "steps": [1, 2, 3], "rng": b"\x00\x01", "name": "sgd", "none": None}
    save_checkpoint(tmp_path, 3, 7, vec(1), vec(2), extra, fingerprint="abc")
    ckpt = load_checkpoint(tmp_path, 3, param_count=D, fingerprint="abc")
    assert isinstance(ckpt, Checkpoint)
    assert (ckpt.node_id, ckpt.round, ckpt.fingerprint) == (3, 7, "abc")
    assert torch.equal(ckpt.params, vec(1)) and ckpt.params.dtype == torch.float32
    assert ckpt.momentum is not None and torch.equal(ckpt.momentum, vec(2))
    assert ckpt.extra == extra
    ckpt.params.add_(1)  # loaded tensors are writable and independent of the file
    assert torch.equal(load_checkpoint(tmp_path, 3).params, vec(1))  # type: ignore[union-attr]


def test_without_momentum_and_empty_extra(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 0, 0, vec(1))
    ckpt = load_checkpoint(tmp_path, 0)
    assert ckpt is not None and ckpt.momentum is None and ckpt.extra == {}


def test_no_checkpoint_is_none(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path / "missing", 0) is None
    assert load_checkpoint(tmp_path, 0) is None
    save(tmp_path, 1)
    assert load_checkpoint(tmp_path, 4) is None  # another node's directory content


def test_keeps_the_last_two(tmp_path: Path) -> None:
    for r in (1, 2, 3, 4):
        save(tmp_path, r)
    assert [p.name for p in checkpoint_paths(tmp_path, 3)] == [
        "node-3.round-0000000004.ckpt",
        "node-3.round-0000000003.ckpt",
    ]
    assert load_checkpoint(tmp_path, 3).round == 4  # type: ignore[union-attr]


def test_stray_temp_file_from_a_crash_is_ignored_and_cleaned(tmp_path: Path) -> None:
    # Prepare: a complete checkpoint, then a "crash" halfway through writing the next
    save(tmp_path, 5)
    good = (tmp_path / "node-3.round-0000000005.ckpt").read_bytes()
    stray = tmp_path / ".node-3.round-0000000006.ckpt.tmp-deadbeef"
    stray.write_bytes(good[: len(good) // 2])
    # Execute / Assert: the loader ignores it ...
    ckpt = load_checkpoint(tmp_path, 3)
    assert ckpt is not None and ckpt.round == 5
    # ... and the next save removes it
    save(tmp_path, 6)
    assert not stray.exists()
    assert load_checkpoint(tmp_path, 3).round == 6  # type: ignore[union-attr]


def test_failed_write_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save(tmp_path, 1)

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="No space"):
        save(tmp_path, 2)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["node-3.round-0000000001.ckpt"]
    assert load_checkpoint(tmp_path, 3).round == 1  # type: ignore[union-attr]


def test_truncated_file_is_a_clear_error_naming_the_intact_previous(tmp_path: Path) -> None:
    save(tmp_path, 1)
    newest = save(tmp_path, 2)
    data = newest.read_bytes()
    newest.write_bytes(data[:-3])
    with pytest.raises(
        CheckpointError, match=r"truncated.*previous checkpoint .*round-0000000001.* is intact"
    ):
        load_checkpoint(tmp_path, 3)
    newest.write_bytes(data + b"x")
    with pytest.raises(CheckpointError, match="trailing bytes"):
        load_checkpoint(tmp_path, 3)
    newest.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path, 3)


def test_flipped_payload_or_header_byte_is_detected(tmp_path: Path) -> None:
    path = save(tmp_path, 1)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"payload.*crc32"):
        load_checkpoint(tmp_path, 3)
    data[-1] ^= 0xFF
    data[14] ^= 0x01  # inside the msgpack header
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="header"):
        load_checkpoint(tmp_path, 3)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "node-3.round-0000000001.ckpt").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    with pytest.raises(CheckpointError, match="bad magic"):
        load_checkpoint(tmp_path, 3)


def test_huge_declared_header_is_refused(tmp_path: Path) -> None:
    (tmp_path / "node-3.round-0000000001.ckpt").write_bytes(struct.pack("<8sI", b"P2PFLCK1", 2**31))
    with pytest.raises(CheckpointError, match="header"):
        load_checkpoint(tmp_path, 3)


def test_different_model_is_a_mismatch(tmp_path: Path) -> None:
    save(tmp_path, 1)
    with pytest.raises(
        CheckpointMismatch, match=f"model of {D} values; this node's model has {D + 1}"
    ):
        load_checkpoint(tmp_path, 3, param_count=D + 1)
    with pytest.raises(CheckpointMismatch, match="fingerprint"):
        load_checkpoint(tmp_path, 3, fingerprint="other")
    assert load_checkpoint(tmp_path, 3, param_count=D, fingerprint="fp") is not None


def test_checkpoint_of_another_node_is_a_mismatch(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 1, 4, vec(0))
    path.rename(tmp_path / "node-2.round-0000000004.ckpt")
    with pytest.raises(CheckpointMismatch, match="checkpoint of node 1, not node 2"):
        load_checkpoint(tmp_path, 2)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="float32 vector"):
        save_checkpoint(tmp_path, 0, 0, torch.ones(D, dtype=torch.float64))
    with pytest.raises(ValueError, match="float32 vector"):
        save_checkpoint(tmp_path, 0, 0, torch.ones(2, 5))
    with pytest.raises(ValueError, match="momentum has 3 values"):
        save_checkpoint(tmp_path, 0, 0, vec(0), torch.ones(3))
    with pytest.raises(ValueError, match="plain data"):
        save_checkpoint(tmp_path, 0, 0, vec(0), extra={"obj": object()})
    with pytest.raises(ValueError, match="round"):
        save_checkpoint(tmp_path, 0, -1, vec(0))
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, 0, 0, vec(0), keep=0)
    assert list(tmp_path.iterdir()) == []


def test_file_is_private_and_never_pickle(tmp_path: Path) -> None:
    path = save(tmp_path, 1)
    assert path.stat().st_mode & 0o077 == 0
    assert path.read_bytes()[:8] == b"P2PFLCK1"
    assert b"\x80\x04" not in path.read_bytes()[:2]  # not a pickle protocol header
