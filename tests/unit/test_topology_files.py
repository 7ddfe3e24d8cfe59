"""Every ready topology in topologies/ loads, validates and is what its name says."""

from __future__ import annotations

import re
from pathlib import Path

import networkx as nx
import pytest

from p2pfl.topology import TOPOLOGIES, describe, load_topology, loads_topology

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "topologies").glob("*.toml"))


def test_the_expected_files_are_there() -> None:
    names = {p.stem for p in FILES}
    assert {
        "ring-8",
        "complete-8",
        "torus-4x4",
        "random-regular-16-d4",
        "exponential-16",
        "dumbbell-16",
        "line-4",
    } <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_file_loads_and_validates(path: Path) -> None:
    t = load_topology(path)  # runs check_topology
    assert t.name == path.stem
    assert nx.is_connected(t.graph)


@pytest.mark.parametrize(
    ("stem", "kind", "n", "params"),
    [
        ("ring-8", "ring", 8, {}),
        ("complete-8", "complete", 8, {}),
        ("torus-4x4", "torus", 16, {"rows": 4, "cols": 4}),
        ("random-regular-16-d4", "random_regular", 16, {"degree": 4}),
        ("exponential-16", "exponential", 16, {}),
        ("dumbbell-16", "dumbbell", 16, {}),
        ("line-4", "line", 4, {}),
    ],
)
def test_file_matches_its_builder(stem: str, kind: str, n: int, params: dict[str, int]) -> None:
    t = load_topology(ROOT / "topologies" / f"{stem}.toml")
    assert t.edge_list() == sorted(TOPOLOGIES[kind](n, seed=0, **params).edges())


@pytest.mark.parametrize(("stem", "base"), [("random-regular-16-d4", 27100), ("line-4", 27200)])
def test_files_with_local_addresses(stem: str, base: int) -> None:
    t = load_topology(ROOT / "topologies" / f"{stem}.toml")
    assert t.addresses == {i: f"127.0.0.1:{base + i}" for i in range(t.n)}
    assert describe(t)["addresses"] == t.n


def test_the_format_documentation_example_is_valid() -> None:
    text = (ROOT / "docs" / "topology-format.md").read_text(encoding="utf-8")
    example = re.search(r"```toml\n(.*?)```", text, re.S)
    assert example is not None
    t = loads_topology(example.group(1), source="docs example")
    assert t.name == "line-4"
    assert t.byzantine == frozenset({3})
    assert len(t.public_keys) == 1
