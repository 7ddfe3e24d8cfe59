"""CurveZMQ links: who may connect, and which node sent each message.

Every node's bound (incoming) socket is a CurveZMQ *server*; its connecting
(outgoing) sockets are *clients* that know the server's public key. CurveZMQ
(ZeroMQ RFC 26) then gives each connection encryption and mutual authentication:
the client proves it holds the secret key of its public key, and only the holder
of the server's secret key can complete the handshake.

Who may connect is decided by ZAP (ZeroMQ RFC 27): libzmq asks a handler bound
at ``inproc://zeromq.zap.01`` *in the socket's own context* about every new
client key. :class:`NodeAuthenticator` is that handler (pyzmq's
``zmq.auth.asyncio.AsyncioAuthenticator`` with an allow-list of node keys). It
answers with the node id as the ZAP *user id*, which libzmq attaches to every
message of the connection as the ``User-Id`` property: :meth:`SecurityContext.peer_of`
reads it, so the receiver knows which key authenticated a message and
:func:`check_claimed_sender` rejects a listed node that claims another's id.

Fail closed, never silently open
    Without a ZAP handler libzmq would accept *any* client key. So
    :meth:`SecurityContext.configure_server` sets ``ZAP_ENFORCE_DOMAIN`` (a server
    without a handler then refuses everyone) and refuses to configure a socket
    whose context has no handler. Running without keys needs
    :meth:`SecurityContext.insecure`, which only :func:`security_for_node` hands
    out when asked explicitly (``--insecure``), printing a warning.

Use with the transport (:class:`~p2pfl.transport.base.TransportOptions`)::

    security = security_for_node(topology, node_id, key_dir, insecure=False)
    with security.socket_hook() as hook:            # stops the ZAP handler on exit
        transport = ZmqTransport(node_id, addr, peers,
                                 options=TransportOptions(configure_socket=hook))
        ...
        received = await transport.recv()
        sender = security.sender_of(received.peer, received.frames)
        ...
        await transport.close()                    # before the hook closes (see docs)
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Protocol, TextIO

import zmq
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils import z85

from p2pfl.errors import ConfigError, RejectedMessage, TopologyError
from p2pfl.security.keys import KeyFileError, KeyPair, check_public_keys, load_node_keys

__all__ = [
    "ZAP_DOMAIN",
    "CurveHook",
    "NodeAuthenticator",
    "SecurityContext",
    "check_claimed_sender",
    "security_for_node",
]

ZAP_DOMAIN = "p2pfl"
_ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by RFC 27; one handler per context

INSECURE_WARNING = (
    "WARNING: node {node} runs WITHOUT CurveZMQ (--insecure): links are neither encrypted "
    "nor authenticated, and any process that can reach its port can send it messages "
    "under any node id. Use only on a trusted, isolated network."
)


class TopologyLike(Protocol):
    """What :meth:`SecurityContext.from_topology` needs of a :class:`p2pfl.topology.Topology`."""

    @property
    def public_keys(self) -> Mapping[int, str]: ...

    def neighbours(self, i: int) -> list[int]: ...


def check_claimed_sender(claimed: int, authenticated: int | None) -> None:
    """Raise ``RejectedMessage("impersonation")`` unless the claim matches the authenticated id.

    ``claimed`` is the ``sender`` in the message header; ``authenticated`` is the
    node whose key (or, insecure, whose connection) delivered it, ``None`` if unknown.
    """
    if authenticated is None:
        raise RejectedMessage(
            "impersonation", f"message claims sender {claimed} on an unauthenticated connection"
        )
    if claimed != authenticated:
        raise RejectedMessage(
            "impersonation",
            f"message claims sender {claimed} but was authenticated as node {authenticated}",
        )


# ----------------------------------------------------------------------------- ZAP handler


class _AllowList:
    """ZAP credentials provider: ``callback(domain, key)`` is true for listed keys only."""

    def __init__(self, allowed: Mapping[bytes, int]) -> None:
        self._allowed = allowed

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self._allowed


class NodeAuthenticator(AsyncioAuthenticator):
    """ZAP handler on one ZeroMQ context: accepts the listed keys, names each by node id.

    ``allowed`` maps node id to Z85 public key. The user id of an accepted
    connection (the ``User-Id`` of its messages) is the decimal node id. Start it
    with :meth:`start` inside a running event loop, *before* binding a CURVE server
    socket on ``context``; :meth:`stop` before that context is terminated
    (``Context.term`` waits for the handler's socket and would block forever).
    """

    def __init__(
        self, context: zmq.Context[Any], allowed: Mapping[int, bytes], domain: str = ZAP_DOMAIN
    ) -> None:
        super().__init__(context)
        self._node_of_key = {key: node for node, key in allowed.items()}
        self.domain = domain
        self.configure_curve_callback(domain, _AllowList(self._node_of_key))

    def start(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "NodeAuthenticator.start() needs a running asyncio event loop "
                "(create the transport inside the node's async code)"
            ) from None
        try:
            super().start()
        except BaseException:
            self.stop()  # a half-started handler would keep its socket, and block Context.term
            raise

    def curve_user_id(self, client_public_key: bytes) -> str:
        # Called only after the allow-list accepted the key, so the lookup cannot miss.
        return str(self._node_of_key[z85.encode(client_public_key)])


def _zap_handler_present(context: zmq.Context[Any]) -> bool:
    """Whether some socket in ``context`` is bound at the ZAP endpoint (binding again fails)."""
    probe = context.socket(zmq.PAIR, socket_class=zmq.Socket)
    try:
        try:
            probe.bind(_ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EADDRINUSE:
                return True
            raise
        # close() releases an inproc endpoint later, in libzmq's reaper thread;
        # unbind() releases it now, so the real handler can bind right after.
        probe.unbind(_ZAP_ENDPOINT)
        return False
    finally:
        probe.close(linger=0)


# ----------------------------------------------------------------------------- context


@dataclass(frozen=True)
class SecurityContext:
    """A node's CurveZMQ settings: its own keys and the keys it accepts, by node id.

    Build with :meth:`from_topology` (or :meth:`from_keys`); :meth:`insecure` is the
    explicit, keyless variant, in which every ``configure_*`` call does nothing and
    :meth:`sender_of` falls back to the transport's unauthenticated peer id.
    """

    node_id: int | None
    keys: KeyPair | None = field(repr=False)
    allowed: Mapping[int, bytes] = field(default_factory=dict)
    zap_domain: str = ZAP_DOMAIN

    def __post_init__(self) -> None:
        if self.keys is None:
            if self.allowed:
                raise ValueError("an insecure SecurityContext cannot have allowed keys")
        else:
            if type(self.node_id) is not int or self.node_id < 0:
                raise ValueError(f"node_id must be a non-negative int, got {self.node_id!r}")
            if not isinstance(self.keys, KeyPair):
                raise ValueError(f"keys must be a KeyPair, got {type(self.keys).__name__}")
            if self.node_id in self.allowed:
                raise ValueError(f"node {self.node_id} cannot list itself among allowed peers")
        checked = check_public_keys(
            {
                n: k.decode("ascii", "replace") if isinstance(k, bytes) else k
                for n, k in self.allowed.items()
            },
            "allowed keys",
        )
        object.__setattr__(self, "allowed", MappingProxyType(checked))

    # -- construction -----------------------------------------------------------

    @classmethod
    def insecure(cls) -> SecurityContext:
        """No keys, no encryption, no authentication. Use :func:`security_for_node` to get one."""
        return cls(node_id=None, keys=None)

    @classmethod
    def from_keys(
        cls, node_id: int, keys: KeyPair, allowed: Mapping[int, str | bytes]
    ) -> SecurityContext:
        return cls(
            node_id=node_id,
            keys=keys,
            allowed={n: k.encode("ascii") if isinstance(k, str) else k for n, k in allowed.items()},
        )

    @classmethod
    def from_topology(
        cls, topology: TopologyLike, key_dir: str | os.PathLike[str], node_id: int
    ) -> SecurityContext:
        """Node ``node_id``'s keys from ``key_dir``; its neighbours' public keys as the allow-list.

        Only neighbours are allowed: they are the only nodes that send to this one,
        so a listed node elsewhere in the graph cannot even open a connection.
        Raises :class:`~p2pfl.errors.TopologyError` if a neighbour has no public key
        and :class:`~p2pfl.security.keys.KeyFileError` if the key files are unusable
        or do not match the topology.
        """
        keys = load_node_keys(key_dir, node_id)
        recorded = check_public_keys(topology.public_keys)
        if node_id not in recorded:
            raise TopologyError(f"the topology records no public key for node {node_id}")
        if recorded[node_id] != keys.public:
            raise KeyFileError(
                f"the keys in {key_dir} for node {node_id} do not match its public key in the "
                "topology (regenerate them with `p2pfl keys generate` or pass the right --keys)"
            )
        neighbours = topology.neighbours(node_id)
        missing = [n for n in neighbours if n not in recorded]
        if missing:
            raise TopologyError(
                f"the topology records no public key for neighbour(s) {missing} of node {node_id}"
            )
        return cls(node_id=node_id, keys=keys, allowed={n: recorded[n] for n in neighbours})

    # -- properties ---------------------------------------------------------------

    @property
    def secure(self) -> bool:
        return self.keys is not None

    def _keys(self) -> KeyPair:
        if self.keys is None:  # pragma: no cover - guarded by callers
            raise RuntimeError("insecure SecurityContext has no keys")
        return self.keys

    # -- sockets --------------------------------------------------------------------

    def authenticator(self, context: zmq.Context[Any]) -> NodeAuthenticator:
        """A (not yet started) ZAP handler for ``context`` with this allow-list."""
        return NodeAuthenticator(context, self.allowed, self.zap_domain)

    def configure_server(self, socket: zmq.Socket[Any]) -> None:
        """Make ``socket`` (before ``bind``) a CurveZMQ server that authenticates via ZAP.

        Raises ``RuntimeError`` if no ZAP handler runs on the socket's context (start
        one with :meth:`authenticator` or use :meth:`socket_hook`): libzmq would
        otherwise let every client key in. No-op when insecure.
        """
        if not self.secure:
            return
        if not _zap_handler_present(socket.context):
            raise RuntimeError(
                "no ZAP handler runs on this socket's ZeroMQ context; start "
                "SecurityContext.authenticator(context) first (or use socket_hook())"
            )
        keys = self._keys()
        socket.curve_server = True
        socket.curve_secretkey = keys.secret
        socket.curve_publickey = keys.public
        socket.zap_domain = self.zap_domain.encode("ascii")
        # With a domain set and no handler, refuse every client instead of accepting all.
        socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)

    def configure_client(self, socket: zmq.Socket[Any], peer_id: int) -> None:
        """Make ``socket`` (before ``connect``) a CurveZMQ client of neighbour ``peer_id``.

        The handshake then fails unless the server holds ``peer_id``'s secret key.
        No-op when insecure.
        """
        if not self.secure:
            return
        if peer_id not in self.allowed:
            raise ConfigError(
                f"node {self.node_id} has no public key for peer {peer_id}; "
                f"known peers: {sorted(self.allowed)}"
            )
        keys = self._keys()
        socket.curve_serverkey = self.allowed[peer_id]
        socket.curve_publickey = keys.public
        socket.curve_secretkey = keys.secret

    def socket_hook(self) -> CurveHook:
        """A :data:`~p2pfl.transport.base.SocketHook` that does all of the above; close it after use."""
        return CurveHook(self)

    # -- incoming messages ------------------------------------------------------------

    def peer_of(self, frame: object) -> int | None:
        """The node whose key authenticated the message ``frame`` belongs to, or ``None``.

        ``frame`` must be a ``zmq.Frame`` received with ``copy=False``; its ZAP
        ``User-Id`` is the node id :class:`NodeAuthenticator` assigned. ``None`` when
        insecure, for a non-``zmq.Frame``, or for a frame without a listed User-Id.
        """
        if not self.secure or not isinstance(frame, zmq.Frame):
            return None
        try:
            user_id = frame.get("User-Id")
        except zmq.ZMQError:  # no such property: the connection was not authenticated
            return None
        if not isinstance(user_id, str) or not (user_id.isascii() and user_id.isdigit()):
            return None
        node = int(user_id)
        return node if node in self.allowed else None

    def sender_of(self, transport_peer: int | None, frames: Sequence[object]) -> int | None:
        """Whom to hold responsible for a received message.

        Secure: the authenticated node (:meth:`peer_of` of the first frame); the
        transport's peer id is only a claim and is ignored. Insecure: the
        transport's peer id, unverified.
        """
        if not self.secure:
            return transport_peer
        return self.peer_of(frames[0]) if frames else None


class CurveHook:
    """``TransportOptions.configure_socket`` for a :class:`SecurityContext`.

    Incoming (bound) socket: starts a :class:`NodeAuthenticator` on the socket's
    context (once per context), then :meth:`SecurityContext.configure_server`;
    outgoing socket for neighbour ``peer``: :meth:`SecurityContext.configure_client`.
    Insecure context: does nothing. :meth:`close` (or leaving ``with``) stops the
    handlers; it is idempotent. Close it *before* the transport terminates its
    ZeroMQ context: ``Context.term()`` waits for the handler's socket forever
    (``Context.destroy(linger=0)`` does not, as it closes every socket itself).
    """

    def __init__(self, security: SecurityContext) -> None:
        self.security = security
        self._authenticators: list[NodeAuthenticator] = []

    def __call__(self, socket: zmq.Socket[Any], role: Any, peer: int | None) -> None:
        if not self.security.secure:
            return
        if getattr(role, "value", role) == "incoming":
            if not any(a.context is socket.context for a in self._authenticators):
                auth = self.security.authenticator(socket.context)
                auth.start()
                self._authenticators.append(auth)
            self.security.configure_server(socket)
        else:
            if peer is None:
                raise ValueError("an outgoing socket needs the peer's node id")
            self.security.configure_client(socket, peer)

    def close(self) -> None:
        while self._authenticators:
            self._authenticators.pop().stop()

    def __enter__(self) -> CurveHook:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# ----------------------------------------------------------------------------- policy


def security_for_node(
    topology: TopologyLike,
    node_id: int,
    key_dir: str | os.PathLike[str] | None,
    *,
    insecure: bool,
    stream: TextIO | None = None,
) -> SecurityContext:
    """The one place that decides whether a node runs secured. There is no silent fallback.

    - ``insecure=True``: prints :data:`INSECURE_WARNING` to ``stream`` (stderr) and
      returns :meth:`SecurityContext.insecure`; giving ``key_dir`` too is an error.
    - otherwise keys are required: the topology must record public keys and
      ``key_dir`` must hold this node's key pair, else :class:`~p2pfl.errors.ConfigError`
      saying how to create them or how to opt out.
    """
    if insecure:
        if key_dir is not None:
            raise ConfigError("--insecure and --keys exclude each other: pick one")
        print(INSECURE_WARNING.format(node=node_id), file=stream or sys.stderr)
        return SecurityContext.insecure()
    if not topology.public_keys:
        raise ConfigError(
            "the topology records no public keys, so node links cannot be secured; run "
            "`p2pfl keys generate --topology T.toml --dir KEYS` and pass --keys KEYS, or run "
            "with --insecure (unencrypted, unauthenticated)"
        )
    if key_dir is None:
        raise ConfigError(
            "the topology records public keys: pass --keys DIR with this node's key pair "
            "(or --insecure to run without CurveZMQ)"
        )
    return SecurityContext.from_topology(topology, key_dir, node_id)
