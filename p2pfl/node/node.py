"""The networked node: synchronous decentralized learning rounds over a transport.

A :class:`Node` receives everything through its constructor: a
:class:`~p2pfl.node.setup.NodeSetup` (its shard, model, rule, neighbours, role) and
a :class:`~p2pfl.transport.Transport`. :meth:`Node.run` then

1. **says hello** to every neighbour (protocol version, model fingerprint
   :meth:`~p2pfl.params.ParamLayout.fingerprint`, parameter count, its round) and
   waits until every neighbour has said hello too, so that nodes started seconds
   apart begin round 1 together. A neighbour never heard from within
   ``network.hello_timeout`` is dead (nothing tells a process not started yet from
   one that never will). A neighbour announcing another model is *refused*
   (counted ``wrong_model``, a warning) and the node runs on with the others;
   only when no neighbour at all matches does it stop, with a clear error.
2. **runs ``run.rounds`` synchronous rounds**, each computing exactly what the
   simulator (:class:`p2pfl.sim.Simulation`) computes for this node's row:
   train (:func:`~p2pfl.learning.local_steps` on a batch of one, in a worker
   thread so the event loop keeps receiving); send the trained vector to every
   neighbour (a vector attacker sends its crafted rows instead, see below);
   collect the neighbours' vectors of the round (see *Waiting*); aggregate with
   :func:`~p2pfl.rounds.aggregate` (received vectors in increasing sender order,
   weights from :func:`~p2pfl.rounds.hood_weights` over the senders that arrived);
   every ``run.eval_every`` rounds and after the last, evaluate.
3. **says bye** and, after a completed run, waits (bounded) for its live
   neighbours' byes, so its last vectors are delivered before its sockets close.
   Cancelled (SIGTERM), it says bye and leaves at once.

Liveness: slow is not dead
    Every node sends each neighbour an :class:`~p2pfl.wire.Alive` heartbeat every
    ``network.heartbeat_interval`` and, when its round's vector is not out within
    ``ROUND_BEAT_DELAY_S`` of entering a round, one saying it entered, on the same
    ordered channel as its vectors. Any message from a neighbour proves it alive;
    :class:`~p2pfl.node.liveness.Liveness` declares it *dead* once it has been
    silent past an adaptive timeout (at least ``network.dead_after``), and a bye
    makes it dead at once. Dead neighbours are not waited for; any message (after
    a bye: a hello) brings one back. A node stalled itself (descheduled, stopped)
    does not blame its neighbours for the silence it slept through.

Waiting
    In round ``r``, once its own vector is sent (time ``ready``), the node waits
    for every live neighbour ``j`` whose round-``r`` vector is missing, up to a
    deadline that depends on where ``j`` says it is (its last announced round
    ``rj``) and on the round's patience ``P``
    (:class:`~p2pfl.node.patience.Patience`: ``max(round_timeout,
    patience_factor * recent lateness)``, so it grows on a loaded machine):

    - ``rj == r``: ``max(ready, when j entered r) + P``;
    - ``r - 2 <= rj < r`` (behind, catching up through ordinary rounds):
      ``max(ready, j's last progress) + P``, plus ``hello_timeout`` while ``j`` is
      still in its own start-up (``rj == 0``);
    - ``rj > r`` (its round-``r`` vector, sent before its announcement, was lost
      or the round skipped) or ``rj < r - 2`` (it needs a catch-up round): not
      waited for.

    A neighbour whose deadline passes is *suspected* (a warning): it is no longer
    waited for until it delivers a vector again (any round in the window), so an
    alive-but-silent neighbour costs one patience ``P``, once. If the rule needs
    more inputs than the unsuspected neighbours can give
    (``aggregator.min_inputs(f)``), the node also waits, up to ``ready + P``, for
    suspected live neighbours; only then does it keep its own vector
    (``rounds_kept_own``, a warning). In a run without faults every neighbour is
    live and delivers, so nobody is cut and the simulator's numbers are
    reproduced however loaded the machines are. docs/DESIGN.md has the failure
    cases and what each costs.

Restart and catch-up
    Built with ``resume=`` a :class:`~p2pfl.checkpoint.Checkpoint` (``p2pfl node
    --resume``), the node restores its parameters, momentum and train loss and
    announces the checkpoint's round ``c``. Hellos and heartbeats tell it where
    its neighbours are. If they are in round ``R > c`` (``R``: the ``(f+1)``-th
    largest round they announced, so up to ``f`` Byzantine neighbours cannot make
    it skip rounds; never past ``run.rounds``: validation refuses such claims), it
    skips rounds ``c+1 .. R`` and runs round ``T = R + 1`` as a *catch-up round*:
    it neither trains nor computes its own vector, collects its neighbours'
    round-``T`` vectors, adopts the rule's aggregate with own = their
    coordinate-wise median, and sends that as its round-``T`` vector. A running
    node does the same when its neighbours are more than the inbox's window (2
    rounds) ahead (a healed partition, or neighbours that went on without it).
    Skipped rounds are counted (``rounds_skipped``, a warning) and never reported
    as completed.

Byzantine roles
    ``data`` nodes train on their poisoned shard and otherwise behave honestly.
    A ``vector`` attacker sends its trained vector only to Byzantine neighbours,
    waits for its neighbours' vectors, builds its view with
    :func:`~p2pfl.rounds.attack_view` from what it received (local knowledge) and
    sends each honest neighbour whose vector arrived its row of
    :func:`~p2pfl.rounds.craft_messages`. ``silent`` nodes send no vectors.

Incoming messages
    A reader task passes every message through :func:`p2pfl.validation.screen`
    (size, decode, sender, round window, announced rounds, refused peers,
    duplicates, dtype, length, NaN/Inf): a refused or undecodable message is
    counted per peer and reason and never stops the node. Accepted vectors go to a
    :class:`~p2pfl.node.inbox.RoundInbox` (future rounds buffered, bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from p2pfl import __version__, wire
from p2pfl._compat import BaseExceptionGroup, TaskGroup, timeout_at
from p2pfl.checkpoint import Checkpoint, save_checkpoint
from p2pfl.compression import decompress
from p2pfl.errors import ConfigError, ProtocolError
from p2pfl.learning import evaluate, local_steps
from p2pfl.node.codec import NodeCodec
from p2pfl.node.inbox import RoundInbox
from p2pfl.node.liveness import Liveness
from p2pfl.node.metrics import NodeCounters, NodeLog
from p2pfl.node.outbox import Outbox
from p2pfl.node.patience import Patience
from p2pfl.node.setup import NodeSetup
from p2pfl.personalization import local_score, personalize
from p2pfl.rounds import (
    DIVERGENCE_BOUND,
    aggregate,
    attack_geometry,
    attack_view,
    byzantine_state,
    craft_messages,
    divergence,
    hood_weights,
    knowledge_warnings,
    score,
)
from p2pfl.transport import Transport, TransportClosed
from p2pfl.validation import Expectations, forget_before, screen

#: ``sender_of(transport_peer, frames) -> node id or None``: whom a message is attributed to
#: (:meth:`p2pfl.security.SecurityContext.sender_of`; insecure: the transport's peer id).
SenderOf = Callable[[int | None, Sequence[wire.Frame]], int | None]

#: The longest the patience may grow, as a multiple of ``network.round_timeout``.
PATIENCE_CAP = 20.0
#: A neighbour whose round's vector is not out this long after it entered the round
#: (training takes longer) is told by a heartbeat that it is in the round. Earlier,
#: the vector says it: two messages per neighbour and round saved on a fast run.
ROUND_BEAT_DELAY_S = 0.05


def _transport_peer(peer: int | None, frames: Sequence[wire.Frame]) -> int | None:
    return peer


@dataclass(frozen=True, eq=False)
class NodeResult:
    """The outcome of :meth:`Node.run`: final parameters, evaluations and counters."""

    node_id: int
    params: torch.Tensor  # (d,)
    rounds_completed: int
    evaluations: list[dict[str, Any]]
    counters: NodeCounters


@dataclass
class _Gathered:
    """What collecting a round's vectors gave: the vectors and how the wait went."""

    got: dict[int, torch.Tensor]
    waited: float
    expired: list[int]  # neighbours whose deadline passed in this round
    patience: float  # the round's wait for a live neighbour (seconds)


