"""Progress of long work: a tqdm bar on a terminal, plain lines when stderr is redirected to a log.

Plain mode prints ``<desc>: 3/16 shapes (19%), 12 s, ETA 51 s`` at most every ``interval`` seconds (and at
the end), so a redirected log gets readable lines instead of carriage returns and escape fragments.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

__all__ = ["progress", "Progress", "is_terminal"]


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """A minimal bar: ``update(k)``, ``write(line)``, ``set_postfix_str(s)``, ``close()``."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", *, interval: float = 10.0,
                 stream: TextIO | None = None, disable: bool = False, initial: int = 0):
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.stream = sys.stderr if stream is None else stream
        self.disable = disable
        self.n = initial
        self._start = time.perf_counter()
        self._last = self._start
        self._postfix = ""
        self._bar = None
        if not disable and is_terminal(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, initial=initial,
                             dynamic_ncols=True)

    def update(self, k: int = 1) -> None:
        self.n += k
        if self._bar is not None:
            self._bar.update(k)
            return
        now = time.perf_counter()
        if not self.disable and (now - self._last >= self.interval or (self.total and self.n >= self.total)):
            self._last = now
            self._line()

    def _line(self) -> None:
        el = time.perf_counter() - self._start
        if self.total:
            pct = 100.0 * self.n / self.total
            rate = self.n / el if el > 0 else 0.0
            eta = f", ETA {((self.total - self.n) / rate):.0f} s" if rate > 0 and self.n < self.total else ""
            msg = f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.0f}%), {el:.0f} s{eta}"
        else:
            msg = f"{self.desc}: {self.n} {self.unit}, {el:.0f} s"
        if self._postfix:
            msg += f" [{self._postfix}]"
        print(msg, file=self.stream, flush=True)

    def set_postfix_str(self, s: str) -> None:
        self._postfix = s
        if self._bar is not None:
            self._bar.set_postfix_str(s)

    def write(self, line: str) -> None:
        if self.disable:
            return
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(iterable: Iterable, desc: str, *, total: int | None = None, unit: str = "it",
             disable: bool = False) -> Iterator:
    """Iterate with progress (see :class:`Progress`); the bar is closed also on error."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, desc, unit, disable=disable) as bar:
        for item in iterable:
            yield item
            bar.update(1)
