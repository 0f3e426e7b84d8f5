"""Numba flags for every kernel, in one place.

``cache=True`` writes compiled code beside the source, or under ``NUMBA_CACHE_DIR`` when
that is set (under systemd, point it at the unit's CacheDirectory). ``fastmath`` stays off by
default: it lets LLVM assume no NaN or inf and reorder arithmetic freely, and the spectral
levels must match the references to a fraction of a dB. ``jit_sum`` allows only the
reordering of sums, for the kernels that are dot products. ``nogil`` lets the processing
thread run beside the acquisition thread.
"""

from __future__ import annotations

import functools

import numba

NUMBA_CACHE = True
FASTMATH = False
NOGIL = True

jit = functools.partial(numba.njit, cache=NUMBA_CACHE, fastmath=FASTMATH, nogil=NOGIL)

# For kernels that are long sums of products (FIR taps, DFT dot products, moments): let
# LLVM reassociate the sum into vector lanes and fuse multiply-adds. Results move by a few
# ulp (their references agree to 1e-10 either way) and run 3-5 times faster. NaN and inf
# keep their meaning (no 'nnan' or 'ninf'), so a NaN sample still spoils its result.
SUM_FASTMATH = frozenset({"reassoc", "contract"})
jit_sum = functools.partial(numba.njit, cache=NUMBA_CACHE, fastmath=set(SUM_FASTMATH), nogil=NOGIL)
