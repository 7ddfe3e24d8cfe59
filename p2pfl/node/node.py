"""The networked node: synchronous decentralized learning rounds over a transport.

A :class:`Node` receives everything through its constructor: a
:class:`~p2pfl.node.setup.NodeSetup` (its shard, model, rule, neighbours, role) and
a :class:`~p2pfl.transport.Transport`. :meth:`Node.run` then

1. **says hello** to every neighbour (protocol version, model fingerprint
   :meth:`~p2pfl.params.ParamLayout.fingerprint` and parameter count) and waits,
   until ``network.hello_timeout``, for theirs. A neighbour announcing another
   model is a :class:`~p2pfl.errors.ProtocolError` naming it; hearing from
   nobody is one too; a neighbour merely missing is logged and the run goes on.
2. **runs ``run.rounds`` synchronous rounds**, each computing exactly what the
   simulator (:class:`p2pfl.sim.Simulation`) computes for this node's row:

   - train: :func:`~p2pfl.learning.local_steps` on a batch of one (the node id
     selects its minibatch stream), in a worker thread so the event loop keeps
     receiving;
   - send the trained vector to every neighbour (a vector attacker sends its
     crafted rows instead, see below);
   - collect the neighbours' vectors for this round until all arrived, or the
     round deadline ``network.round_timeout`` passes (the first rounds also
     allow ``hello_timeout`` for start-up skew, see
     :attr:`~p2pfl.node.setup.NodeSetup.startup_rounds`; suspected neighbours,
     below, are not waited for);
   - aggregate what arrived with :func:`~p2pfl.rounds.aggregate`, received
     vectors in increasing sender order, weights from
     :func:`~p2pfl.rounds.hood_weights` over the senders that arrived (a missing
     neighbour's weight goes to the node itself);
   - every ``run.eval_every`` rounds and after the last, evaluate on the test set
     and log an ``eval`` event (:mod:`p2pfl.node.metrics`).

3. **says bye** and, after a completed run, waits (at most a round deadline) for
   its neighbours' byes, so its last vectors are delivered before its sockets
   close. Cancelled (SIGTERM), it says bye and leaves at once (the transport's
   close lets the bye go out: ``TransportOptions.close_linger_ms``): neighbours
   stop waiting for it. A bye can still be lost, to a neighbour that is frozen or
   swamped when this node leaves (ZeroMQ drops what the receiver had not yet read
   when the connection closes); that neighbour then treats it as dead (below).

Suspected and lagging neighbours
    A neighbour whose vector did not arrive by a deadline (or that never said hello)
    is *suspected*: the node no longer waits for it, but still aggregates its vector
    whenever it is in by the time the others are. Without this, one dead neighbour
    would cost every round a full deadline. A node that waited out a deadline is
    late, by up to a deadline, for its own neighbours; they miss its vector once and
    suspect it, then receive that vector after moving on (a vector of one of the two
    previous rounds): the neighbour is alive and *lagging*, and it is waited for up
    to two deadlines (in the round under way if it is still being collected, else in
    the next), which brings the two back in step. A node whose neighbours are all
    suspected waits (up to the deadline) for the first of them: alone, it would race
    through rounds at the speed of its training, ever further ahead of neighbours
    that are merely slow. A vector arriving in time clears both states; so does a
    hello during the handshake. Once rounds run, a neighbour saying hello again (it
    restarted) is accepted back (answered, no longer counted as departed) but stays
    suspected until one of its vectors arrives in time, so a restarted node never
    makes its neighbours wait beyond these rules. In a run without faults nobody
    misses a deadline, so none of this happens and the simulator's numbers are
    reproduced exactly.

Restart and catch-up
    Built with ``resume=`` a :class:`~p2pfl.checkpoint.Checkpoint` (``p2pfl node
    --resume``; checkpoints live in ``OUT/checkpoints``, see
    :mod:`p2pfl.node.process`), the node restores its parameters, momentum and
    train loss, and its hello announces the checkpoint's round ``c``. Every hello
    announces the sender's round in progress, so the neighbours' answers tell the
    restarted node where the run is (vectors received tell it too). Its
    handshake ends early, one round deadline after the first neighbour ahead of
    ``c`` answered (waiting out ``hello_timeout`` for a neighbour that is still
    dead would only make it later). If the neighbours are in round ``R > c``
    (``R``: the ``(f+1)``-th largest round they announced, so that up to ``f``
    Byzantine neighbours cannot make it skip rounds), the
    vectors of round ``R`` were sent while it was down, so it skips rounds
    ``c+1 .. R`` and runs round ``T = R + 1`` (at most ``run.rounds``) as a
    *catch-up round*: it neither trains nor sends, collects its neighbours'
    round-``T`` vectors under the usual deadline and suspicion rules, and adopts
    their aggregate: its stale vector is replaced by the coordinate-wise median of
    what it received, then the rule is applied as in any round (own = that
    median). With nothing received it keeps the checkpoint's parameters. Momentum
    is kept from the checkpoint. From round ``T + 1`` on it is an ordinary node;
    its neighbours stop suspecting it when its round-``T + 1`` vector arrives in
    time. If no neighbour is ahead of ``c`` (the whole network restarted), it
    simply continues with round ``c + 1``.

Partitions
    A vector from a neighbour more than two rounds behind, or more than two rounds
    ahead (the inbox's ``rounds_ahead``), is refused by validation (``stale_round``
    / ``future_round``); the refusing node then sends that neighbour a hello
    announcing its own round (a hello is answered only when it announces a round not
    past the last one known of its sender, i.e. after a restart, so hellos never
    bounce back and forth). At the start of each round the node looks at the
    ``(f+1)``-th largest round its neighbours announced; more than ``rounds_ahead``
    rounds ahead of its own (their vectors of the rounds between were refused), it
    runs a catch-up round (as after a restart, above) at the round after it; closer,
    their vectors are in its inbox and ordinary rounds catch up. So when a partition
    heals, the side that fell behind jumps to the other side's round, adopting the
    aggregate of what it receives, and both sides mix again. In a run without faults
    no neighbour is ever two rounds ahead (each waits for the other's vector), so
    this never happens there.

Too few inputs
    If fewer than ``aggregator.min_inputs(f)`` vectors (own included) are
    available when the deadline passes, the rule cannot give its guarantee: the
    node keeps its own trained vector for this round and counts it
    (``rounds_kept_own``).

Byzantine roles
    ``data`` nodes train on their poisoned shard and otherwise behave honestly.
    A ``vector`` attacker sends its trained vector only to Byzantine neighbours
    (colluders see each other's honest vectors, as in the simulator), waits for
    its neighbours' vectors (bounded by the deadline), builds its view with
    :func:`~p2pfl.rounds.attack_view` from what it received (local knowledge:
    targets whose vector did not arrive get nothing this round), sends each
    honest neighbour its row of :func:`~p2pfl.rounds.craft_messages`, and keeps
    :func:`~p2pfl.rounds.byzantine_state`. ``silent`` nodes send no vectors.

Incoming messages
    A reader task passes every message through :func:`p2pfl.validation.screen`
    (size, decode, sender, round window, duplicates, dtype, length, NaN/Inf):
    a refused or undecodable message is counted per peer and reason and never
    stops the node. Accepted vectors go to a :class:`~p2pfl.node.inbox.RoundInbox`
    (future rounds buffered, bounded; past rounds dropped and counted: the two
    previous rounds by the inbox, as ``stale``, older ones by validation, as
    ``stale_round``).
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
from p2pfl.errors import ProtocolError
from p2pfl.learning import evaluate, local_steps
from p2pfl.node.inbox import RoundInbox
from p2pfl.node.metrics import NodeCounters, NodeLog
from p2pfl.node.outbox import Outbox
from p2pfl.node.setup import NodeSetup
from p2pfl.rounds import aggregate, attack_view, byzantine_state, craft_messages, hood_weights
from p2pfl.transport import Transport, TransportClosed
from p2pfl.validation import Expectations, forget_before, screen

#: ``sender_of(transport_peer, frames) -> node id or None``: whom a message is attributed to
#: (:meth:`p2pfl.security.SecurityContext.sender_of`; insecure: the transport's peer id).
SenderOf = Callable[[int | None, Sequence[wire.Frame]], int | None]

_MODEL_MISMATCH = ("wrong_model", "wrong_length")


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
        self._expect = Expectations(
            node_id=setup.node_id,
            neighbours=frozenset(setup.neighbours),
            param_count=setup.d,
            round=0,
            rounds_ahead=rounds_ahead,
            # The two previous rounds reach the inbox: a sign of a lagging peer that ordinary
            # rounds can bring back (our vectors it needs are within its window). Older ones
            # are refused: a peer that far behind needs a catch-up round, and an old vector
            # may just have been held up in transit (a healed partition).
            rounds_behind=2,
            fingerprint=setup.fingerprint,
        )
        self._seen: set[tuple[int, int]] = set()
        self._params = setup.initial.clone()
        self._momentum = torch.zeros(1, setup.d) if setup.training.momentum else None
        self._train_loss = float("nan")
        self._round = 0
        self._nodes = torch.tensor([setup.node_id])
        self._resumed_from: int | None = None
        if resume is not None:
            self._restore(resume)
        self._peer_rounds: dict[int, int] = {}  # the latest round each neighbour announced
        self._started = False  # the handshake is over: rounds run
        self._heard: set[int] = set()
        self._owe = {j: asyncio.Event() for j in setup.neighbours}  # hellos we owe
        self._byes: set[int] = set()
        self._suspects: set[int] = set()  # missed a deadline: not waited for
        self._lagging: set[int] = set()  # alive but a round behind: waited for longer
        self._mismatched: set[int] = set()
        self._changed = asyncio.Event()  # set when a hello, bye or mismatch arrives
        self._outbox: Outbox | None = None
        self.evaluations: list[dict[str, Any]] = []

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
        status = "stopped"
        try:
            async with Outbox(self.transport, s.neighbours, self._outbox_capacity) as outbox:
                self._outbox = outbox
                async with TaskGroup() as tasks:
                    helpers = [
                        tasks.create_task(self._read_loop(), name=f"node-{s.node_id}-reader")
                    ]
                    helpers += [tasks.create_task(self._greeter(j)) for j in s.neighbours]
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

    # ----------------------------------------------------------------------------- hello

    async def _handshake(self) -> None:
        s = self.setup
        loop = asyncio.get_running_loop()
        start = loop.time()
        for owed in self._owe.values():
            owed.set()
        shortened = False
        with contextlib.suppress(TimeoutError):
            async with timeout_at(start + s.network.hello_timeout) as limit:
                while not self._mismatched and not self._heard >= set(s.neighbours):
                    if not shortened and self._ahead_of_me():
                        # restarted mid-run: a neighbour still dead must not delay the catch-up
                        when = limit.when()
                        soon = loop.time() + s.network.round_timeout
                        limit.reschedule(soon if when is None else min(when, soon))
                        shortened = True
                    self._changed.clear()
                    await self._changed.wait()
        self._started = True
        if self._mismatched:
            peers = ", ".join(str(p) for p in sorted(self._mismatched))
            raise ProtocolError(
                f"node {s.node_id}: neighbour(s) {peers} announced a different model than this "
                f"node's ({s.d} parameters, fingerprint {s.fingerprint}); every node must run "
                "the same scenario"
            )
        heard = sorted(self._heard)
        missing = [j for j in s.neighbours if j not in self._heard]
        self._suspects.update(missing)
        if s.neighbours and not heard:
            raise ProtocolError(
                f"node {s.node_id}: no neighbour answered within network.hello_timeout = "
                f"{s.network.hello_timeout:g} s (neighbours {list(s.neighbours)}): are their "
                "processes running, and are the topology's addresses and keys right?"
            )
        self.log.event(
            "hello",
            heard=heard,
            missing=missing,
            seconds=loop.time() - start,
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

    async def _greeter(self, peer: int) -> None:
        """Send ``peer`` our hello whenever we owe it one, until it is queued on a live connection.

        We owe every neighbour one hello at start-up, and one more each time a neighbour
        we had already heard from says hello again (it restarted). A hello is never
        sent twice for one debt, so two nodes never answer each other's hellos forever.
        A send waits (up to the transport's send timeout) for the connection, so a
        retry comes at the pace of that timeout, without sleeping.
        """
        owed = self._owe[peer]
        while True:
            await owed.wait()
            try:
                if await self.transport.send(peer, self._hello()):
                    owed.clear()
            except TransportClosed:
                return

    # ----------------------------------------------------------------------------- rounds

    def _enter_round(self, r: int) -> None:
        self._round = r
        self._inbox.advance(r)
        self._expect = self._expect.at_round(r)
        forget_before(self._seen, r - self._expect.rounds_behind)

    async def _run_round(self, r: int) -> None:
        s = self.setup
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._enter_round(r)
        trained, self._momentum, loss = await asyncio.to_thread(self._train, r)
        self._train_loss = float(loss[0])
        skew = s.network.hello_timeout if r <= s.startup_rounds else 0.0
        wait = s.network.round_timeout + skew
        deadline = loop.time() + wait
        own = trained[0]
        kept_own = False
        if s.role in ("honest", "data"):
            self._broadcast(r, own, s.neighbours)
            expected: Sequence[int] = s.neighbours
            got, waited, lagging = await self._collect(expected, deadline)
            new, kept_own = await asyncio.to_thread(self._aggregate, trained, got)
        elif s.role == "vector":
            self._broadcast(r, own, [j for j in s.neighbours if j in s.byzantine])
            expected = s.neighbours
            got, waited, lagging = await self._collect(expected, deadline)
            rows, targets = await asyncio.to_thread(self._craft, r, own, got)
            for k, j in enumerate(targets):
                if j not in s.byzantine:
                    self._send(j, wire.Params(s.node_id, r, rows[k]))
            new = self._byzantine_state(own, got)
        else:  # silent
            expected = s.honest_neighbours
            got, waited, lagging = await self._collect(expected, deadline)
            new = self._byzantine_state(own, got)
        missing = [j for j in expected if j not in got]
        self._params = new
        self.counters.rounds_completed = r
        self.counters.rounds_incomplete += bool(missing)
        self.counters.rounds_kept_own += kept_own
        self.log.event(
            "round",
            round=r,
            seconds=loop.time() - start,
            wait_seconds=waited,
            received=sorted(got),
            missing=missing,
            suspected=sorted(self._suspects),
            waited_longer_for=lagging,
            kept_own=kept_own,
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
        cannot make this node skip rounds.
        """
        rounds = sorted(self._peer_rounds.values(), reverse=True)
        k = self.setup.f + 1
        return rounds[k - 1] if len(rounds) >= k else None

    async def _run_rounds(self) -> None:
        """Every round from the first (after a restart: see "Restart and catch-up") to the last."""
        s = self.setup
        r = 1
        if self._resumed_from is not None:
            self._expect = dataclasses.replace(self._expect, rounds_ahead=self._inbox.rounds_ahead)
            r = self._resumed_from + 1
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
                # healed, or our neighbours gave up waiting for us): their vectors of the
                # rounds between were refused, so running them would only wait; jump instead.
                # Closer than that, their vectors are buffered and ordinary rounds catch up.
                r = await self._catch_up(r, min(ahead + 1, s.rounds), ahead)
            else:
                await self._run_round(r)
                r += 1

    async def _catch_up(self, r: int, target: int, ahead: int) -> int:
        """Skip rounds ``r .. target-1``; run ``target`` as a catch-up round; the next round."""
        s = self.setup
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._enter_round(target)
        got, waited, _ = await self._collect(s.neighbours, start + s.network.round_timeout)
        new, kept_own = await asyncio.to_thread(self._adopt, got)
        self._params = new
        self.counters.rounds_completed = target
        self.counters.rounds_kept_own += kept_own
        self.log.event(
            "catch_up",
            resumed_from=self._resumed_from,
            from_round=r,
            neighbours_at=ahead,
            round=target,
            skipped=target - r,
            received=sorted(got),
        )
        self.log.event(
            "round",
            round=target,
            seconds=loop.time() - start,
            wait_seconds=waited,
            received=sorted(got),
            missing=[j for j in s.neighbours if j not in got],
            suspected=sorted(self._suspects),
            waited_longer_for=[],
            kept_own=kept_own,
            caught_up=True,
        )
        if s.evaluates_at(target):
            await self._evaluate(target)
        every = s.network.checkpoint_every
        if self._checkpoint_dir is not None and every and target % every == 0:
            await asyncio.to_thread(self._checkpoint, target)
        return target + 1

    def _adopt(self, got: dict[int, torch.Tensor]) -> tuple[torch.Tensor, bool]:
        """The catch-up aggregate: the rule with own = coordinate-wise median of ``got``."""
        if not got:
            return self._params.clone(), True
        stand_in = coordinate_median(torch.stack([got[j] for j in sorted(got)]))
        return self._aggregate(stand_in.unsqueeze(0), got)

    async def _collect(
        self, expected: Sequence[int], deadline: float
    ) -> tuple[dict[int, torch.Tensor], float, list[int]]:
        """This round's vectors of ``expected`` under the suspicion rules; update suspicions.

        Returns the vectors by sender, the seconds spent waiting, and the lagging
        neighbours that were waited for longer.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        normal = [j for j in expected if j not in self._suspects and j not in self._lagging]
        # With every neighbour suspected, wait for the first of them to arrive: racing
        # through rounds alone would leave slow ones ever further behind.
        first = 1 if expected and not normal else 0
        got = await self._inbox.collect(expected, deadline, normal, at_least=first)
        lagging = [j for j in expected if j in self._lagging and j not in got]
        if lagging:
            extra = self.setup.network.round_timeout
            got = await self._inbox.collect(expected, deadline + extra, lagging)
        waited = loop.time() - start
        for j in expected:
            if j in self._lagging and j not in got and j not in lagging:
                continue  # found alive and behind after the waits: waited for longer next round
            self._lagging.discard(j)
            if j in got:
                self._suspects.discard(j)
            elif j not in self._inbox.departed:
                self._suspects.add(j)
        return got, waited, lagging

    def _warm_up(self) -> None:
        s = self.setup
        self._train(0)
        evaluate(s.fmodel, self._params.reshape(1, -1), s.test_x[:1], s.test_y[:1])

    def _train(self, r: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        s = self.setup
        return local_steps(
            s.fmodel,
            self._params.reshape(1, -1),
            self._momentum,
            s.local,
            self._nodes,
            s.training,
            s.seed,
            r,
        )

    def _aggregate(
        self, trained: torch.Tensor, got: dict[int, torch.Tensor]
    ) -> tuple[torch.Tensor, bool]:
        """The rule over own + arrived vectors (sender order); own vector if too few arrived."""
        s = self.setup
        senders = sorted(got)
        if 1 + len(senders) < s.aggregator.min_inputs(s.f):
            return trained[0].clone(), True
        if not senders:
            return trained[0].clone(), False
        received = torch.stack([got[j] for j in senders]).unsqueeze(0)
        weights = hood_weights(s.mixing, s.node_id, senders).unsqueeze(0)
        return aggregate(s.aggregator, trained, received, weights, s.f)[0], False

    def _craft(
        self, r: int, own: torch.Tensor, got: dict[int, torch.Tensor]
    ) -> tuple[torch.Tensor, list[int]]:
        """This round's crafted rows, one per target whose vector arrived."""
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
        )
        return craft_messages(s.attack, view), targets

    def _byzantine_state(self, own: torch.Tensor, got: dict[int, torch.Tensor]) -> torch.Tensor:
        honest = [got[j] for j in sorted(got) if j not in self.setup.byzantine]
        received = torch.stack(honest) if honest else own.new_zeros((0, own.numel()))
        return byzantine_state(own, received)

    async def _evaluate(self, r: int) -> None:
        s = self.setup
        acc, loss = await asyncio.to_thread(
            evaluate, s.fmodel, self._params.reshape(1, -1), s.test_x, s.test_y
        )
        record = self.log.event(
            "eval",
            round=r,
            byzantine=s.is_byzantine,
            accuracy=float(acc[0]),
            test_loss=float(loss[0]),
            train_loss=self._train_loss,
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
        if not peers:
            return
        assert self._outbox is not None
        frames = wire.encode(wire.Params(self.setup.node_id, r, vector))  # one encode, one checksum
        for j in peers:
            self._outbox.put(j, frames)

    async def _farewell(self, status: str) -> None:
        """Bye to every neighbour; after a full run, wait for theirs (bounded); log the end."""
        s = self.setup
        outbox = self._outbox
        assert outbox is not None
        bye = wire.encode(wire.Bye(s.node_id, status))
        for j in s.neighbours:
            outbox.put(j, bye)
        grace = (
            s.network.round_timeout if status == "done" else self.transport.options.send_timeout_s
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await outbox.drain(grace)
        if status == "done":
            # a suspected neighbour (dead, most likely) will not say bye: do not wait for it
            awaited = set(s.neighbours) - self._suspects
            with contextlib.suppress(TimeoutError):
                async with timeout_at(deadline):
                    while not self._byes >= awaited:
                        self._changed.clear()
                        await self._changed.wait()
        c = self.counters
        c.inbox_dropped = {k: v for k, v in self._inbox.dropped.items() if v}
        c.inbox_unused = self._inbox.unused
        c.outbox_dropped = outbox.dropped
        c.sends_dropped = self.transport.stats.dropped
        self.log.event("end", status=status, **c.as_dict())

    # ----------------------------------------------------------------------------- receiving

    async def _read_loop(self) -> None:
        while True:
            try:
                received = await self.transport.recv()
            except TransportClosed:
                return
            sender = self._sender_of(received.peer, received.frames)
            gaps = self._round_gaps(sender) if self._started and sender in self._owe else None
            message = screen(
                received.frames, sender, self._expect, self._seen, self.counters.rejections
            )
            if message is None:
                if sender is not None and gaps is not None and self._round_gaps(sender) > gaps:
                    # rounds apart: tell it where we are, so that whichever of us is behind
                    # can catch up (see "Partitions")
                    self._owe[sender].set()
                self._note_rejection(sender)
            else:
                self._dispatch(message)

    def _round_gaps(self, sender: int | None) -> int:
        reasons = self.counters.rejections.of(sender)
        return reasons.get("stale_round", 0) + reasons.get("future_round", 0)

    def _note_rejection(self, sender: int | None) -> None:
        """A neighbour whose hello or vector does not fit our model fails the handshake."""
        if sender is None or sender not in self._inbox.peers or sender in self._heard:
            return
        reasons = self.counters.rejections.of(sender)
        if any(reasons.get(r) for r in _MODEL_MISMATCH):
            self._mismatched.add(sender)
            self._changed.set()

    def _note_round(self, peer: int, round_: int) -> None:
        """Remember where ``peer`` is; a resumed node not yet running buffers from there on."""
        if round_ <= self._peer_rounds.get(peer, -1):
            return
        self._peer_rounds[peer] = round_
        if self._resumed_from is not None and not self._started and round_ > self._inbox.round:
            # vectors of the round the neighbours are in, and the next ones, must not be
            # refused as "too far ahead" before the catch-up round starts
            self._inbox.advance(round_)
            self._expect = self._expect.at_round(round_)

    def _dispatch(self, message: wire.Message) -> None:
        peer = message.sender
        if isinstance(message, wire.Params):
            self._note_round(peer, message.round)
            outcome = self._inbox.put(peer, message.round, message.vector)
            if peer in self._suspects:
                if outcome == "stale":  # alive, a round or two behind: wait longer for it
                    self._suspects.discard(peer)
                    self._lagging.add(peer)
                elif outcome == "accepted":  # alive and in step again
                    self._suspects.discard(peer)
        elif isinstance(message, wire.Hello):
            known = self._peer_rounds.get(peer, -1)
            if peer in self._heard and message.round <= known:
                # it went back: it restarted, needs our hello again and is where it says
                self._owe[peer].set()
                self._peer_rounds[peer] = message.round
            self._heard.add(peer)
            self._note_round(peer, message.round)
            if not self._started:
                self._suspects.discard(peer)
                self._lagging.discard(peer)
            self._byes.discard(peer)
            self._inbox.rejoin(peer)
            self._changed.set()
        else:  # Bye
            self._byes.add(peer)
            self._inbox.depart(peer)
            self._changed.set()


def coordinate_median(vectors: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median of the rows of ``vectors`` ``(k, d)``; middle two averaged if k is even."""
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise ValueError(
            f"coordinate_median needs a non-empty (k, d) matrix, got {tuple(vectors.shape)}"
        )
    ordered = vectors.sort(dim=0).values
    k = vectors.shape[0]
    return (ordered[(k - 1) // 2] + ordered[k // 2]) / 2
