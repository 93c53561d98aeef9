"""Partition keys for ranges of rows `(low, high]` of a cursor column, and back.

A key holds both bounds, so it alone says which rows a partition is: re-materializing an old
partition reads the same rows. Bounds keep their type through the key: integers, decimals,
dates and timestamps (ISO 8601, with their time zone).

>>> range_key(None, 100), range_key(100, 250)
('start..100', '100..250')
>>> parse_range_key("100..250")
(100, 250)
"""

from __future__ import annotations

import datetime
import decimal
import re
from typing import Any

_INTEGER = re.compile(r"^-?\d+$")
_DECIMAL = re.compile(r"^-?\d+\.\d+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def format_bound(value: Any) -> str:
    """A bound as text that `parse_bound` turns back into the same value.

    >>> format_bound(datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.timezone.utc))
    '2026-01-02T03:04:00+00:00'
    >>> format_bound(decimal.Decimal("1E-7")), format_bound(decimal.Decimal("1E+2"))
    ('0.0000001', '100.0')
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"cursor value {value!r}: expected a number, date or timestamp")
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, decimal.Decimal):
        # plain notation with a point: str() writes 1E-7 and 1E+5, which would parse back as
        # a float and an int
        text = format(value, "f")
        return text if "." in text or not value.is_finite() else text + ".0"
    if isinstance(value, float):
        return repr(value)
    raise ValueError(
        f"cursor value {value!r} ({type(value).__name__}): expected a number, date or timestamp"
    )


def parse_bound(text: str) -> Any:
    """The value `format_bound` wrote.

    >>> parse_bound("2026-01-02"), parse_bound("1.50")
    (datetime.date(2026, 1, 2), Decimal('1.50'))
    """
    if _INTEGER.match(text):
        return int(text)
    if _DECIMAL.match(text):
        return decimal.Decimal(text)
    if _DATE.match(text):
        return datetime.date.fromisoformat(text)
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"cursor bound {text!r}: expected a number, date or timestamp") from None


NO_LOWER_BOUND = "start"


def range_key(low: Any, high: Any) -> str:
    """The partition key of rows with `low < cursor <= high` (`low` None: no lower bound,
    written `start`, so a key never begins with a dot and stays a plain folder name)."""
    return f"{NO_LOWER_BOUND if low is None else format_bound(low)}..{format_bound(high)}"


def parse_range_key(key: str) -> tuple[Any, Any]:
    """(low or None, high) of a key made by `range_key`."""
    low, separator, high = key.partition("..")
    if not separator or not low or not high:
        raise ValueError(f"partition key {key!r}: expected '<low>..<high>' or 'start..<high>'")
    return (None if low == NO_LOWER_BOUND else parse_bound(low)), parse_bound(high)
