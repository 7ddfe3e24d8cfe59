"""SecurityContext and the secure-or-explicitly-insecure decision (no sockets on the wire)."""

from __future__ import annotations

import io
from pathlib import Path

import networkx as nx
import pytest
import zmq

from p2pfl.errors import ConfigError, RejectedMessage, TopologyError
from p2pfl.security import (
    CurveHook,
    KeyFileError,
    KeyPair,
    SecurityContext,
    check_claimed_sender,
    generate_keys,
    load_node_keys,
    security_for_node,
)
from p2pfl.security.auth import NodeAuthenticator
from p2pfl.topology import Topology
from p2pfl.transport.base import SocketRole

pytestmark = pytest.mark.timeout(30)


def keyed_ring(tmp_path: Path, n: int = 4) -> Topology:
    keys = generate_keys(tmp_path, range(n))
    return Topology(nx.cycle_graph(n), public_keys=keys)


def pair() -> KeyPair:
    return KeyPair(*zmq.curve_keypair())


# ----------------------------------------------------------------------------- the decision


def test_insecure_is_explicit_and_warns() -> None:
    stream = io.StringIO()
    ctx = security_for_node(Topology(nx.cycle_graph(3)), 1, None, insecure=True, stream=stream)
    assert not ctx.secure
    assert "WITHOUT CurveZMQ" in stream.getvalue() and "node 1" in stream.getvalue()


def test_no_keys_without_insecure_flag_is_an_error_that_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match=r"p2pfl keys generate.*--insecure"):
        security_for_node(Topology(nx.cycle_graph(3)), 0, None, insecure=False)


def test_keys_in_topology_but_no_key_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--keys"):
        security_for_node(keyed_ring(tmp_path), 0, None, insecure=False)


def test_insecure_and_keys_together_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exclude each other"):
        security_for_node(keyed_ring(tmp_path), 0, tmp_path, insecure=True)


def test_secure_context_allows_exactly_the_neighbours(tmp_path: Path) -> None:
    topo = keyed_ring(tmp_path, 5)
    ctx = security_for_node(topo, 0, tmp_path, insecure=False)
    assert ctx.secure and ctx.node_id == 0
    assert sorted(ctx.allowed) == [1, 4]
    assert ctx.allowed[1].decode() == topo.public_keys[1]
    assert ctx.keys == load_node_keys(tmp_path, 0)
    assert "secret" not in repr(ctx) and ctx.keys is not None
    assert ctx.keys.secret.decode() not in repr(ctx)


def test_keys_that_do_not_match_the_topology_are_refused(tmp_path: Path) -> None:
    topo = keyed_ring(tmp_path)
    generate_keys(tmp_path, [0], force=True)  # node 0's files no longer match the topology
    with pytest.raises(KeyFileError, match="do not match"):
        SecurityContext.from_topology(topo, tmp_path, 0)


def test_a_neighbour_without_a_public_key_is_a_topology_error(tmp_path: Path) -> None:
    keys = generate_keys(tmp_path, [0, 1])
    topo = Topology(nx.cycle_graph(4), public_keys=keys)  # node 3 neighbours 0, has no key
    with pytest.raises(TopologyError, match=r"neighbour\(s\) \[3\]"):
        SecurityContext.from_topology(topo, tmp_path, 0)


def test_own_node_without_a_public_key_is_a_topology_error(tmp_path: Path) -> None:
    keys = generate_keys(tmp_path, [0, 1, 2])
    del keys[2]
    topo = Topology(nx.cycle_graph(3), public_keys=keys)
    with pytest.raises(TopologyError, match="no public key for node 2"):
        SecurityContext.from_topology(topo, tmp_path, 2)


# ----------------------------------------------------------------------------- the value


def test_context_validates_its_fields() -> None:
    own = pair()
    with pytest.raises(ValueError, match="itself"):
        SecurityContext.from_keys(0, own, {0: own.public})
    with pytest.raises(ValueError, match="insecure"):
        SecurityContext(node_id=None, keys=None, allowed={1: pair().public})
    with pytest.raises(KeyFileError, match="same public key"):
        key = pair().public
        SecurityContext.from_keys(0, own, {1: key, 2: key})
    with pytest.raises(KeyFileError, match="not a CurveZMQ key"):
        SecurityContext.from_keys(0, own, {1: "short"})
    ctx = SecurityContext.from_keys(0, own, {1: pair().public})
    with pytest.raises(TypeError):
        ctx.allowed[2] = pair().public  # type: ignore[index]


