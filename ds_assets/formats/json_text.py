"""JSON text that `datasets`' `Json` feature reads back as what Python's `json` parsed.

`datasets` stores a `Json` column as text and parses it again when the dataset is read, with a
parser (ujson) stricter than Python's: integers beyond 64 bits fail there ("Value is too big"),
and NaN, infinities and lone surrogate escapes come back as other values. A reader that hands
such text on would store a column that changes, or fails, long after the read. So readers store
JSON only through `checked`/`dumps`, which refuse it up front, where the source, row and field
can still be named. Python's `json` does the parsing; the hooks only refuse; then `datasets`'
own reader must take the text too.

Floats are the one thing left: that reader parses them without pandas' `precise_float`, so a
double can come back one unit in the last place off (0.7609624449125756 as 0.760962444912575).
The stored text stays exact: read the column with `Json(decode=False)` for the text itself.

>>> checked('{"n": 18446744073709551615, "x": [1.5, "é"]}')
'{"n": 18446744073709551615, "x": [1.5, "é"]}'
>>> checked('[18446744073709551616]')
Traceback (most recent call last):
...
ValueError: integer 18446744073709551616 does not fit 64 bits
>>> dumps({"a": [1, None]})
'{"a":[1,null]}'
"""

from __future__ import annotations

import json
import math
from typing import Any

from datasets.utils.json import ujson_loads

__all__ = ["checked", "dumps"]

# ujson reads signed and unsigned 64-bit integers: from -2**63 to 2**64 - 1
_INTEGERS = range(-(2**63), 2**64)


def checked(text: str) -> str:
    """`text`, if it is JSON that reads back as parsed; else `ValueError` (or `RecursionError`
    for nesting deeper than Python's recursion limit) saying what does not."""
    value = json.loads(text, parse_constant=_no_constant, parse_int=_integer, parse_float=_finite)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # UnicodeEncodeError: a lone surrogate
    try:
        ujson_loads(text)  # what reads it back: it refuses some numbers Python takes (1e20 as
    except ValueError as error:  # "100000000000000000000.0": "Value is too big")
        raise ValueError(f"datasets' JSON reader refuses it: {error}") from None
    return text


def dumps(value: Any) -> str:
    """Compact JSON text of `value` (parsed JSON: dicts, lists, strings, numbers, None), checked
    as `checked` does."""
    return checked(json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _integer(text: str) -> int:
    value = int(text)
    if value not in _INTEGERS:
        raise ValueError(f"integer {text} does not fit 64 bits")
    return value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} overflows a float64")
    return value
