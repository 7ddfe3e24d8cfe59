"""A node's side of compressed communication: what it sends, and what it holds of its neighbours.

:class:`NodeCodec` is node ``i``'s row of the simulator's
:class:`p2pfl.sim.channel.Channel`, computed with the same pure functions
(:mod:`p2pfl.compression.scheme`) and the same randomness, so a node process
reproduces the simulator's numbers:

* :meth:`outgoing` encodes the round's vector once for every neighbour
  (``direct``: ``C(x_i)``, with error feedback ``C(x_i + e_i)``; ``choco``:
  ``q_i = C(x_i - xhat_i)``, and ``xhat_i += q_i``);
* :meth:`crafted` encodes a vector attacker's message to one target (``choco``:
  relative to the copy that target holds of it, which the attacker tracks);
* :meth:`held` turns the decoded messages of a round into what the rule acts on
  (``direct``: the decoded vectors; ``choco``: the public copies ``xhat_j += q_j``;
  a copy that would stop being finite is left as it was and not used this round);
* :meth:`mix` is CHOCO's consensus step ``x' + gamma (A - xhat_i)`` (``direct``: ``A``).

A message this node never received (a neighbour was dead, or a message refused)
leaves its copy behind the sender's own: CHOCO assumes every message arrives, and
a copy that missed one stays off by that ``q`` (docs/DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from p2pfl import wire
from p2pfl.compression import (
    CompressionSpec,
    Payload,
    choco_message,
    choco_step,
    compression_generator,
    direct_message,
    payload_finite,
)


class NodeCodec:
    """Compression state of node ``node_id`` (see the module docstring)."""

    def __init__(
        self, spec: CompressionSpec, node_id: int, seed: int, initial: torch.Tensor
    ) -> None:
        self.spec = spec
        self.node_id = node_id
        self.seed = seed
        self.choco = spec.scheme == "choco"
        self._initial = initial
        self.error: torch.Tensor | None = (
            torch.zeros_like(initial)
            if spec.active and not self.choco and spec.error_feedback
            else None
        )
        self.hat_self = initial.clone()
        self.hats: dict[int, torch.Tensor] = {}  # what this node holds of each neighbour
        self.sent_hats: dict[int, torch.Tensor] = {}  # attacker: what each target holds of it

    @property
    def stateful(self) -> bool:
        """Whether the codec carries state from round to round (not checkpointed)."""
        return self.choco or self.error is not None

    def _frames(self, r: int, payload: Payload) -> list[bytes | memoryview]:
        return wire.encode(wire.vector_message(self.node_id, r, payload))

    def outgoing(self, r: int, vector: torch.Tensor) -> list[bytes | memoryview]:
        """The frames of this round's vector message (one encoding for every neighbour)."""
        if not self.spec.active:
            return wire.encode(wire.Params(self.node_id, r, vector))
        gen = compression_generator(self.seed, self.node_id, r)
        if self.choco:
            payload, q = choco_message(vector, self.hat_self, self.spec, gen)
            self.hat_self = self.hat_self + q
        else:
            payload, _, err = direct_message(vector, self.error, self.spec, gen)
            if err is not None:
                self.error = err
        return self._frames(r, payload)

    def crafted(self, r: int, target: int, vector: torch.Tensor) -> list[bytes | memoryview]:
        """The frames of a crafted ``vector`` for ``target`` (a vector attacker's message)."""
        if not self.spec.active:
            return wire.encode(wire.Params(self.node_id, r, vector))
        gen = compression_generator(self.seed, self.node_id, r, target=target)
        if not self.choco:
            return self._frames(r, self.spec.compressor.compress(vector, gen))
        held = self.sent_hats.get(target, self._initial)
        payload, q = choco_message(vector, held, self.spec, gen)
        moved = held + q
        if payload_finite(payload) and bool(torch.isfinite(moved).all()):  # else refused
            self.sent_hats[target] = moved
        return self._frames(r, payload)

    def held(self, got: Mapping[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """What the rule acts on, from the round's decoded messages (see the module docstring)."""
        if not self.choco:
            return dict(got)
        out = {}
        for j, q in got.items():
            moved = self.hats.get(j, self._initial) + q
            if bool(torch.isfinite(moved).all()):
                self.hats[j] = moved
                out[j] = moved
        return out

    def own(self, trained: torch.Tensor) -> torch.Tensor:
        """The own input of the rule: the trained vector, or CHOCO's public copy ``xhat_i``."""
        return self.hat_self.reshape(trained.shape) if self.choco else trained

    def mix(self, trained: torch.Tensor, combined: torch.Tensor) -> torch.Tensor:
        """The node's next vector from the rule's output ``combined``."""
        if not self.choco:
            return combined
        return choco_step(trained, combined, self.hat_self, self.spec.gamma)
