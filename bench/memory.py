"""Memory figures of the running benchmark process, from /proc/self/status.

`VmHWM` (peak RSS) belongs to the address space and starts afresh at exec; `ru_maxrss` does not
(Linux carries the parent's peak across fork and exec), so each measurement runs in a fresh
process and reads this.
"""


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_rss() -> int:
    """Peak RSS of this process in bytes."""
    return _status_bytes("VmHWM")


def current_rss() -> int:
    """RSS of this process now, in bytes."""
    return _status_bytes("VmRSS")
