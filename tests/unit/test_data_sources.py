"""The digits, synthetic, npz and mnist loaders, and the IDX reader."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from p2pfl.data import load_dataset, read_idx, write_idx
from p2pfl.data.digits import digits
from p2pfl.data.idx import parse_idx
from p2pfl.data.synthetic import synthetic
from p2pfl.errors import ConfigError, DataError

pytestmark = pytest.mark.timeout(30)


# --- digits ------------------------------------------------------------------------------


def test_digits_shapes_range_and_classes() -> None:
    ds, test = load_dataset("digits", {})
    assert test is None
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == torch.float32
    assert ds.y.shape == (1797,) and ds.y.dtype == torch.int64
    assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
    assert ds.num_classes == 10 and set(ds.y.tolist()) == set(range(10))
    assert ds.name == "digits"


def test_digits_is_the_same_every_time() -> None:
    assert torch.equal(digits().train.x, digits().train.x)


# --- synthetic ---------------------------------------------------------------------------


def test_synthetic_shapes_and_balance() -> None:
    ds = synthetic(n_samples=103, n_features=5, n_classes=4, seed=1).train
    assert ds.x.shape == (103, 5) and ds.num_classes == 4
    assert sorted(ds.class_counts().tolist()) == [25, 26, 26, 26]


def test_synthetic_is_deterministic_by_seed() -> None:
    a = synthetic(n_samples=50, seed=3).train
    b = synthetic(n_samples=50, seed=3).train
    c = synthetic(n_samples=50, seed=4).train
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)


def test_synthetic_separation_controls_difficulty() -> None:
    def centroid_gap(sep: float) -> float:
        ds = synthetic(n_samples=2000, n_features=10, n_classes=2, seed=0, separation=sep).train
        return float((ds.x[ds.y == 0].mean(0) - ds.x[ds.y == 1].mean(0)).norm())

    assert centroid_gap(0.0) < 0.3 < centroid_gap(4.0)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_classes": 1}, "n_classes"),
        ({"n_samples": 3, "n_classes": 4}, "n_samples"),
        ({"n_features": 0}, "n_features"),
        ({"separation": -1.0}, "separation"),
        ({"separation": float("inf")}, "separation"),
    ],
)
def test_synthetic_rejects_bad_parameters(params: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_dataset("synthetic", params)


# --- npz ---------------------------------------------------------------------------------


def save(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return str(path)


def test_npz_round_trip(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((12, 3, 2)).astype(np.float64)
    y = np.arange(12, dtype=np.int32) % 3
    path = save(tmp_path / "toy.npz", x=x, y=y)
    ds, test = load_dataset("npz", {"path": path})
    assert test is None
    assert ds.x.dtype == torch.float32 and ds.x.shape == (12, 3, 2)
    assert np.allclose(ds.x.numpy(), x) and ds.y.tolist() == y.tolist()
    assert ds.num_classes == 3 and ds.name == "toy"


def test_npz_predefined_test_and_num_classes(tmp_path: Path) -> None:
    path = save(
        tmp_path / "split.npz",
        x=np.zeros((4, 2)),
        y=np.array([0, 1, 0, 1]),
        x_test=np.ones((2, 2)),
        y_test=np.array([2, 0]),
    )
    ds, test = load_dataset("npz", {"path": path})
    assert test is not None and len(test) == 2 and ds.num_classes == test.num_classes == 3
    ds5, _ = load_dataset("npz", {"path": path, "num_classes": 5})
    assert ds5.num_classes == 5
    with pytest.raises(DataError, match="label 2 but num_classes = 2"):
        load_dataset("npz", {"path": path, "num_classes": 2})


def test_npz_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_dataset("npz", {"path": str(tmp_path / "nope.npz")})


def test_npz_truncated_file(tmp_path: Path) -> None:
    good = Path(save(tmp_path / "good.npz", x=np.zeros((100, 5)), y=np.zeros(100, dtype=int)))
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match=r"truncated\.npz"):
        load_dataset("npz", {"path": str(bad)})


def test_npz_corrupt_member(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", b"\x93NUMPY garbage")
        zf.writestr("y.npy", b"garbage")
    with pytest.raises(DataError, match="key 'x' is corrupt"):
        load_dataset("npz", {"path": str(path)})


def test_npz_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "junk.npz"
    path.write_bytes(b"this is not numpy data at all")
    with pytest.raises(DataError, match=r"not a NumPy .npz archive"):
        load_dataset("npz", {"path": str(path)})
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(DataError, match=r"single .npy array"):
        load_dataset("npz", {"path": str(single)})


def test_npz_missing_key(tmp_path: Path) -> None:
    path = save(tmp_path / "nokey.npz", x=np.zeros((3, 2)), labels=np.zeros(3, dtype=int))
    with pytest.raises(DataError, match=r"missing key\(s\) 'y'; found: labels, x"):
        load_dataset("npz", {"path": path})


def test_npz_refuses_object_arrays(tmp_path: Path) -> None:
    obj = np.empty(3, dtype=object)
    obj[:] = [{"a": 1}, None, "x"]
    path = save(tmp_path / "obj.npz", x=np.zeros((3, 2)), y=obj)
    with pytest.raises(DataError, match=r"object array; .* never unpickles"):
        load_dataset("npz", {"path": path})


def test_npz_length_mismatch(tmp_path: Path) -> None:
    path = save(tmp_path / "len.npz", x=np.zeros((3, 2)), y=np.zeros(4, dtype=int))
    with pytest.raises(DataError, match="'x' has 3 rows but 'y' has 4"):
        load_dataset("npz", {"path": path})


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.array([["a", "b"]]), "y": np.zeros(1, dtype=int)}, "must be numeric"),
        ({"x": np.zeros(3), "y": np.zeros(3, dtype=int)}, r"shape \(N, \*input_shape\)"),
        ({"x": np.zeros((2, 1)), "y": np.array([0.0, 1.0])}, "integer labels"),
        ({"x": np.zeros((2, 1)), "y": np.array([0, -1])}, "negative label"),
        ({"x": np.array([[np.nan], [0.0]]), "y": np.array([0, 1])}, "NaN"),
        ({"x": np.zeros((0, 2)), "y": np.zeros(0, dtype=int)}, "no examples"),
        (
            {"x": np.zeros((2, 1)), "y": np.zeros(2, dtype=int), "x_test": np.zeros((1, 1))},
            "together",
        ),
    ],
)
def test_npz_bad_contents(tmp_path: Path, arrays: dict[str, np.ndarray], match: str) -> None:
    path = save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match):
        load_dataset("npz", {"path": path})


# --- IDX and mnist -----------------------------------------------------------------------


def tiny_mnist(directory: Path, n: int = 6, gz: bool = False, test: int = 0) -> np.ndarray:
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    write_idx(directory / f"train-images-idx3-ubyte{ext}", images)
    write_idx(directory / f"train-labels-idx1-ubyte{ext}", (np.arange(n) % 10).astype(np.uint8))
    if test:
        write_idx(directory / f"t10k-images-idx3-ubyte{ext}", images[:test])
        write_idx(directory / f"t10k-labels-idx1-ubyte{ext}", np.arange(test, dtype=np.uint8))
    return images


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path: Path, dtype: type) -> None:
    arr: np.ndarray = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    write_idx(tmp_path / "a.idx", arr)
    back = read_idx(tmp_path / "a.idx")
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, arr)


def test_idx_header_is_standard() -> None:
    # 0x00000803: unsigned bytes, 3 dimensions; then 2, 1, 1 big-endian.
    raw = bytes.fromhex("00000803000000020000000100000001") + b"\x07\x09"
    assert parse_idx(raw).tolist() == [[[7]], [[9]]]


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\x00\x00", "truncated"),
        (bytes.fromhex("00000801") + b"\x00\x00", "truncated header"),
        (bytes.fromhex("0100080100000001") + b"\x00", "bad magic"),
        (bytes.fromhex("0000070100000001") + b"\x00", "bad magic"),
        (bytes.fromhex("00000800"), "zero dimensions"),
        (bytes.fromhex("0000080100000004") + b"\x00\x00", "truncated: shape"),
        (bytes.fromhex("0000080100000001") + b"\x00\x00", "trailing bytes"),
    ],
)
def test_idx_rejects_bad_data(raw: bytes, match: str) -> None:
    with pytest.raises(DataError, match=match):
        parse_idx(raw)


def test_idx_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot write"):
        write_idx(tmp_path / "a.idx", np.zeros(3, dtype=np.uint16))


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_loads_tiny_files(tmp_path: Path, gz: bool) -> None:
    images = tiny_mnist(tmp_path / "m", gz=gz)
    ds, test = load_dataset("mnist", {"path": str(tmp_path / "m")})
    assert test is None
    assert ds.x.shape == (6, 1, 28, 28) and ds.x.dtype == torch.float32
    assert torch.allclose(ds.x[:, 0], torch.from_numpy(images).float() / 255)
    assert float(ds.x.min()) >= 0.0 and float(ds.x.max()) <= 1.0
    assert ds.y.tolist() == [0, 1, 2, 3, 4, 5] and ds.num_classes == 6


def test_mnist_predefined_test_split(tmp_path: Path) -> None:
    tiny_mnist(tmp_path, n=4, gz=True, test=3)
    ds, test = load_dataset("mnist", {"path": str(tmp_path)})
    assert test is not None and len(test) == 3 and len(ds) == 4
    assert ds.num_classes == test.num_classes == 4


def test_mnist_bad_magic(tmp_path: Path) -> None:
    tiny_mnist(tmp_path)
    f = tmp_path / "train-labels-idx1-ubyte"
    f.write_bytes(b"\x12\x34" + f.read_bytes()[2:])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: bad magic number 0x1234"):
        load_dataset("mnist", {"path": str(tmp_path)})


def test_mnist_truncated_images(tmp_path: Path) -> None:
    tiny_mnist(tmp_path)
    f = tmp_path / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(DataError, match="train-images-idx3-ubyte: truncated"):
        load_dataset("mnist", {"path": str(tmp_path)})


def test_mnist_truncated_gzip(tmp_path: Path) -> None:
    tiny_mnist(tmp_path, gz=True)
    f = tmp_path / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:40])
    with pytest.raises(DataError, match="unreadable"):
        load_dataset("mnist", {"path": str(tmp_path)})


def test_mnist_count_mismatch(tmp_path: Path) -> None:
    tiny_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DataError, match=r"6 images but .* 5 labels"):
        load_dataset("mnist", {"path": str(tmp_path)})


def test_mnist_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="directory not found"):
        load_dataset("mnist", {"path": str(tmp_path / "absent")})
    with pytest.raises(DataError, match="no train-images"):
        load_dataset("mnist", {"path": str(tmp_path)})
    tiny_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((1, 28, 28), dtype=np.uint8))
    with pytest.raises(DataError, match="found t10k-images-idx3-ubyte but not t10k-labels"):
        load_dataset("mnist", {"path": str(tmp_path)})


def test_mnist_wrong_ranks(tmp_path: Path) -> None:
    tiny_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((6, 784), dtype=np.uint8))
    with pytest.raises(DataError, match=r"3-D \(N, H, W\)"):
        load_dataset("mnist", {"path": str(tmp_path)})
    tiny_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros((6, 1), dtype=np.uint8))
    with pytest.raises(DataError, match="1-D integer"):
        load_dataset("mnist", {"path": str(tmp_path)})


def test_gzip_written_files_are_really_gzip(tmp_path: Path) -> None:
    write_idx(tmp_path / "a.gz", np.arange(3, dtype=np.uint8))
    with gzip.open(tmp_path / "a.gz", "rb") as fh:
        assert fh.read()[:4] == bytes.fromhex("00000801")
