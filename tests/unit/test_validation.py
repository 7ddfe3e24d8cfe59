"""Boundary checks: one test per rejection reason, the window, duplicates and the counters."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from p2pfl import wire
from p2pfl.errors import DecodeError, RejectedMessage
from p2pfl.validation import (
    REASONS,
    Expectations,
    RejectionCounters,
    count_rejection,
    forget_before,
    screen,
    validate,
)

pytestmark = pytest.mark.timeout(30)

D = 8


def expect(**kw: Any) -> Expectations:
    base: dict[str, Any] = {
        "node_id": 0,
        "neighbours": frozenset({1, 2}),
        "param_count": D,
        "round": 5,
    }
    return Expectations(**{**base, **kw})


def params(sender: int = 1, round: int = 5, vector: torch.Tensor | None = None) -> wire.Params:
    return wire.Params(
        sender=sender, round=round, vector=torch.ones(D) if vector is None else vector
    )


def reason_of(message: wire.Message, peer: int | None = None, **kw: Any) -> str:
    with pytest.raises(RejectedMessage) as info:
        validate(message, message.sender if peer is None else peer, expect(**kw), set())
    assert info.value.reason in REASONS
    return info.value.reason


def screened(
    frames: list[Any], peer: int | None, **kw: Any
) -> tuple[wire.Message | None, RejectionCounters]:
    counters = RejectionCounters()
    return screen(frames, peer, expect(**kw), set(), counters), counters


# ----------------------------------------------------------------------------- each reason


def test_a_good_params_message_passes_and_is_recorded() -> None:
    seen: set[tuple[int, int]] = set()
    validate(params(), 1, expect(), seen)
    assert seen == {(1, 5)}


def test_nan_is_rejected_and_counted() -> None:
    v = torch.ones(D)
    v[3] = float("nan")
    msg, counters = screened(wire.encode(params(vector=v)), 1)
    assert msg is None
    assert counters.of(1) == {"non_finite": 1}


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_inf_is_rejected(value: float) -> None:
    v = torch.zeros(D)
    v[-1] = value
    assert reason_of(params(vector=v)) == "non_finite"


@pytest.mark.parametrize(
    "vector", [torch.ones(D - 1), torch.ones(D + 1), torch.ones(2, D // 2), torch.ones(())]
)
def test_wrong_length_is_rejected_and_counted(vector: torch.Tensor) -> None:
    msg, counters = screened(wire.encode(params(vector=vector)), 1)
    assert msg is None
    assert counters.by_reason() == {"wrong_length": 1}


def test_wrong_dtype_is_rejected() -> None:
    assert reason_of(params(vector=torch.ones(D, dtype=torch.float64))) == "wrong_dtype"
    msg, counters = screened(wire.encode(params(vector=torch.ones(D, dtype=torch.float16))), 1)
    assert msg is None and counters.by_reason() == {"wrong_dtype": 1}


def test_stale_round_is_rejected_and_counted() -> None:
    msg, counters = screened(wire.encode(params(round=4)), 1)
    assert msg is None
    assert counters.of(1) == {"stale_round": 1}


def test_rounds_behind_widens_the_window_into_the_past() -> None:
    validate(params(round=3), 1, expect(rounds_behind=2), set())
    assert reason_of(params(round=2), rounds_behind=2) == "stale_round"


def test_future_rounds_up_to_k_ahead_pass_beyond_are_rejected() -> None:
    validate(params(round=8), 1, expect(rounds_ahead=3), set())
    assert reason_of(params(round=9), rounds_ahead=3) == "future_round"


def test_oversized_message_is_rejected_before_decoding_and_counted() -> None:
    frames = wire.encode(params(vector=torch.ones(D + wire.MAX_HEADER_BYTES)))
    msg, counters = screened(frames, 1)
    assert msg is None
    assert counters.of(1) == {"oversized": 1}
    msg, counters = screened([b"\x00" * 10_000], 2)  # garbage, but too big to even look at
    assert counters.of(2) == {"oversized": 1}


def test_oversized_vector_against_a_tight_byte_budget() -> None:
    assert reason_of(params(), max_bytes=4 * D - 1) == "oversized"


def test_duplicate_is_rejected_only_after_acceptance() -> None:
    seen: set[tuple[int, int]] = set()
    bad = torch.ones(D)
    bad[0] = float("nan")
    with pytest.raises(RejectedMessage, match="non_finite"):
        validate(params(vector=bad), 1, expect(), seen)
    validate(params(), 1, expect(), seen)  # a refused message does not block the real one
    with pytest.raises(RejectedMessage, match="duplicate"):
        validate(params(), 1, expect(), seen)
    validate(params(sender=2), 2, expect(), seen)  # same round, another sender


def test_not_neighbour_and_impersonation() -> None:
    assert reason_of(params(sender=3)) == "not_neighbour"
    assert reason_of(params(sender=0)) == "not_neighbour"  # a message "from" itself
    assert reason_of(params(sender=1), peer=2) == "impersonation"
    with pytest.raises(RejectedMessage, match="impersonation"):
        validate(params(sender=1), None, expect(), set())


def test_decode_errors_are_counted_not_raised() -> None:
    counters = RejectionCounters()
    e = expect()
    for frames in ([b"\xc1"], [b"", b"", b""], [], [wire.encode(params())[0]], [object()], "abc"):
        assert screen(frames, 1, e, set(), counters) is None  # type: ignore[arg-type]
    assert counters.of(1) == {"decode_error": 6}


def test_hello_checks_model_and_only_that_its_round_is_within_the_run() -> None:
    hello = wire.Hello(sender=1, version="0.1.0", fingerprint="abc", param_count=D, round=0)
    validate(hello, 1, expect(fingerprint="abc"), set())  # round 0 while we are at 5: fine
    validate(hello, 1, expect(), set())  # no fingerprint expected: not compared
    assert reason_of(hello, fingerprint="xyz") == "wrong_model"
    other = wire.Hello(sender=1, version="0.1.0", fingerprint="abc", param_count=D + 1, round=0)
    assert reason_of(other) == "wrong_model"
    far = wire.Hello(sender=1, version="0.1.0", fingerprint="abc", param_count=D, round=51)
    validate(far, 1, expect(), set())  # no last round set: any round
    assert reason_of(far, last_round=50) == "future_round"
    validate(far, 1, expect(last_round=51), set())


def test_alive_claims_past_the_run_and_messages_of_refused_peers_are_refused() -> None:
    alive = wire.Alive(sender=1, round=2**63 - 1, greeted=True, wait_ms=0)
    assert reason_of(alive, last_round=100) == "future_round"
    validate(wire.Alive(1, 100, True, 5), 1, expect(last_round=100), set())
    refused = frozenset({1})
    assert reason_of(params(), refused=refused) == "wrong_model"
    assert reason_of(wire.Alive(1, 3, True, 0), refused=refused) == "wrong_model"
    hello = wire.Hello(sender=1, version="0.1.0", fingerprint="abc", param_count=D, round=0)
    validate(hello, 1, expect(refused=refused), set())  # a hello may set things right


def test_bye_checks_only_the_sender() -> None:
    validate(wire.Bye(sender=2, reason="done"), 2, expect(), set())
    assert reason_of(wire.Bye(sender=2, reason="done"), peer=1) == "impersonation"


def test_validate_rejects_non_messages_as_a_programming_error() -> None:
    with pytest.raises(TypeError, match="wire message"):
        validate("hello", 1, expect(), set())  # type: ignore[arg-type]


def test_screen_returns_the_decoded_message() -> None:
    msg, counters = screened(wire.encode(params()), 1)
    assert isinstance(msg, wire.Params) and torch.equal(msg.vector, torch.ones(D))
    assert counters.accepted == 1 and counters.rejected == 0


# ----------------------------------------------------------------------------- window, seen


def test_at_round_and_forget_before() -> None:
    e = expect().at_round(9)
    assert e.round == 9 and e.neighbours == frozenset({1, 2})
    seen = {(1, 3), (2, 4), (1, 9), (2, 10)}
    forget_before(seen, 9)
    assert seen == {(1, 9), (2, 10)}


def test_expectations_are_checked() -> None:
    assert expect().max_bytes == 4 * D + wire.MAX_HEADER_BYTES
    with pytest.raises(ValueError, match="round"):
        expect(round=-1)
    with pytest.raises(ValueError, match="own neighbour"):
        expect(neighbours=frozenset({0, 1}))
    with pytest.raises(ValueError, match="max_bytes"):
        expect(max_bytes=0)
    with pytest.raises(ValueError, match="not a wire dtype"):
        expect(dtype=torch.int64)
    with pytest.raises(ValueError, match="neighbours"):
        expect(neighbours=frozenset({"a"}))


# ----------------------------------------------------------------------------- counters


def test_counters_as_dict_is_json_ready() -> None:
    c = RejectionCounters()
    c.accept(1)
    c.accept(1)
    c.reject(1, "non_finite")
    c.reject(None, "decode_error")
    c.reject(10, "stale_round")
    d = c.as_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["accepted"] == 2 and d["rejected"] == 3
    assert d["by_reason"] == {"decode_error": 1, "stale_round": 1, "non_finite": 1}
    assert list(d["by_peer"]) == ["1", "10", "unknown"]
    assert d["by_peer"]["1"] == {"accepted": 2, "rejected": {"non_finite": 1}}
    assert c.total == 5


def test_counters_refuse_unknown_reasons_and_bound_peers() -> None:
    c = RejectionCounters(max_peers=2)
    with pytest.raises(ValueError, match="unknown rejection reason"):
        c.reject(1, "bad_vibes")
    for peer in range(5):
        c.reject(peer, "not_neighbour")
    assert set(c.as_dict()["by_peer"]) == {"0", "1", "other"}
    assert c.as_dict()["by_peer"]["other"]["rejected"] == {"not_neighbour": 3}
    with pytest.raises(ValueError, match="max_peers"):
        RejectionCounters(max_peers=0)


def test_count_rejection_counts_exactly_one_outcome() -> None:
    c = RejectionCounters()

    def decode_fails() -> None:
        raise DecodeError("bad")

    def rejected() -> None:
        raise RejectedMessage("duplicate")

    assert count_rejection(c, 1, lambda: 42) == 42
    assert count_rejection(c, 1, decode_fails) is None
    assert count_rejection(c, 1, rejected) is None
    assert c.total == 3 and c.of(1) == {"decode_error": 1, "duplicate": 1}

    def bug() -> None:
        raise KeyError("a bug, not a bad message")

    with pytest.raises(KeyError):
        count_rejection(c, 1, bug)
    assert c.total == 3
