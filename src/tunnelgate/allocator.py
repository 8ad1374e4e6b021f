"""Keep glibc from handing big buffers back to the kernel after every read.

Bulk transfers allocate and free buffers of 256 KiB to 1 MiB many times a second (a socket
read, a WebSocket batch). By default glibc serves such sizes with mmap or at the top of the
heap and returns them at once, so each one costs a system call and 64-256 page faults of
freshly zeroed memory: measured here, that was half of the client's CPU on a download.
With these settings they are reused from the heap instead (100 MiB through one tunnel:
~570 -> ~850 MB/s), at the price of up to TRIM_THRESHOLD of free memory kept per process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Final

from tunnelgate import limits

M_TRIM_THRESHOLD: Final = -1
M_TOP_PAD: Final = -2
M_MMAP_THRESHOLD: Final = -3

MMAP_THRESHOLD: Final = 8 * limits.MiB  # larger than any buffer on the data path
TRIM_THRESHOLD: Final = 8 * limits.MiB
TOP_PAD: Final = 1 * limits.MiB


_libc: ctypes.CDLL | None = None


def trim() -> bool:
    """Give free heap memory back to the kernel (glibc's malloc_trim), whole pages from
    anywhere in the heap, not only its top. Cheap when little is free; meant for quiet
    moments, so bulk transfers keep reusing their buffers (see above)."""
    if _libc is None:
        return False
    try:
        trim_fn = _libc.malloc_trim
    except AttributeError:
        return False
    trim_fn.argtypes = [ctypes.c_size_t]
    trim_fn.restype = ctypes.c_int
    return bool(trim_fn(0))


def tune_allocator() -> bool:
    """Apply the settings if this is glibc; True if they took."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    global _libc
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    _libc = libc
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all(
        mallopt(option, value) == 1
        for option, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (M_TOP_PAD, TOP_PAD),
        )
    )
