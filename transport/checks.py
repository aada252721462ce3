"""Checks on the fields of a message as it is built (docs/protocol.md, "Messages"). Pure.

Each check raises InvalidMessage with the field's name and the range it must be in: built
here, a bad value is this end's mistake; ``decode`` turns it into the peer's ProtocolError.

    check_int(name, value, low, high)       an int in low..high (not a bool)
    check_text(name, value, limit)          a string of at most ``limit`` characters
    check_name(name, value)                 a session, stream or take id (BAD_ID)
    check_ranges(name, ranges, last)        (first, last) seq ranges, each in order
    check_facts(name, facts)                named facts: numbers, short strings, nil, lists, maps
"""

from __future__ import annotations

import math

from sendlearn.capture import InvalidName
from sendlearn.capture import check_name as check_id

from .errors import ErrorCode, InvalidMessage

MAX_TEXT = 256  # characters of a free-text field (a track's name, a host), and of a fact's string
MAX_FACTS = 64  # named facts in one HELLO meta or BYE stats
MAX_FACT_VALUES = 1 << 17  # values in all of them, lists and maps counted with what they hold
MAX_FACT_DEPTH = 3  # a fact may be a list of lists of numbers (or maps), no deeper
Fact = int | float | str | bool | None | list["Fact"] | dict[str, "Fact"]


def check_int(name: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise InvalidMessage(ErrorCode.MALFORMED, f"{name} must be an int in {low}..{high}, got {value!r}")


def check_text(name: str, value: object, limit: int) -> None:
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidMessage(ErrorCode.MALFORMED, f"{name} must be a string of at most {limit} characters")


def check_name(field: str, value: object) -> None:
    try:
        check_id(value, field)
    except InvalidName as exc:
        raise InvalidMessage(ErrorCode.BAD_ID, str(exc)) from None


def check_ranges(name: str, ranges: tuple[tuple[int, int], ...], last: int | None = None) -> None:
    """Each ``(first, last)`` in order, from seq 0 on; with ``last``, none past it."""
    for first, end in ranges:
        if last is None and not 0 <= first <= end:
            raise InvalidMessage(ErrorCode.MALFORMED, f"{name} range {first}..{end} is not ordered")
        if last is not None and not 0 <= first <= end <= last:
            raise InvalidMessage(ErrorCode.MALFORMED, f"{name} range {first}..{end} is not within last_seq")


def check_facts(name: str, facts: object) -> None:
    if not isinstance(facts, tuple) or len(facts) > MAX_FACTS:
        raise InvalidMessage(ErrorCode.MALFORMED, f"{name} must hold at most {MAX_FACTS} facts")
    budget = [MAX_FACT_VALUES]
    for pair in facts:
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str) and 0 < len(pair[0]) <= 64):
            raise InvalidMessage(ErrorCode.MALFORMED, f"{name} keys are names of 1-64 characters")
        _fact(f"{name}.{pair[0]}", pair[1], MAX_FACT_DEPTH, budget)


def _fact(name: str, value: object, depth: int, budget: list[int]) -> None:
    """A number, a short string, nil, or a list or map of them (``depth`` levels at most),
    with at most ``MAX_FACT_VALUES`` values in a message."""
    budget[0] -= 1
    if budget[0] < 0:
        raise InvalidMessage(ErrorCode.MALFORMED, f"{name}: the facts hold more than {MAX_FACT_VALUES} values")
    if value is None or type(value) in (int, bool) or (type(value) is float and math.isfinite(value)) \
            or (isinstance(value, str) and len(value) <= MAX_TEXT):
        return
    if isinstance(value, (list, tuple, dict)) and depth > 0:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(value, dict) and not (isinstance(key, str) and 0 < len(key) <= 64):
                raise InvalidMessage(ErrorCode.MALFORMED, f"{name} keys are names of 1-64 characters")
            _fact(f"{name}.{key}", item, depth - 1, budget)
        return
    raise InvalidMessage(ErrorCode.MALFORMED, f"{name} must be a number, a short string, nil, "
                                             f"or a list or map of them ({MAX_FACT_DEPTH} levels at most)")


def is_number(value: object) -> bool:
    """An int or a finite float (not a bool)."""
    return (type(value) is int or type(value) is float) and math.isfinite(value)