class Node:
    """One participant; see the module docstring for the protocol.

    ``rounds_ahead`` bounds how many rounds ahead of its own a neighbour's vectors
    are buffered; ``checkpoint_dir`` (with ``network.checkpoint_every > 0``) gets
    an atomic checkpoint every that many rounds (:mod:`p2pfl.checkpoint`);
    ``resume`` restarts from a checkpoint (see "Restart and catch-up" above).
    """

    def __init__(
        self,
        setup: NodeSetup,
        transport: Transport,
        *,
        log: NodeLog | None = None,
        sender_of: SenderOf | None = None,
        rounds_ahead: int = 2,
        outbox_capacity: int = 4,
        checkpoint_dir: str | None = None,
        resume: Checkpoint | None = None,
    ) -> None:
        if transport.node_id != setup.node_id:
            raise ValueError(
                f"transport is node {transport.node_id}'s but the setup is node {setup.node_id}'s"
            )
        missing = set(setup.neighbours) - transport.peers
        if missing:
            raise ValueError(f"transport has no address for neighbour(s) {sorted(missing)}")
        self.setup = setup
        self.transport = transport
        self.log = log if log is not None else NodeLog(setup.node_id)
        self.counters = NodeCounters()
        self._sender_of = sender_of if sender_of is not None else _transport_peer
        self._checkpoint_dir = checkpoint_dir
        self._outbox_capacity = outbox_capacity
        self._inbox = RoundInbox(setup.neighbours, rounds_ahead)
        net = setup.network
        self._expect = Expectations(
            node_id=setup.node_id,
            neighbours=frozenset(setup.neighbours),
            param_count=setup.d,
            round=0,
            rounds_ahead=rounds_ahead,
            # The two previous rounds reach the inbox: a sign of a neighbour that is alive
            # and behind, which ordinary rounds bring back. Older ones are refused: a peer
            # that far behind needs a catch-up round.
            rounds_behind=2,
            fingerprint=setup.fingerprint,
            last_round=setup.rounds,
            encoding=setup.compression.encoding(setup.d),
        )
        self._codec = NodeCodec(setup.compression, setup.node_id, setup.seed, setup.initial)
        self._seen: set[tuple[int, int]] = set()
        self._params = setup.initial.clone()
        self._momentum = torch.zeros(1, setup.d) if setup.training.momentum else None
        self._train_loss = float("nan")
        self._round = 0
        self._nodes = torch.tensor([setup.node_id])
        self._resumed_from: int | None = None
        self._liveness = Liveness(setup.neighbours, dead_after=net.dead_after)
        self._patience = Patience(
            net.round_timeout, net.patience_factor, PATIENCE_CAP * net.round_timeout
        )
        self._peer_rounds: dict[int, int] = {}  # the latest round each neighbour announced
        self._entered: dict[int, dict[int, float]] = {j: {} for j in setup.neighbours}
        self._progress: dict[int, float] = {}  # when each neighbour last moved on or delivered
        self._peer_waits: dict[int, float] = {}  # until when each neighbour said it waits
        self._waiting_until: float | None = None  # until when this node waits (for its Alive)
        self._arrivals: dict[int, float] = {}  # this round's vectors: arrival time by sender
        self._started = False  # the handshake is over: rounds run
        self._leaving = False  # bye sent: no more heartbeats
        self._heard: set[int] = set()  # neighbours whose matching hello we have
        self._hello_sent: dict[int, float] = {}
        self._hellos_owed: set[int] = set()  # asked for within the rate limit: next beat
        self._byes: set[int] = set()
        self._refused: set[int] = set()  # announced another model
        self._suspects: set[int] = set()  # live, missed a deadline, not delivered since
        self._wake = asyncio.Event()  # set on every accepted message and every death
        self._outbox: Outbox | None = None
        self._round_beat: asyncio.TimerHandle | None = None  # this round's deferred Alive
        self._vector_to: set[int] = set()  # neighbours sent this round's vector
        self._diverged = False
        self.evaluations: list[dict[str, Any]] = []
        if resume is not None:
            if self._codec.stateful:
                raise ConfigError(
                    "compression: a node cannot resume a run with CHOCO or error feedback "
                    "(its public copies and residual are not checkpointed, and a copy that "
                    "missed a message stays off)"
                )
            self._restore(resume)

    def _restore(self, ckpt: Checkpoint) -> None:
        s = self.setup
        if ckpt.node_id != s.node_id:
            raise ValueError(f"checkpoint of node {ckpt.node_id} given to node {s.node_id}")
        if ckpt.params.numel() != s.d:
            raise ValueError(
                f"checkpoint holds {ckpt.params.numel()} parameters; the model has {s.d}"
            )
        if not 0 <= ckpt.round <= s.rounds:
            raise ValueError(f"checkpoint of round {ckpt.round}; the run has {s.rounds} rounds")
        self._params = ckpt.params.detach().to(torch.float32).clone()
        if self._momentum is not None and ckpt.momentum is not None:
            self._momentum = ckpt.momentum.detach().to(torch.float32).reshape(1, -1).clone()
        loss = ckpt.extra.get("train_loss")
        self._train_loss = float(loss) if isinstance(loss, int | float) else float("nan")
        self._round = ckpt.round
        self._inbox.advance(ckpt.round)
        # Until the catch-up round, every later round is let through validation: the
        # neighbours' vectors are how this node learns where the run is (see _note_round).
        self._expect = dataclasses.replace(
            self._expect.at_round(ckpt.round), rounds_ahead=max(s.rounds, 1)
        )
        self._resumed_from = ckpt.round

    @property
    def resumed_from(self) -> int | None:
        """The checkpoint round this node restarted from (``None``: a fresh start)."""
        return self._resumed_from

    @property
    def params(self) -> torch.Tensor:
        """The node's current parameter vector ``(d,)``."""
        return self._params

    @property
    def round(self) -> int:
        """The round in progress (0 before the first)."""
        return self._round

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _warn(self, kind: str, round_: int, peers: Sequence[int], message: str) -> None:
        c = self.counters.warnings
        c[kind] = c.get(kind, 0) + 1
        self.log.warning(kind, round_, list(peers), f"node {self.setup.node_id}: {message}")

    # ----------------------------------------------------------------------------- run

    async def run(self) -> NodeResult:
        """Handshake, every round, goodbye. Cancelling it (SIGTERM) still says bye."""
        s = self.setup
        self.log.event(
            "start",
            neighbours=list(s.neighbours),
            role=s.role,
            parameters=s.d,
            fingerprint=s.fingerprint,
            rounds=s.rounds,
        )
        if self._resumed_from is not None:
            self.log.event("resume", round=self._resumed_from)
        if s.role == "vector":
            assert s.attack is not None
            visible = [j for j in s.neighbours if j not in s.byzantine]
            geometry = attack_geometry(
                s.node_id, visible, s.neighbours, s.adjacency.__getitem__, s.byzantine, s.mixing
            )
            for text in knowledge_warnings(s.attack, [geometry], "local"):
                self._warn("knowledge", 0, [], text)
        status = "stopped"
        try:
            async with Outbox(
                self.transport, s.neighbours, self._outbox_capacity, keep_trying=self._worth_it
            ) as outbox:
                self._outbox = outbox
                async with TaskGroup() as tasks:
                    helpers = [
                        tasks.create_task(self._read_loop(), name=f"node-{s.node_id}-reader"),
                        tasks.create_task(self._heartbeats(), name=f"node-{s.node_id}-alive"),
                    ]
                    self._waiting_until = self._now() + s.network.hello_timeout
                    try:
                        # First calls of torch.func pay a one-time set-up (about a second): pay
                        # it before the handshake, so that round 1 starts in step with the others.
                        await asyncio.to_thread(self._warm_up)
                        await self._handshake()
                        await self._run_rounds()
                        status = "done"
                    except Exception:
                        status = "failed"  # cancelled (SIGTERM) stays "stopped"
                        raise
                    finally:
                        if self._round_beat is not None:
                            self._round_beat.cancel()
                        try:
                            await self._farewell(status)
                        finally:
                            for task in helpers:
                                task.cancel()
        except BaseExceptionGroup as group:
            # The task group wraps what the rounds raised; one error is reported as itself.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        return NodeResult(
            node_id=s.node_id,
            params=self._params,
            rounds_completed=self.counters.rounds_completed,
            evaluations=self.evaluations,
            counters=self.counters,
        )

    def _worth_it(self, peer: int) -> bool:
        """Keep retrying a send to ``peer`` (it is alive) or give the message up."""
        return peer not in self._liveness.dead and peer not in self._refused

    # ----------------------------------------------------------------------------- hello

    async def _handshake(self) -> None:
        s = self.setup
        start = self._now()
        for j in s.neighbours:
            self._say_hello(j)
        shortened = False
        self._waiting_until = start + s.network.hello_timeout
        with contextlib.suppress(TimeoutError):
            async with timeout_at(start + s.network.hello_timeout) as limit:
                while not self._heard | self._refused >= set(s.neighbours):
                    if not shortened and self._ahead_of_me():
                        # restarted mid-run: a neighbour still dead must not delay the catch-up
                        when = limit.when()
                        soon = self._now() + self._patience.seconds
                        limit.reschedule(soon if when is None else min(when, soon))
                        self._waiting_until = limit.when()
                        shortened = True
                    self._wake.clear()
                    await self._wake.wait()
        self._started = True
        self._waiting_until = None
        heard = sorted(self._heard)
        missing = [j for j in s.neighbours if j not in self._heard and j not in self._refused]
        if s.neighbours and not heard:
            if self._refused:
                peers = ", ".join(str(p) for p in sorted(self._refused))
                raise ProtocolError(
                    f"node {s.node_id}: neighbour(s) {peers} announced a different model than "
                    f"this node's ({s.d} parameters, fingerprint {s.fingerprint}) and no "
                    "neighbour runs this model; every node must run the same scenario"
                )
            raise ProtocolError(
                f"node {s.node_id}: no neighbour answered within network.hello_timeout = "
                f"{s.network.hello_timeout:g} s (neighbours {list(s.neighbours)}): are their "
                "processes running, and are the topology's addresses and keys right?"
            )
        for j in missing:
            self._liveness.declare_dead(j)
        if missing:
            self._warn(
                "dead",
                0,
                missing,
                f"neighbour(s) {_ids(missing)} never said hello within network.hello_timeout "
                f"= {s.network.hello_timeout:g} s: treated as dead until heard from",
            )
        self.log.event(
            "hello",
            heard=heard,
            missing=missing,
            refused=sorted(self._refused),
            seconds=self._now() - start,
            neighbour_rounds={str(j): r for j, r in sorted(self._peer_rounds.items())},
        )

    def _ahead_of_me(self) -> bool:
        """A resumed node heard a neighbour announce a round past its checkpoint's."""
        c = self._resumed_from
        return c is not None and any(r > c for r in self._peer_rounds.values())

    def _hello(self) -> list[bytes | memoryview]:
        """Our hello, announcing the round in progress (0 before the first)."""
        s = self.setup
        return wire.encode(wire.Hello(s.node_id, __version__, s.fingerprint, s.d, self._round))

    def _say_hello(self, peer: int) -> None:
        """Queue our hello for ``peer``; at most once per heartbeat interval, else at the next beat.

        A peer may ask often (every heartbeat of a neighbour that lacks our hello says
        so); the rate limit keeps a hostile one from making us send hellos in a loop.
        """
        now = self._now()
        last = self._hello_sent.get(peer)
        if last is not None and now - last < self.setup.network.heartbeat_interval:
            self._hellos_owed.add(peer)
            return
        self._hellos_owed.discard(peer)
        self._hello_sent[peer] = now
        assert self._outbox is not None
        self._outbox.put(peer, self._hello())

    async def _heartbeats(self) -> None:
        """Alive to every neighbour each interval; declare the silent ones dead."""
        interval = self.setup.network.heartbeat_interval
        due = self._now()
        while True:
            now = self._now()
            late = now - due
            if late > interval:
                # this node itself did not run for a while: not its neighbours' fault
                self._liveness.forgive(late)
            if not self._leaving:
                for j in sorted(self._hellos_owed):
                    self._say_hello(j)
                self._announce()
            for j in self._liveness.check(now):
                self._on_dead(j, f"silent for {self._liveness.timeout(j):.1f} s")
            due = now + interval
            await asyncio.sleep(interval)

    def _announce(self, skip: set[int] | frozenset[int] = frozenset()) -> None:
        """Offer every neighbour (but ``skip``) a heartbeat with our round (skipped where a
        queue is busy)."""
        assert self._outbox is not None
        me = self.setup.node_id
        until = self._waiting_until
        wait_ms = 0 if until is None else int(max(0.0, until - self._now()) * 1000)
        wait_ms = min(wait_ms, wire.MAX_WAIT_MS)
        for j in self.setup.neighbours:
            if j not in self._refused and j not in skip:
                alive = wire.Alive(me, self._round, j in self._heard, wait_ms)
                self._outbox.offer(j, wire.encode(alive))

    def _on_dead(self, peer: int, why: str) -> None:
        self._suspects.discard(peer)
        self._wake.set()
        if self._started and not self._leaving:
            self._warn("dead", self._round, [peer], f"neighbour {peer} is dead ({why})")

    # ----------------------------------------------------------------------------- rounds

    def _enter_round(self, r: int) -> None:
        self._round = r
        self._inbox.advance(r)
        self._expect = self._expect.at_round(r)
        forget_before(self._seen, r - self._expect.rounds_behind)
        self._arrivals = {}  # vectors buffered before the round count as there in time
        self._vector_to = set()
        if self._round_beat is not None:
            self._round_beat.cancel()
        if self._outbox is not None:
            # neighbours time their patience from our entering the round: tell them, unless
            # the vector itself comes first (ROUND_BEAT_DELAY_S)
            delay = min(ROUND_BEAT_DELAY_S, self.setup.network.heartbeat_interval / 4)
            loop = asyncio.get_running_loop()
            self._round_beat = loop.call_later(delay, self._announce_entry, r)

    def _announce_entry(self, r: int) -> None:
        self._round_beat = None
        if self._round == r and not self._leaving:
            self._announce(skip=self._vector_to)

    async def _run_round(self, r: int) -> None:
        s = self.setup
        start = self._now()
        self._enter_round(r)
        before = self._params
        trained, momentum, loss = await asyncio.to_thread(self._train, r)
        own = trained[0]
        exploded, non_finite = (bool(x) for x in divergence(own))
        if exploded and not self._diverged:
            self._diverged = True
            self.counters.diverged_round = r
            self._warn(
                "diverged",
                r,
                [],
                f"round {r}: its parameters diverged (non-finite, or beyond "
                f"{DIVERGENCE_BOUND:g}); "
                + (
                    "it keeps running rounds but sends and aggregates nothing more"
                    if non_finite
                    else "it goes on, and its model is evaluated as it is"
                ),
            )
        self._momentum = momentum
        self._train_loss = float(loss[0])
        self.counters.rounds_trained += 1
        kept_own = False
        ready = self._now()
        if s.role in ("honest", "data"):
            if not non_finite:  # receivers would refuse it
                self._broadcast(r, own, s.neighbours)
            gathered = await self._gather(r, ready, s.neighbours, s.aggregator.min_inputs(s.f))
            if non_finite:
                self._codec.held(gathered.got)  # its copies of the neighbours move on
                new = own.clone()
            else:
                new, kept_own = await asyncio.to_thread(self._aggregate, trained, gathered.got)
        elif s.role == "vector":
            self._broadcast(r, own, [j for j in s.neighbours if j in s.byzantine])
            gathered = await self._gather(r, ready, s.neighbours, 0)
            held = self._codec.held(gathered.got)
            rows, targets = await asyncio.to_thread(self._craft, r, own, held, before)
            assert self._outbox is not None
            for k, j in enumerate(targets):
                if j not in s.byzantine:
                    self._outbox.put(j, self._codec.crafted(r, j, rows[k]), counted=True)
                    self._vector_to.add(j)
            new = self._byzantine_state(own, held)
        else:  # silent
            gathered = await self._gather(r, ready, s.honest_neighbours, 0)
            new = self._byzantine_state(own, self._codec.held(gathered.got))
        self._params = new
        expected = s.honest_neighbours if s.role == "silent" else s.neighbours
        await self._finish_round(r, start, expected, gathered, kept_own)

    async def _finish_round(
        self,
        r: int,
        start: float,
        expected: Sequence[int],
        gathered: _Gathered,
        kept_own: bool,
        **extra: Any,
    ) -> None:
        """Count, warn, log, evaluate and checkpoint after round ``r``'s aggregation."""
        s = self.setup
        c = self.counters
        missing = [j for j in expected if j not in gathered.got]
        c.last_round = r
        c.rounds_completed += 1
        c.rounds_incomplete += bool(missing)
        c.rounds_kept_own += kept_own
        c.rounds_waited_out += bool(gathered.expired)
        if gathered.expired:
            self._warn(
                "waited_out",
                r,
                gathered.expired,
                f"round {r} waited {gathered.waited:.1f} s for neighbour(s) "
                f"{_ids(gathered.expired)}, which sent nothing in time (patience "
                f"{gathered.patience:.1f} s); went on without them",
            )
        if kept_own:
            have = 1 + len(gathered.got)
            self._warn(
                "kept_own",
                r,
                missing,
                f"round {r}: only {have} vector(s) for a rule that needs "
                f"{s.aggregator.min_inputs(s.f)}; kept its own vector",
            )
        self.log.event(
            "round",
            round=r,
            seconds=self._now() - start,
            wait_seconds=gathered.waited,
            patience=gathered.patience,
            received=sorted(gathered.got),
            missing=missing,
            suspected=sorted(self._suspects),
            dead=sorted(self._liveness.dead & set(expected)),
            waited_out=bool(gathered.expired),
            kept_own=kept_own,
            **extra,
        )
        if s.evaluates_at(r):
            await self._evaluate(r)
        every = s.network.checkpoint_every
        if self._checkpoint_dir is not None and every and r % every == 0:
            await asyncio.to_thread(self._checkpoint, r)

    def _ahead_round(self) -> int | None:
        """Where the neighbours are: the ``(f+1)``-th largest round they announced (None: too few).

        Taking the ``(f+1)``-th largest, not the largest, means at least one honest
        neighbour is there: up to ``f`` Byzantine neighbours announcing a far round
        cannot make this node skip rounds. Refused neighbours do not count.
        """
        rounds = sorted(
            (r for j, r in self._peer_rounds.items() if j not in self._refused), reverse=True
        )
        k = self.setup.f + 1
        return rounds[k - 1] if len(rounds) >= k else None

    async def _run_rounds(self) -> None:
        """Every round from the first (after a restart: see "Restart and catch-up") to the last."""
        s = self.setup
        r = 1
        if self._resumed_from is not None:
            self._expect = dataclasses.replace(self._expect, rounds_ahead=self._inbox.rounds_ahead)
            r = self._resumed_from + 1
            self.counters.last_round = self._resumed_from
            ahead = self._ahead_round()
            if ahead is not None and ahead >= r and r <= s.rounds:
                r = await self._catch_up(r, min(ahead + 1, s.rounds), ahead)
            else:
                self.log.event(
                    "catch_up", resumed_from=self._resumed_from, neighbours_at=ahead, skipped=0
                )
        while r <= s.rounds:
            ahead = self._ahead_round()
            if ahead is not None and ahead > r + self._inbox.rounds_ahead:
                # further behind than our inbox keeps their vectors for (a partition
                # healed, or our neighbours went on without us): their vectors of the
                # rounds between were refused, so running them would only wait; jump instead.
                # Closer than that, their vectors are buffered and ordinary rounds catch up.
                r = await self._catch_up(r, min(ahead + 1, s.rounds), ahead)
            else:
                await self._run_round(r)
                r += 1

    async def _catch_up(self, r: int, target: int, ahead: int) -> int:
        """Skip rounds ``r .. target-1``; run ``target`` as a catch-up round; the next round."""
        s = self.setup
        start = self._now()
        skipped = target - r
        self.counters.rounds_skipped += skipped
        if skipped:
            self._warn(
                "skipped_rounds",
                target,
                [],
                f"skipped rounds {r}-{target - 1} ({skipped}) to catch up with its neighbours "
                f"(in round {ahead}); round {target} adopts their aggregate",
            )
        self._enter_round(target)
        gathered = await self._gather(target, start, s.neighbours, 1)
        new, kept_own = await asyncio.to_thread(self._adopt, gathered.got)
        self._params = new
        if gathered.got and not s.is_byzantine:
            # our round-`target` vector, which the neighbours wait for: what we adopted
            self._broadcast(target, new, s.neighbours)
        self.log.event(
            "catch_up",
            resumed_from=self._resumed_from,
            from_round=r,
            neighbours_at=ahead,
            round=target,
            skipped=skipped,
            received=sorted(gathered.got),
        )
        await self._finish_round(target, start, s.neighbours, gathered, kept_own, caught_up=True)
        return target + 1

    def _adopt(self, got: dict[int, torch.Tensor]) -> tuple[torch.Tensor, bool]:
        """The catch-up aggregate: the rule with own = coordinate-wise median of ``got``."""
        held = self._codec.held(got)
        if not held:
            return self._params.clone(), True
        stand_in = coordinate_median(torch.stack([held[j] for j in sorted(held)]))
        return self._combine(stand_in.unsqueeze(0), stand_in.unsqueeze(0), held, mix=False)

    def _deadline(self, j: int, r: int, ready: float, patience: float) -> float | None:
        """Until when round ``r`` waits for live neighbour ``j`` (None: not at all); see *Waiting*."""
        if j in self._suspects:
            return None
        rj = self._peer_rounds.get(j)
        if rj is None or rj > r or rj < r - self._expect.rounds_behind:
            return None
        # From when j could be expected to deliver: when it entered round r, or, behind,
        # when it last moved on; and not before the wait for its own neighbours it
        # announced has run out (a delay it is not to blame for).
        since = self._entered[j].get(r, ready) if rj == r else self._progress.get(j, ready)
        # The announced wait counts only up to what this node would wait itself, so a
        # Byzantine neighbour cannot stall a round by announcing waits forever.
        cap = ready + self.setup.network.hello_timeout + 2 * patience
        return max(ready, since, min(self._peer_waits.get(j, ready), cap)) + patience

    async def _gather(
        self, r: int, ready: float, expected: Sequence[int], min_inputs: int
    ) -> _Gathered:
        """Round ``r``'s vectors of ``expected``, waiting as *Waiting* says; update suspicions.

        ``min_inputs`` is what the rule needs, own vector included: if the
        unsuspected neighbours cannot give that many, suspected live ones are
        waited for too, up to ``ready + P``.
        """
        patience = self._patience.seconds
        expired: list[int] = []
        while True:
            self._wake.clear()
            now = self._now()
            current = self._inbox.received()
            got = {j: current[j] for j in expected if j in current}
            waits: list[float] = []
            for j in expected:
                if j in got or self._gone(j):
                    continue
                deadline = self._deadline(j, r, ready, patience)
                if deadline is None:
                    continue
                if now < deadline:
                    waits.append(deadline)
                else:
                    expired.append(j)
                    self._suspect(j, r)
            if (
                not waits
                and 1 + len(got) < min_inputs
                and now < ready + patience
                and any(j not in got and not self._gone(j) for j in expected)
            ):
                waits.append(ready + patience)  # the rule needs more: wait for suspects too
            if not waits:
                break
            self._waiting_until = max(waits)
            with contextlib.suppress(TimeoutError):
                async with timeout_at(min(waits)):
                    await self._wake.wait()
        self._waiting_until = None
        self._inbox.take(got)
        late = [
            self._arrivals.get(j, ready) - max(ready, self._entered[j].get(r, ready)) for j in got
        ]
        self._patience.record([x for x in late if x > 0] or [0.0], self.setup.f)
        return _Gathered(got, max(0.0, self._now() - ready), sorted(set(expired)), patience)

    def _gone(self, j: int) -> bool:
        return j in self._liveness.dead or j in self._refused

    def _suspect(self, j: int, r: int) -> None:
        if j in self._suspects:
            return
        self._suspects.add(j)
        self._warn(
            "suspected",
            r,
            [j],
            f"round {r}: neighbour {j} is alive but sent no vector within "
            f"{self._patience.seconds:.1f} s; no longer waited for until it sends one",
        )

    def _warm_up(self) -> None:
        s = self.setup
        self._train(0)
        evaluate(s.fmodel, self._params.reshape(1, -1).to(s.device), s.test_x[:1], s.test_y[:1])

    def _train(self, r: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Local SGD on ``setup.device``; the results come back to the CPU (the wire's side)."""
        s = self.setup
        trained, momentum, loss = local_steps(
            s.fmodel,
            self._params.reshape(1, -1).to(s.device),
            None if self._momentum is None else self._momentum.to(s.device),
            s.local,
            self._nodes,
            s.training,
            s.seed,
            r,
        )
        return trained.cpu(), None if momentum is None else momentum.cpu(), loss.cpu()

    def _aggregate(
        self, trained: torch.Tensor, got: dict[int, torch.Tensor]
    ) -> tuple[torch.Tensor, bool]:
        """The rule over own + what this node holds of the senders (:meth:`NodeCodec.held`,
        sender order), then :meth:`NodeCodec.mix`; own vector if too few arrived."""
        return self._combine(trained, self._codec.own(trained), self._codec.held(got))

    def _combine(
        self,
        trained: torch.Tensor,
        own: torch.Tensor,
        held: dict[int, torch.Tensor],
        mix: bool = True,
    ) -> tuple[torch.Tensor, bool]:
        """The rule over ``own`` and ``held``; with ``mix``, CHOCO's step from ``trained``."""
        s = self.setup
        senders = sorted(held)
        if 1 + len(senders) < s.aggregator.min_inputs(s.f):
            return trained[0].clone(), True
        if not senders:
            return trained[0].clone(), False
        received = torch.stack([held[j] for j in senders]).unsqueeze(0)
        weights = hood_weights(s.mixing, s.node_id, senders).unsqueeze(0)
        combined = aggregate(s.aggregator, own, received, weights, s.f)[0]
        return (self._codec.mix(trained[0], combined) if mix else combined), False

    def _craft(
        self, r: int, own: torch.Tensor, got: dict[int, torch.Tensor], before: torch.Tensor
    ) -> tuple[torch.Tensor, list[int]]:
        """This round's crafted rows, one per target whose vector arrived.

        ``before`` is this node's model before the round's local training: what it
        knows of where the honest models started (Fang's direction of change).
        """
        s = self.setup
        assert s.attack is not None  # guaranteed by NodeSetup for role "vector"
        table = {s.node_id: own, **got}

        def vectors(ids: torch.Tensor) -> torch.Tensor:
            return torch.stack([table[i] for i in ids.tolist()])

        visible = [j for j in s.neighbours if j not in s.byzantine and j in got]
        targets = [j for j in s.neighbours if j in got]
        view = attack_view(
            s.node_id,
            vectors,
            visible,
            targets,
            s.adjacency.__getitem__,
            s.byzantine,
            s.mixing,
            s.attack_f,
            s.seed,
            r,
            before=before,
        )
        return craft_messages(s.attack, view), targets

    def _byzantine_state(self, own: torch.Tensor, got: dict[int, torch.Tensor]) -> torch.Tensor:
        honest = [got[j] for j in sorted(got) if j not in self.setup.byzantine]
        received = torch.stack(honest) if honest else own.new_zeros((0, own.numel()))
        return byzantine_state(own, received)

    def _scores(self, r: int) -> dict[str, float]:
        """The evaluation of round ``r`` (global test; local and personalized when enabled)."""
        s = self.setup
        params = self._params.reshape(1, -1).to(s.device)
        acc, loss = score(s.fmodel, params, s.test_x, s.test_y, s.num_classes)
        out = {"accuracy": float(acc[0]), "test_loss": float(loss[0])}
        if s.local_test is not None:
            out["local_accuracy"] = float(
                local_score(s.fmodel, params, s.local_test, s.num_classes)[0]
            )
            if s.personalize_steps and r == s.rounds:
                tuned = personalize(
                    s.fmodel,
                    params,
                    s.local,
                    self._nodes,
                    s.training,
                    s.personalize_steps,
                    s.seed,
                    r,
                    s.personalize_lr,
                )
                out["personalized_accuracy"] = float(
                    local_score(s.fmodel, tuned, s.local_test, s.num_classes)[0]
                )
        return out

    async def _evaluate(self, r: int) -> None:
        s = self.setup
        scores = await asyncio.to_thread(self._scores, r)
        record = self.log.event(
            "eval",
            round=r,
            byzantine=s.is_byzantine,
            train_loss=self._train_loss,
            **scores,
        )
        self.evaluations.append(record)

    def _checkpoint(self, r: int) -> None:
        assert self._checkpoint_dir is not None
        save_checkpoint(
            self._checkpoint_dir,
            self.setup.node_id,
            r,
            self._params,
            None if self._momentum is None else self._momentum[0],
            {"train_loss": self._train_loss},
            fingerprint=self.setup.fingerprint,
        )

    # ----------------------------------------------------------------------------- sending

    def _send(self, peer: int, message: wire.Message) -> None:
        assert self._outbox is not None
        self._outbox.put(peer, wire.encode(message))

    def _broadcast(self, r: int, vector: torch.Tensor, peers: Sequence[int]) -> None:
        # the codec moves on (error feedback, CHOCO's own copy) even with nobody to send to
        frames = self._codec.outgoing(r, vector)  # one encode, one checksum
        assert self._outbox is not None
        for j in peers:
            if j not in self._refused:
                self._outbox.put(j, frames, counted=True)
                self._vector_to.add(j)

    async def _farewell(self, status: str) -> None:
        """Bye to every neighbour; after a full run, wait for theirs (bounded); log the end."""
        s = self.setup
        outbox = self._outbox
        assert outbox is not None
        self._leaving = True
        bye = wire.encode(wire.Bye(s.node_id, status))
        for j in s.neighbours:
            outbox.put(j, bye)
        grace = (
            self._patience.seconds if status == "done" else self.transport.options.send_timeout_s
        )
        deadline = self._now() + grace
        await outbox.drain(grace)
        if status == "done":
            # a dead or refused neighbour will not say bye: do not wait for it
            with contextlib.suppress(TimeoutError):
                async with timeout_at(deadline):
                    while not all(j in self._byes or self._gone(j) for j in s.neighbours):
                        self._wake.clear()
                        await self._wake.wait()
        c = self.counters
        c.inbox_dropped = {k: v for k, v in self._inbox.dropped.items() if v}
        c.inbox_unused = self._inbox.unused
        c.outbox_dropped = outbox.dropped
        c.sends_dropped = self.transport.stats.dropped
        c.bytes_sent = outbox.vector_bytes
        self.log.event("end", status=status, **c.as_dict(), **self._privacy_spent())

    def _privacy_spent(self) -> dict[str, float]:
        """DP-SGD's ``epsilon`` for this node's shard so far, with ``delta``,
        ``noise_multiplier`` and ``clip_norm`` (empty without DP).

        Counts the rounds it trained, plus every round before a resume (an upper bound:
        the earlier process may have skipped some).
        """
        s = self.setup
        dp = s.training.privacy
        if dp is None:
            return {}
        from p2pfl.privacy.accounting import epsilon
        from p2pfl.privacy.mechanism import sample_rates

        rounds = self.counters.rounds_trained + (self._resumed_from or 0)
        rate = float(sample_rates(s.training.batch_size, s.local.sizes)[0])
        eps = epsilon(dp.noise_multiplier, rate, rounds * s.training.local_steps, dp.delta)
        return {
            "epsilon": eps,
            "delta": dp.delta,
            "noise_multiplier": dp.noise_multiplier,
            "clip_norm": dp.clip_norm,
        }

    # ----------------------------------------------------------------------------- receiving

    async def _read_loop(self) -> None:
        while True:
            try:
                received = await self.transport.recv()
            except TransportClosed:
                return
            sender = self._sender_of(received.peer, received.frames)
            refusals = self._refusals(sender)
            message = screen(
                received.frames, sender, self._expect, self._seen, self.counters.rejections
            )
            if message is not None:
                self._dispatch(message, self._now())
            elif sender in self._liveness.peers and self._refusals(sender) > refusals:
                self._refuse(sender)

    def _refusals(self, sender: int | None) -> int:
        return self.counters.rejections.of(sender).get("wrong_model", 0)

    def _refuse(self, peer: int) -> None:
        """``peer`` announced another model: refuse it until it says hello with ours."""
        if peer in self._refused:
            return
        self._refused.add(peer)
        self._heard.discard(peer)
        self._expect = dataclasses.replace(self._expect, refused=frozenset(self._refused))
        self._wake.set()
        self._warn(
            "refused_peer",
            self._round,
            [peer],
            f"neighbour {peer} announced a different model than this node's ({self.setup.d} "
            f"parameters, fingerprint {self.setup.fingerprint}); refused, the node runs on "
            "without it",
        )

    def _note_round(self, peer: int, round_: int, now: float) -> None:
        """Remember where ``peer`` is; a resumed node not yet running buffers from there on."""
        if round_ <= self._peer_rounds.get(peer, -1):
            return
        self._peer_rounds[peer] = round_
        self._progress[peer] = now
        # the wait it announced was for its own neighbours in an earlier round: over (an
        # Alive of this round says again what it waits now)
        self._peer_waits.pop(peer, None)
        entered = self._entered[peer]
        entered.setdefault(round_, now)
        for old in [k for k in entered if k < round_ - 4]:
            del entered[old]
        if self._resumed_from is not None and not self._started and round_ > self._inbox.round:
            # vectors of the round the neighbours are in, and the next ones, must not be
            # refused as "too far ahead" before the catch-up round starts
            self._inbox.advance(round_)
            self._expect = self._expect.at_round(round_)

    def _dispatch(self, message: wire.Message, now: float) -> None:
        peer = message.sender
        if not isinstance(message, wire.Hello | wire.Bye) and peer in self._byes:
            return  # it left; only a hello (a restart) brings it back
        if isinstance(message, wire.Bye):
            self._byes.add(peer)
            self._liveness.declare_dead(peer)
            if self._started and not self._leaving and self._round < self.setup.rounds:
                self._warn(
                    "dead",
                    self._round,
                    [peer],
                    f"neighbour {peer} left ({message.reason}) before the run ended",
                )
            self._wake.set()
            return
        self._liveness.heard(peer, now)
        if isinstance(message, wire.Params | wire.Packed):
            self._note_round(peer, message.round, now)
            if isinstance(message, wire.Params) and message.vector.dtype == torch.float32:
                vector = message.vector  # as it arrived: no copy
            else:
                vector = decompress(wire.payload_of(message))
            outcome = self._inbox.put(peer, message.round, vector)
            if outcome in ("accepted", "stale"):
                self._suspects.discard(peer)  # it delivers: alive, wait for it again
                self._progress[peer] = now
            if outcome == "accepted" and message.round == self._round:
                self._arrivals[peer] = now
        elif isinstance(message, wire.Hello):
            self._refused.discard(peer)
            self._expect = dataclasses.replace(self._expect, refused=frozenset(self._refused))
            if peer in self._heard:  # it said hello again: it restarted, is where it says
                self._say_hello(peer)
                self._peer_rounds[peer] = message.round
            self._heard.add(peer)
            self._byes.discard(peer)
            self._note_round(peer, message.round, now)
            self._progress[peer] = now
        else:  # Alive
            self._note_round(peer, message.round, now)
            # what it says it still waits for its own neighbours, within what this node
            # would wait itself (a Byzantine neighbour cannot stall it longer)
            if message.wait_ms:
                self._peer_waits[peer] = now + message.wait_ms / 1000
            else:
                self._peer_waits.pop(peer, None)
            if not message.greeted:
                self._say_hello(peer)  # our hello was lost (or it restarted)
        self._wake.set()


def _ids(peers: Sequence[int]) -> str:
    return ", ".join(str(p) for p in peers)


def coordinate_median(vectors: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median of the rows of ``vectors`` ``(k, d)``; middle two averaged if k is even."""
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise ValueError(
            f"coordinate_median needs a non-empty (k, d) matrix, got {tuple(vectors.shape)}"
        )
    ordered = vectors.sort(dim=0).values
    k = vectors.shape[0]
    return (ordered[(k - 1) // 2] + ordered[k // 2]) / 2
