"""PHP 7.1+ ``mt_srand``/``mt_rand``, reproduced exactly.

PHP seeds MT19937 with the reference ``init_genrand`` recurrence, which is what
NumPy's legacy ``RandomState(int)`` does too, so NumPy's C generator supplies the
raw 32-bit words. What is PHP's own is the range reduction of ``mt_rand(min, max)``:
``min + word % span`` after rejecting words above ``UINT32_MAX - UINT32_MAX % span - 1``
(no rejection when ``span`` is a power of two). ``mt_rand()`` without arguments
returns the word shifted right by one.
"""

from __future__ import annotations

import numpy as np

_UINT32_MAX = 0xFFFFFFFF
_BLOCK = 2048


def _limit(span: int) -> int:
    """The largest word PHP accepts for a range of ``span`` values."""
    if span & (span - 1) == 0:  # includes span == 2**32: every word is taken
        return _UINT32_MAX
    return _UINT32_MAX - (_UINT32_MAX % span) - 1


class PhpRandom:
    """One PHP random stream, as after ``mt_srand(seed)``.

    Words are pulled from NumPy in blocks so that drawing thousands of noise
    pixels costs a few array operations rather than thousands of calls.
    """

    def __init__(self, seed: int) -> None:
        if not 0 <= seed <= _UINT32_MAX:
            raise ValueError(f"seed must be in 0..{_UINT32_MAX}, got {seed}")
        self._state = np.random.RandomState(seed)
        self._buf = np.empty(0, dtype=np.uint32)
        self._pos = 0

    def _ensure(self, n: int) -> None:
        """Make sure the buffer holds at least ``n`` unread words."""
        if self._pos + n > len(self._buf):
            fresh = self._state.randint(0, 1 << 32, size=max(_BLOCK, n), dtype=np.uint32)
            self._buf = np.concatenate([self._buf[self._pos :], fresh])
            self._pos = 0

    def _words(self, n: int) -> np.ndarray:
        """The next ``n`` raw 32-bit words of the stream."""
        self._ensure(n)
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out

    def rand(self) -> int:
        """``mt_rand()``: a 31-bit value."""
        return int(self._words(1)[0]) >> 1

    def randint(self, low: int, high: int) -> int:
        """``mt_rand(low, high)``, both ends included."""
        if high < low:
            raise ValueError(f"mt_rand(): max ({high}) is smaller than min ({low})")
        span = high - low + 1
        if span > 1 << 32:
            raise ValueError("ranges wider than 2**32 are not supported")
        limit = _limit(span)
        word = int(self._words(1)[0])
        while word > limit:
            word = int(self._words(1)[0])
        return low + word % span

    def randint_pattern(self, lows: np.ndarray, highs: np.ndarray, repeat: int) -> np.ndarray:
        """``repeat`` rounds of the calls ``mt_rand(lows[k], highs[k])`` for each k in order.

        Returns an array of shape ``(repeat, len(lows))``. This is PHP's
        ``for (...) f(mt_rand(a, b), mt_rand(c, d))`` in one step; a rejected
        word (odds about one in 10^7 per call) falls back to one call at a time.
        """
        lows = np.asarray(lows, dtype=np.int64)
        spans = np.asarray(highs, dtype=np.int64) - lows + 1
        k = len(lows)
        if repeat <= 0:
            return np.empty((0, k), dtype=np.int64)
        limits = np.array([_limit(int(s)) for s in spans], dtype=np.int64)
        self._ensure(repeat * k)
        start = self._pos
        words = self._words(repeat * k).astype(np.int64).reshape(repeat, k)
        if np.all(words <= limits):
            return lows + words % spans
        # Rare path: rewind and replay the calls one by one.
        self._pos = start
        return np.array(
            [[self.randint(int(lo), int(lo + s - 1)) for lo, s in zip(lows, spans)] for _ in range(repeat)],
            dtype=np.int64,
        )
