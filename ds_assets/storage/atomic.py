"""Atomic replacement of a directory by a fully written sibling.

`os.replace` cannot replace a non-empty directory. On Linux `renameat2(RENAME_EXCHANGE)` swaps
two paths in one step, so a reader of the final path sees the old version or the new one and
never nothing; elsewhere the old directory is renamed aside first (a window of a few
microseconds where the path is missing, documented in docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_TEMP_MARK = ".tmp-"
_TRASH_MARK = ".old-"


def _load_renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def temp_sibling(final_path: str, mark: str = _TEMP_MARK) -> str:
    """A hidden, unique path beside `final_path` (same filesystem, so renames are atomic)."""
    parent, name = os.path.split(os.path.abspath(final_path))
    return os.path.join(parent, f".{name}{mark}{uuid.uuid4().hex[:12]}")


def exchange(new_path: str, final_path: str) -> str | None:
    """Move `new_path` to `final_path` atomically; return where the old version now is.

    The old version (if any) ends at a hidden sibling that the caller deletes when convenient.
    """
    if not os.path.lexists(final_path):
        try:
            os.rename(new_path, final_path)
            return None
        except OSError as error:
            # another writer's first save landed in between: exchange with it instead
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    if _renameat2 is not None:
        result = _renameat2(
            _AT_FDCWD, os.fsencode(new_path), _AT_FDCWD, os.fsencode(final_path), _RENAME_EXCHANGE
        )
        if result == 0:
            return new_path
        error = ctypes.get_errno()
        if error not in (22, 38, 95):  # EINVAL/ENOSYS/EOPNOTSUPP: filesystem cannot exchange
            raise OSError(error, os.strerror(error), final_path)
    trash = temp_sibling(final_path, _TRASH_MARK)
    os.rename(final_path, trash)
    os.rename(new_path, final_path)
    return trash


@contextlib.contextmanager
def atomic_directory(final_path: str) -> Iterator[str]:
    """Yield a temporary sibling directory; on success swap it in at `final_path`.

    On an exception the temporary directory is removed and `final_path` is untouched; a killed
    process leaves only a hidden `.name.tmp-*` sibling, which `remove_stale_siblings` clears.

    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "ds")
    >>> with atomic_directory(target) as tmp:
    ...     open(os.path.join(tmp, "f"), "w").close()
    >>> os.listdir(target)
    ['f']
    """
    os.makedirs(os.path.dirname(os.path.abspath(final_path)), exist_ok=True)
    remove_stale_siblings(final_path)
    temp = temp_sibling(final_path)
    os.mkdir(temp)
    try:
        yield temp
        old = exchange(temp, final_path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_siblings(final_path: str, max_age_seconds: float = 24 * 3600) -> None:
    """Delete leftovers of killed writers beside `final_path` older than `max_age_seconds`.

    Old-version trash is deleted at once; temporary directories only once old, since a
    concurrent writer may still be filling one.
    """
    parent, name = os.path.split(os.path.abspath(final_path))
    if not os.path.isdir(parent):
        return
    now = time.time()
    for entry in os.scandir(parent):
        if not entry.name.startswith(f".{name}."):
            continue
        is_trash = entry.name.startswith(f".{name}{_TRASH_MARK}")
        is_temp = entry.name.startswith(f".{name}{_TEMP_MARK}")
        with contextlib.suppress(OSError):
            if is_trash or (is_temp and now - entry.stat().st_mtime > max_age_seconds):
                shutil.rmtree(entry.path, ignore_errors=True)
