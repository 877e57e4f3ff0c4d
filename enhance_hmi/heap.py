"""Keep freed memory in the process: the CPU network then stops paying page faults.

Every convolution of the network on the CPU allocates its output afresh
(64 x 248 x 248 float32, 16 MB, for a 248-pixel window; four times that
after the 2x upsampling). glibc's ``malloc`` serves blocks that large with
``mmap`` and gives them back with ``munmap`` when freed, so every layer of
every window starts from pages the kernel must fault in and zero, a large
part of the CPU inference time (measured figures: docs/performance.md,
``bench/heap_cli.py``).

:func:`keep_freed_memory` tells glibc (``mallopt``) not to use ``mmap`` and
not to trim the heap, so a freed block is reused by the next layer. The
price: the process keeps its peak memory until it exits. That is a choice
for the whole process, so no library function of ``enhance`` makes it: the
entry points do (the ``enhance predict``, ``train``, ``evaluate`` and
``validate`` commands and the workflow's batch jobs), and a library user
who wants it calls :func:`keep_freed_memory` once. Set
``ENHANCE_KEEP_FREED_MEMORY=0`` to make the entry points leave ``malloc``
alone. Other C libraries (macOS, musl) are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

__all__ = ["ENV_VARIABLE", "keep_freed_memory"]

log = logging.getLogger(__name__)

#: Environment variable that turns :func:`keep_freed_memory` off when "0".
ENV_VARIABLE = "ENHANCE_KEEP_FREED_MEMORY"

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks for reuse (once per process).

    Returns
    -------
    bool
        True when glibc accepted the settings (now or on an earlier call);
        False on another C library, when ``ENHANCE_KEEP_FREED_MEMORY=0``, or
        when ``mallopt`` refused.
    """
    if "done" in _state:
        return _state["done"]
    ok = False
    if os.environ.get(ENV_VARIABLE, "1").strip() == "0":
        log.debug("%s=0: malloc left as it is", ENV_VARIABLE)
    elif sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
            log.debug("mallopt: mmap off, no trimming (%s)", "accepted" if ok else "refused")
    _state["done"] = ok
    return ok
