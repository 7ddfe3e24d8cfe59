"""The exceptions p2pfl raises.

Every error the library raises on purpose derives from :class:`P2PFLError`, so a
caller can catch one type::

    P2PFLError
    ├── ConfigError            bad scenario key, flag, value or file (CLI exit code 2)
    │   └── UnknownNameError   a registry lookup with a name that is not registered
    ├── DataError              a dataset file that is missing, corrupt or inconsistent
    ├── TopologyError          a topology file or graph that is invalid
    ├── DecodeError            wire frames that are not a valid message
    ├── ProtocolError          a well-formed message that breaks the protocol
    │   └── RejectedMessage    a message refused at the node's boundary (with a reason)
    └── NodeFailure            a node process that exited abnormally

``ConfigError``, ``DataError`` and ``TopologyError`` also derive from
``ValueError`` so that code written against plain Python conventions works.
"""

from __future__ import annotations

from collections.abc import Iterable


class P2PFLError(Exception):
    """Base class of every error raised on purpose by p2pfl."""


class ConfigError(P2PFLError, ValueError):
    """A configuration key, flag or value is invalid; the message names it."""


class UnknownNameError(ConfigError, KeyError):
    """A registry was asked for a name it does not hold."""

    def __init__(
        self,
        kind: str,
        name: str,
        valid: Iterable[str],
        key: str | None = None,
        importable: bool = False,
    ) -> None:
        self.kind = kind
        self.name = name
        self.valid = sorted(valid)
        self.key = key
        where = f"{key}: " if key else ""
        also = " (or an import path 'package.module:object')" if importable else ""
        kinds = f"{kind[:-1]}ies" if kind.endswith("y") else f"{kind}s"
        super().__init__(
            f"{where}unknown {kind} {name!r}; valid {kinds}: "
            f"{', '.join(self.valid) or '(none)'}{also}"
        )

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class DataError(P2PFLError, ValueError):
    """A dataset is missing, corrupt, or inconsistent."""


class TopologyError(P2PFLError, ValueError):
    """A topology (graph or file) is invalid."""


class DecodeError(P2PFLError):
    """Frames received from the wire do not form a valid message."""


class ProtocolError(P2PFLError):
    """A decodable message that violates the protocol."""


class RejectedMessage(ProtocolError):
    """A message refused at the node boundary; ``reason`` is a short stable label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class NodeFailure(P2PFLError):
    """A node process exited abnormally."""
