"""Partition keys as safe folder names (`<base>/<asset key>/<partition>/`)."""

from __future__ import annotations

from urllib.parse import quote

from dagster import MultiPartitionKey

_SAFE = "-_=@+,"


def partition_path(partition_key: str) -> tuple[str, ...]:
    """Path parts for a partition key: one per dimension (sorted by name) for multi-partitions.

    Characters outside letters, digits and `-_=@+,.` are percent-encoded, and a leading dot or
    dash too, so a key never climbs out of its folder or hides among temporary files.

    >>> partition_path("2024-01-01")
    ('2024-01-01',)
    >>> partition_path("report~1.xml"), partition_path("-5..-3")
    (('report%7E1.xml',), ('%2D5..-3',))
    >>> partition_path("../../etc")
    ('%2E.%2F..%2Fetc',)
    """
    if isinstance(partition_key, MultiPartitionKey):
        by_dimension = partition_key.keys_by_dimension
        return tuple(_encode(by_dimension[name]) for name in sorted(by_dimension))
    return (_encode(partition_key),)


def _encode(part: str) -> str:
    # quote leaves "~" as it is (an unreserved URL character), which store keys do not allow
    encoded = quote(part, safe=_SAFE + ".").replace("~", "%7E")
    if not encoded:
        return "%00"
    if encoded[0] in ".-":  # hidden, or read as an option; store keys start otherwise
        encoded = f"%{ord(encoded[0]):02X}" + encoded[1:]
    return encoded
