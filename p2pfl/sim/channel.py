"""What the simulated wire carries each round: compressed messages, public copies, bytes.

The simulator's :class:`Channel` plays, for every node at once, what a node
process does for itself (:mod:`p2pfl.node.codec`), with the same pure functions
(:mod:`p2pfl.compression.scheme`) and the same randomness
(:func:`~p2pfl.compression.compression_generator`), so both compute the same numbers:

* without compression the message table is the trained vectors themselves;
* ``direct``: every sender's row is what its receivers decode, ``C(x_i)`` (with
  error feedback, ``C(x_i + e_i)``, the residual kept in :attr:`Channel.error`);
* ``choco``: every sender's row is its public copy ``xhat_i`` after this round's
  ``q_i`` (:attr:`Channel.hat`); a vector attacker keeps one copy per target
  (``xhat_{b->i}``, what target ``i`` holds of it), moved by the compressed
  difference between its crafted vector and that copy.

Bytes are counted per sender as the wire encodes each message
(:func:`p2pfl.wire.encoded_nbytes`: header and payload), once per neighbour it is
sent to: the same count a node process makes of what its transport sent.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from p2pfl import wire
from p2pfl.compression import (
    DensePayload,
    Payload,
    choco_message,
    compression_generator,
    decompress,
    direct_message,
    payload_finite,
)
from p2pfl.experiment import Experiment


def message_nbytes(sender: int, round_: int, payload: Payload) -> int:
    """Bytes of the vector message carrying ``payload`` (header and payload frame)."""
    return wire.encoded_nbytes(wire.encode(wire.vector_message(sender, round_, payload)))


class Channel:
    """Compression state and byte counters of a simulated run."""

    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self.spec = exp.compression
        n = exp.n
        self.active = self.spec.active
        self.choco = self.spec.scheme == "choco"
        init = exp.initial.reshape(1, -1)
        self.error = (
            torch.zeros(n, init.shape[1])
            if self.active and not self.choco and self.spec.error_feedback
            else None
        )
        # CHOCO's public copies start at the shared initial model (every node knows it)
        self.hat = init.repeat(n, 1) if self.choco else None
        self.edge_hat: dict[tuple[int, int], torch.Tensor] = {}
        self.bytes_sent = [0] * n
        self._copies = [
            len(exp.neighbours(i))
            if i not in exp.vector_attackers
            else sum(j in exp.byzantine for j in exp.neighbours(i))
            for i in range(n)
        ]

    @property
    def own_in_table(self) -> bool:
        """Whether a node's own row of the table is what it aggregates as its own vector
        (no compression: its trained vector; CHOCO: its public copy)."""
        return not self.active or self.choco

    def sender_rows(self, trained: torch.Tensor, r: int, senders: Iterable[int]) -> torch.Tensor:
        """``(N, d)``: row ``i`` is what ``i``'s neighbours hold of it after round ``r``'s
        message (rows of nodes that send nothing are not read); counts the bytes."""
        seed = self.exp.seed
        if not self.active:
            self.count_dense(trained, r, senders, senders)
            return trained
        rows = self.hat if self.choco else trained.clone()
        assert rows is not None
        for i in senders:
            gen = compression_generator(seed, i, r)
            if self.choco:
                payload, q = choco_message(trained[i], rows[i], self.spec, gen)
                rows[i] += q
            else:
                err = None if self.error is None else self.error[i]
                payload, rows[i], new_err = direct_message(trained[i], err, self.spec, gen)
                if self.error is not None and new_err is not None:
                    self.error[i] = new_err
            self._count(i, message_nbytes(i, r, payload), self._copies[i])
        return rows.clone() if self.choco else rows

    def crafted_rows(
        self, attacker: int, targets: list[int], crafted: torch.Tensor, r: int
    ) -> torch.Tensor:
        """``(t, d)``: what each target holds of ``attacker`` after its crafted message
        (NaN where the target would refuse it); counts the bytes sent to honest targets."""
        if not self.active:
            self.count_crafted(attacker, targets, crafted, r)
            return crafted.clone()
        byz = self.exp.byzantine
        out = crafted.clone()
        for k, i in enumerate(targets):
            if i in byz:
                continue  # it gets the attacker's own message (counted in sender_rows)
            gen = compression_generator(self.exp.seed, attacker, r, target=i)
            if self.choco:
                held = self.edge_hat.get((attacker, i), self.exp.initial)
                payload, q = choco_message(crafted[k], held, self.spec, gen)
                moved = held + q
                if payload_finite(payload) and bool(torch.isfinite(moved).all()):
                    self.edge_hat[(attacker, i)] = moved
                    out[k] = moved
                else:  # refused (or overflowing): the target keeps its copy, drops the input
                    out[k] = float("nan")
            else:
                payload = self.spec.compressor.compress(crafted[k], gen)
                out[k] = decompress(payload) if payload_finite(payload) else float("nan")
            self._count(attacker, message_nbytes(attacker, r, payload), 1)
        return out

    def count_dense(
        self, trained: torch.Tensor, r: int, senders: Iterable[int], rows: Iterable[int]
    ) -> None:
        """Count uncompressed round-``r`` messages of ``senders``, read from ``rows`` of
        ``trained`` (the same ids in one process; a rank's positions when distributed)."""
        for i, row in zip(senders, rows, strict=True):
            self._count(i, message_nbytes(i, r, DensePayload(trained[row])), self._copies[i])

    def count_crafted(
        self, attacker: int, targets: list[int], crafted: torch.Tensor, r: int
    ) -> None:
        """Count an attacker's uncompressed crafted messages to its honest targets."""
        for k, i in enumerate(targets):
            if i not in self.exp.byzantine:
                self._count(attacker, message_nbytes(attacker, r, DensePayload(crafted[k])), 1)

    def _count(self, node: int, nbytes: int, copies: int) -> None:
        self.bytes_sent[node] += nbytes * copies
