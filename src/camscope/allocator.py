"""glibc allocator settings for long CPU runs (opt-in for library users; the CLI applies them).

On Linux, glibc's ``malloc`` serves blocks above a dynamic threshold (at most 32 MiB) with fresh
``mmap`` pages and returns freed memory above another threshold to the system. A CNN forward pass
on CPU allocates and frees activation buffers of several MiB every layer, so every pass faults
its pages in again and the kernel zeroes them: measured on a 2-core CPU, EfficientNet-Lite0
passes at batch 8 took 16.4 ms per image with 1.1 million page faults per 160 images, and
8.6 ms with none once both thresholds were raised (ResNet-50: 43 -> 40 ms). The cost is that
memory freed by the process is kept for reuse instead of being returned at once.

:func:`tune_allocator` raises the two thresholds for the calling process (``mallopt``). It
changes process-wide state, so the library never calls it on its own; the ``camscope`` command
does, unless ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` is set in the environment
(the user's own choice wins). The same effect without code:
``MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=268435456 python ...``.

Example:
    >>> import camscope.allocator
    >>> camscope.allocator.tune_allocator()  # doctest: +SKIP
    True
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def tune_allocator(mmap_threshold: int = 64 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True when both were set.

    Does nothing (False) off Linux, without glibc's ``mallopt``, or when the environment already
    sets either threshold.
    """
    if not sys.platform.startswith("linux") or any(name in os.environ for name in ENVIRONMENT):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    done = mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1 and done
    log.debug("malloc thresholds raised: %s", done)
    return done
