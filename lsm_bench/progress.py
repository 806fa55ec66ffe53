"""Progress display for long phases: tqdm when installed, else one stderr line.

Nothing is shown for the first :data:`DELAY_SECONDS` of a phase, so short
phases stay quiet; ``mode="auto"`` shows progress only when stderr is a
terminal (CI logs get no carriage-return noise).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from typing import Protocol, TextIO

DELAY_SECONDS = 2.0  # "anything longer than a few seconds"
REFRESH_SECONDS = 0.5  # redraw rate of the plain stderr line


class Progress(Protocol):
    """What a timed loop calls: ``update`` after each chunk, ``close`` at the end."""

    def update(self, done: int) -> None:
        """Report ``done`` operations finished so far (absolute, not a delta)."""

    def close(self) -> None:
        """Finish the display (idempotent)."""


class NullProgress:
    """Shows nothing."""

    def update(self, done: int) -> None:
        """Ignore."""

    def close(self) -> None:
        """Ignore."""


class LineProgress:
    """A ``\\r``-rewritten stderr line: ``desc  done/total  pct  rate``."""

    def __init__(self, desc: str, total: int, stream: TextIO | None = None) -> None:
        """:param desc: label, e.g. ``"readrandom lsm"``.
        :param total: operations expected.
        :param stream: where to write (default ``sys.stderr``).
        """
        self.desc = desc
        self.total = max(1, total)
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.monotonic()
        self._last = 0.0
        self._shown = False

    def update(self, done: int) -> None:
        """Redraw at most every :data:`REFRESH_SECONDS`, after :data:`DELAY_SECONDS`."""
        now = time.monotonic()
        elapsed = now - self.start
        if elapsed < DELAY_SECONDS or now - self._last < REFRESH_SECONDS:
            return
        self._last = now
        self._shown = True
        rate = done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * done / self.total
        self.stream.write(
            f"\r{self.desc}  {done}/{self.total}  {pct:5.1f}%  {rate:,.0f} op/s   "
        )
        self.stream.flush()

    def close(self) -> None:
        """End the line if anything was drawn."""
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False


class TqdmProgress:
    """A tqdm bar (``delay`` keeps it hidden for short phases)."""

    def __init__(self, desc: str, total: int) -> None:
        """:param desc: label. :param total: operations expected."""
        from tqdm import tqdm  # optional dependency: only imported when wanted

        self._bar = tqdm(
            total=total, desc=desc, unit="op", leave=False, delay=DELAY_SECONDS, file=sys.stderr
        )
        self._done = 0

    def update(self, done: int) -> None:
        """Advance the bar to ``done``."""
        if done > self._done:
            self._bar.update(done - self._done)
            self._done = done

    def close(self) -> None:
        """Remove the bar."""
        self._bar.close()


def tqdm_available() -> bool:
    """Whether ``tqdm`` can be imported."""
    return importlib.util.find_spec("tqdm") is not None


def make_progress(mode: str, desc: str, total: int) -> Progress:
    """A progress display for one phase.

    :param mode: ``"on"``, ``"off"``, or ``"auto"`` (on when stderr is a terminal).
    :param desc: label. :param total: operations expected.
    """
    if mode == "off" or (mode == "auto" and not sys.stderr.isatty()):
        return NullProgress()
    if tqdm_available():
        return TqdmProgress(desc, total)
    return LineProgress(desc, total)
