"""Progress lines for long work: count/total, rate and ETA, at most every few seconds.

Why: generating 10,000 fakes or extracting their features on a CPU takes
minutes; a command that is silent until its final table looks hung. A
`Progress` logs one line such as

  evaluate: generating fakes: 2048/10000 (20%)  41.3/s  ETA 3m13s

when at least `every` seconds passed since the last line, and always when the
work is done: an info line of the jaxgen logger (`jaxgen.utils.logger`), which a
command prints to stdout, flushed, so it shows through pipes and logs. The rate counts only
the work done since the `Progress` began (`done` may start above 0 on a resume),
so the ETA is right after a resume too. The clock is injectable for tests.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator, Optional, TypeVar

from jaxgen.utils.logger import logger

T = TypeVar("T")


def format_duration(seconds: float) -> str:
    """'12s', '4m41s', '2h05m' (rounded to whole seconds; '?' when not finite)."""
    if not seconds == seconds or seconds in (float("inf"), float("-inf")):
        return "?"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _rate_text(rate: float) -> str:
    """'0.25', '41.3', '1234': three significant digits without an exponent."""
    return f"{rate:.3g}" if rate < 100 else f"{rate:.0f}"


class Progress:
    """Counts work towards `total` and logs `label: count/total (pct) rate/s ETA ...` lines.

    tail: called for text to add at the end of each logged line (the projector's mean
    distance); quiet: count without logging (the returned lines are the same)."""

    def __init__(self, total: int, label: str, every: float = 10.0, done: int = 0,
                 unit: str = "", clock: Callable[[], float] = time.monotonic,
                 tail: Optional[Callable[[], str]] = None, quiet: bool = False):
        self.total, self.label, self.every, self.unit = int(total), label, float(every), unit
        self.done = self.start_done = int(done)
        self.clock, self.tail, self.quiet = clock, tail, quiet
        self.t0 = self.last = clock()
        self.finished = False

    @property
    def rate(self) -> float:
        """Units of work per second since the start (0 before any time has passed)."""
        return self._rate(self.clock())

    @property
    def eta(self) -> float:
        """Seconds left at the current rate (inf when nothing was done yet, 0 when finished)."""
        return self._eta(self.clock())

    def _rate(self, now: float) -> float:
        elapsed = now - self.t0
        return (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0

    def _eta(self, now: float) -> float:
        left = max(0, self.total - self.done)
        rate = self._rate(now)
        return 0.0 if left == 0 else (left / rate if rate > 0 else float("inf"))

    def line(self, now: Optional[float] = None) -> str:
        """The progress line for the current count (at time `now`, default the clock's)."""
        now = self.clock() if now is None else now
        pct = f" ({100.0 * self.done / self.total:.0f}%)" if self.total else ""
        unit = f" {self.unit}" if self.unit else ""
        tail = (f"done in {format_duration(now - self.t0)}" if self.done >= self.total
                else f"ETA {format_duration(self._eta(now))}")
        return f"{self.label}: {self.done}/{self.total}{unit}{pct}  {_rate_text(self._rate(now))}/s  {tail}"

    def update(self, n: int = 1) -> Optional[str]:
        """Count `n` more; log (and return, without the tail) a line when due or done, else None."""
        self.done += int(n)
        now = self.clock()
        due = now - self.last >= self.every
        if (self.done >= self.total and not self.finished) or due:
            self.finished = self.done >= self.total
            self.last = now
            text = self.line(now)
            if not self.quiet:
                logger.info(text + (self.tail() if self.tail else ""))
            return text
        return None

    def iterate(self, items: Iterable[T], size: Callable[[T], int] = lambda _: 1) -> Iterator[T]:
        """Yield `items`, counting `size(item)` for each once the consumer is done with it."""
        for item in items:
            yield item
            self.update(size(item))
