"""``p2pfl topology``: generate, validate, describe, draw, import (in-process)."""

from __future__ import annotations

import re
from pathlib import Path

import networkx as nx
import pytest

from p2pfl.cli.main import main
from p2pfl.cli.topology import parse_params, parse_value
from p2pfl.errors import ConfigError
from p2pfl.topology import TOPOLOGIES, load_topology

pytestmark = pytest.mark.timeout(60)


def test_generate_with_params_byzantine_and_addresses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rr.toml"
    code = main(
        [
            "topology", "generate", "random_regular", "--n", "16", "--param", "degree=4",
            "--seed", "3", "--byzantine", "2", "--placement", "highest_degree",
            "--base-port", "6000", "--host", "10.0.0.5", "-o", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    assert f"wrote {out}" in capsys.readouterr().out
    t = load_topology(out)
    assert t.name == "random_regular-16"
    assert sorted(t.edge_list()) == sorted(
        TOPOLOGIES["random_regular"](16, seed=3, degree=4).edges()
    )
    assert len(t.byzantine) == 2
    assert t.addresses == {i: f"10.0.0.5:{6000 + i}" for i in range(16)}


def test_generate_with_placement_param(tmp_path: Path) -> None:
    out = tmp_path / "s.toml"
    args = ["topology", "generate", "star", "--n", "6", "--byzantine", "2"]
    args += ["--placement", "around_victim", "--placement-param", "victim=0", "-o", str(out)]
    assert main(args) == 0
    assert load_topology(out).byzantine <= {1, 2, 3, 4, 5}


def test_generate_ipv6_host_is_bracketed(tmp_path: Path) -> None:
    out = tmp_path / "l.toml"
    assert (
        main(
            [
                "topology",
                "generate",
                "line",
                "--n",
                "2",
                "--base-port",
                "7000",
                "--host",
                "::1",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert load_topology(out).addresses[1] == "[::1]:7001"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "moebius", "--n", "8"], "unknown topology 'moebius'"),
        (
            ["generate", "ring", "--n", "8", "--param", "degre=3"],
            "--param.degre: unknown parameter",
        ),
        (["generate", "ring", "--n", "8", "--param", "oops"], "--param 'oops': expected KEY=VALUE"),
        (
            ["generate", "ring", "--n", "8", "--param", "seed=1"],
            "--param seed: set the seed with --seed",
        ),
        (["generate", "random_regular", "--n", "9", "--param", "degree=3"], "is odd"),
        (
            ["generate", "random_regular", "--n", "8", "--param", "degree=two"],
            "expected an integer, got 'two'",
        ),
        (
            ["generate", "ring", "--n", "8", "--byzantine", "2", "--placement", "middle"],
            "unknown placement 'middle'",
        ),
        (["generate", "ring", "--n", "8", "--byzantine", "9"], "cannot place 9 Byzantine nodes"),
        (["generate", "ring", "--n", "8", "--byzantine", "-1"], "--byzantine: must be >= 0"),
        (["generate", "ring", "--n", "8", "--placement-param", "victim=1"], "needs --byzantine"),
        (
            ["generate", "ring", "--n", "8", "--base-port", "65530"],
            "ports 65530..65537 must lie in 1..65535",
        ),
        (
            ["generate", "ring", "--n", "8", "--base-port", "100", "--host", "bad host"],
            "is not a host name",
        ),
        (
            ["generate", "ring", "--n", "8", "--byzantine", "2", "--placement", "around_victim"],
            "no node has 2|disconnected",
        ),
    ],
)
def test_generate_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    out = tmp_path / "x.toml"
    assert main(["topology", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("p2pfl topology: error: ")
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not out.exists()


def test_validate_ok_and_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    assert main(["topology", "generate", "ring", "--n", "5", "-o", str(good)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("edges = [[0, 1]]\n[[nodes]]\nid = 0\n")
    capsys.readouterr()
    assert main(["topology", "validate", str(good)]) == 0
    assert capsys.readouterr().out.startswith(f"OK {good}: ring-5: 5 nodes, 5 edges")
    assert main(["topology", "validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert f"OK {good}" in captured.out
    assert f"INVALID {bad}: edges[0]: node 1 is not declared" in captured.err


def test_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "validate", str(tmp_path / "none.toml")]) == 2
    assert "no such topology file" in capsys.readouterr().err


def test_describe_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "d.toml"
    assert main(["topology", "generate", "dumbbell", "--n", "8", "-o", str(f)]) == 0
    capsys.readouterr()
    assert main(["topology", "describe", str(f)]) == 0
    out = capsys.readouterr().out
    for row in ("spectral gap", "diameter", "max byzantine neighbours", "valid"):
        assert row in out
    assert re.search(r"edges\s+│\s+13 │", out)  # two 4-cliques (6 edges each) and the bridge
    assert re.search(r"diameter\s+│\s+3 │", out)


def test_describe_shows_why_a_file_is_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "split.toml"
    f.write_text("edges = [[0, 1]]\n[[nodes]]\nid = 0\n[[nodes]]\nid = 1\n[[nodes]]\nid = 2\n")
    assert main(["topology", "describe", str(f)]) == 0
    assert "invalid" in capsys.readouterr().out


def test_draw(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    assert main(["topology", "generate", "ring", "--n", "6", "--byzantine", "1", "-o", str(f)]) == 0
    png = tmp_path / "r.png"
    assert main(["topology", "draw", str(f), "-o", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_import_edge_list(tmp_path: Path) -> None:
    src = tmp_path / "g.edges"
    src.write_text("0 1\n1 2\n2 0\n")
    out = tmp_path / "g.toml"
    assert main(["topology", "import", str(src), "--base-port", "9000", "-o", str(out)]) == 0
    t = load_topology(out)
    assert t.name == "g"
    assert t.edge_list() == [(0, 1), (0, 2), (1, 2)]
    assert t.addresses[2] == "127.0.0.1:9002"


def test_import_graphml_with_relabel(tmp_path: Path) -> None:
    src = tmp_path / "named.graphml"
    nx.write_graphml(nx.Graph([("x", "y"), ("y", "z")]), src)
    out = tmp_path / "n.toml"
    assert main(["topology", "import", str(src), "-o", str(out)]) == 2
    assert main(["topology", "import", str(src), "--relabel", "--name", "xyz", "-o", str(out)]) == 0
    t = load_topology(out)
    assert (t.name, t.edge_list()) == ("xyz", [(0, 1), (1, 2)])


def test_import_disconnected_graph_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "two.edges"
    src.write_text("0 1\n2 3\n")
    assert main(["topology", "import", str(src), "-o", str(tmp_path / "t.toml")]) == 2
    assert "2 disconnected components of sizes 2, 2" in capsys.readouterr().err


def test_parse_value() -> None:
    assert parse_value("4") == 4 and isinstance(parse_value("4"), int)
    assert parse_value("0.25") == 0.25
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("abc") == "abc"
    assert parse_params(["a=1", "b = x"], "--param") == {"a": 1, "b": "x"}
    with pytest.raises(ConfigError, match=r"--param a: given twice"):
        parse_params(["a=1", "a=2"], "--param")
    with pytest.raises(ConfigError, match=r"expected KEY=VALUE"):
        parse_params(["=3"], "--param")


def test_list_shows_builders_placements_and_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("random_regular", "exponential", "dumbbell", "cut_vertex", "around_victim"):
        assert name in out
    assert "degree=4" in out
    assert "victim=None" in out


def test_parser_does_not_import_the_topology_package() -> None:
    import subprocess
    import sys

    code = "import sys, argparse, p2pfl.cli.topology as m; m.add_parser(argparse.ArgumentParser().add_subparsers()); print('torch' in sys.modules, 'networkx' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False False"
