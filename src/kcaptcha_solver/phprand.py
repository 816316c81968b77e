"""PHP 7.1+ ``mt_srand``/``mt_rand``, reproduced exactly.

PHP seeds MT19937 with the reference ``init_genrand`` recurrence, which is what
NumPy's legacy ``RandomState.seed(int)`` does too, so NumPy's C generator supplies the
raw 32-bit words. What is PHP's own is the range reduction of ``mt_rand(min, max)``:
``min + word % span`` after rejecting words above ``UINT32_MAX - UINT32_MAX % span - 1``
(no rejection when ``span`` is a power of two). ``mt_rand()`` without arguments
returns the word shifted right by one.
"""

from __future__ import annotations

from collections.abc import Sequence

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
        self._bits = np.random.MT19937()
        self._state = np.random.RandomState(self._bits)  # for its public legacy ``seed``
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Start over as after ``mt_srand(seed)``, reusing the NumPy state (creating one costs ~0.1 ms)."""
        if not 0 <= seed <= _UINT32_MAX:
            raise ValueError(f"seed must be in 0..{_UINT32_MAX}, got {seed}")
        self._state.seed(seed)
        self._buf = np.empty(0, dtype=np.uint32)
        self._pos = 0

    def _ensure(self, n: int) -> None:
        """Make sure the buffer holds at least ``n`` unread words."""
        if self._pos + n > len(self._buf):
            fresh = self._bits.random_raw(max(_BLOCK, n)).astype(np.uint32)  # MT19937's 32-bit outputs
            rest = self._buf[self._pos :]
            self._buf = np.concatenate([rest, fresh]) if len(rest) else fresh
            self._pos = 0

    def _words(self, n: int) -> np.ndarray:
        """The next ``n`` raw 32-bit words of the stream."""
        self._ensure(n)
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out

    def _word(self) -> int:
        """The next raw word; the scalar fast path of :meth:`_words`."""
        if self._pos >= len(self._buf):
            self._ensure(1)
        word = int(self._buf[self._pos])
        self._pos += 1
        return word

    def rand(self) -> int:
        """``mt_rand()``: a 31-bit value."""
        return self._word() >> 1

    def randint(self, low: int, high: int) -> int:
        """``mt_rand(low, high)``, both ends included."""
        if high < low:
            raise ValueError(f"mt_rand(): max ({high}) is smaller than min ({low})")
        span = high - low + 1
        if span > 1 << 32:
            raise ValueError("ranges wider than 2**32 are not supported")
        limit = _limit(span)
        word = self._word()
        while word > limit:
            word = self._word()
        return low + word % span

    def randint_pattern(self, lows: Sequence[int], highs: Sequence[int], repeat: int) -> np.ndarray:
        """``repeat`` rounds of the calls ``mt_rand(lows[k], highs[k])`` for each k in order.

        Returns an array of shape ``(repeat, len(lows))``. This is PHP's
        ``for (...) f(mt_rand(a, b), mt_rand(c, d))`` in one step; a rejected
        word (odds about one in 10^7 per call) falls back to one call at a time.
        """
        calls = [(int(lo), int(hi)) for lo, hi in zip(lows, highs, strict=True)]
        if repeat <= 0:
            return np.empty((0, len(calls)), dtype=np.int64)
        for lo, hi in calls:
            if hi < lo or hi - lo >= 1 << 32:
                raise ValueError(f"mt_rand({lo}, {hi}): not a range of 1..2**32 values")
        spans = [hi - lo + 1 for lo, hi in calls]
        start = self._pos if self._pos + repeat * len(calls) <= len(self._buf) else 0
        words = self._words(repeat * len(calls)).reshape(repeat, len(calls))
        # uint32 arithmetic is the cheap path; a 2**32-value span only comes from a hand-written call.
        # One max() against the smallest limit settles nearly every case without a broadcast compare.
        limits = [_limit(s) for s in spans]
        if max(spans) < 1 << 32 and (
            int(words.max()) <= min(limits) or (words <= np.array(limits, dtype=np.uint32)).all()
        ):
            out = (words % np.array(spans, dtype=np.uint32)).astype(np.int64)
            out += np.array([lo for lo, _ in calls], dtype=np.int64)
            return out
        # Rare path: rewind and replay the calls one by one.
        self._pos = start
        return np.array([[self.randint(lo, hi) for lo, hi in calls] for _ in range(repeat)], dtype=np.int64)
