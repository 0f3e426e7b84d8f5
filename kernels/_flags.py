"""Numba flags for every kernel, in one place.

``cache=True`` writes compiled code beside the source, or under ``NUMBA_CACHE_DIR`` when
that is set (the systemd unit points it at its CacheDirectory). ``fastmath`` stays off: it
lets LLVM reorder sums, and the spectral levels must match the references to a fraction
of a dB. ``nogil`` lets the processing thread run beside the acquisition thread.
"""

from __future__ import annotations

import functools

import numba

NUMBA_CACHE = True
FASTMATH = False
NOGIL = True

jit = functools.partial(numba.njit, cache=NUMBA_CACHE, fastmath=FASTMATH, nogil=NOGIL)
