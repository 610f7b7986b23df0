"""Worker threads named where the operating system sees them, not only in Python.

Python before 3.14 keeps a ``threading.Thread``'s name to itself: ``top -H``, ``py-spy``'s
native view and ``/proc/<pid>/task/<tid>/comm`` show every worker thread under the
process's name, so a replica's CPU cannot be split between its event loop and the model
threads beside it (the capacity runner's per-thread attribution reads that name). Ray
names its own C++ threads; :func:`name_os_thread` names ours the same way (Linux's
``PR_SET_NAME``, 15 bytes at most). Elsewhere, or where libc cannot be reached, it does
nothing: a name is a diagnostic, never a reason to fail.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

__all__ = ["name_os_thread"]

#: prctl's option that names the calling thread
_PR_SET_NAME = 15
#: the kernel keeps this many bytes of a thread's name (16 with the terminating NUL)
NAME_BYTES = 15


@functools.cache
def _libc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` (cut to 15 bytes) in the operating system's view."""
    libc = _libc()
    if libc is None:
        return
    encoded = name.encode("utf-8", "replace")[:NAME_BYTES]
    try:
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(encoded), 0, 0, 0)
    except (AttributeError, OSError):
        return