def test_public_api_is_exactly_all() -> None:
    import p2pfl.security as security

    public = {name for name in vars(security) if not name.startswith("_")}
    assert set(security.__all__) == public - {"auth", "keys"}
    for name in security.__all__:
        assert getattr(security, name) is not None


def test_from_keys_accepts_str_or_bytes() -> None:
    key = pair().public
    a = SecurityContext.from_keys(0, pair(), {1: key})
    b = SecurityContext(node_id=0, keys=a.keys, allowed={1: key.decode()})  # type: ignore[dict-item]
    assert a.allowed == b.allowed == {1: key}


def test_check_claimed_sender() -> None:
    check_claimed_sender(3, 3)
    with pytest.raises(RejectedMessage, match="impersonation") as info:
        check_claimed_sender(3, 4)
    assert info.value.reason == "impersonation"
    with pytest.raises(RejectedMessage, match="unauthenticated"):
        check_claimed_sender(3, None)


def test_peer_of_and_sender_of() -> None:
    secure = SecurityContext.from_keys(0, pair(), {1: pair().public})
    assert secure.peer_of(b"not a frame") is None
    assert secure.peer_of(zmq.Frame(b"no user id")) is None
    assert secure.sender_of(1, [zmq.Frame(b"x")]) is None  # a routing-id claim is not enough
    assert secure.sender_of(1, []) is None
    insecure = SecurityContext.insecure()
    assert insecure.sender_of(5, [b"x"]) == 5
    assert insecure.peer_of(zmq.Frame(b"x")) is None


def test_configure_client_sets_keys_and_refuses_unknown_peers() -> None:
    own, peer = pair(), pair()
    ctx = SecurityContext.from_keys(0, own, {1: peer.public})
    zctx = zmq.Context()
    try:
        sock = zctx.socket(zmq.DEALER)
        ctx.configure_client(sock, 1)
        assert (
            sock.mechanism == zmq.CURVE and not sock.curve_server
        )  # a client; keys are write-only
        with pytest.raises(ConfigError, match="no public key for peer 7"):
            ctx.configure_client(sock, 7)
        sock.close(linger=0)
    finally:
        zctx.destroy(linger=0)


def test_insecure_context_and_hook_touch_nothing() -> None:
    zctx = zmq.Context()
    try:
        sock = zctx.socket(zmq.ROUTER)
        insecure = SecurityContext.insecure()
        insecure.configure_server(sock)
        insecure.configure_client(sock, 3)
        CurveHook(insecure)(sock, SocketRole.INCOMING, None)
        assert sock.curve_server == 0
        assert sock.mechanism == zmq.NULL
        sock.close(linger=0)
    finally:
        zctx.destroy(linger=0)


def test_authenticator_needs_a_running_event_loop() -> None:
    zctx = zmq.Context()
    try:
        auth = NodeAuthenticator(zctx, {1: pair().public})
        with pytest.raises(RuntimeError, match="running asyncio event loop"):
            auth.start()
    finally:
        zctx.destroy(linger=0)


async def test_hook_starts_one_handler_per_context_and_closes_it() -> None:
    ctx = SecurityContext.from_keys(0, pair(), {1: pair().public})
    zctx = zmq.Context()
    try:
        with ctx.socket_hook() as hook:
            a, b = zctx.socket(zmq.ROUTER), zctx.socket(zmq.ROUTER)
            hook(a, SocketRole.INCOMING, None)
            hook(b, SocketRole.INCOMING, None)  # same context: the handler is reused
            assert a.curve_server and b.curve_server
            assert len(hook._authenticators) == 1
            with pytest.raises(ValueError, match="peer's node id"):
                hook(a, SocketRole.OUTGOING, None)
        assert hook._authenticators == []
        a.close(linger=0)
        b.close(linger=0)
    finally:
        zctx.destroy(linger=0)
