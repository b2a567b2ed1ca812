"""A per-epoch progress display: a tqdm bar on a terminal (loss, accuracy, images/s, ETA), else plain lines."""
from __future__ import annotations

import os
import sys
import time


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def _terminal_columns(stream):
    """The width of the terminal behind ``stream``, 0 when it reports none."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


class Progress:
    """Track one pass over a loader; draw a bar when ``enabled`` and stderr is a terminal.

    Without tqdm installed a line is printed about every 10 seconds instead of a bar.
    """

    PLAIN_INTERVAL = 10.0

    def __init__(self, total, description, enabled=True, stream=None, initial=0):
        self.total, self.description = total, description
        self.stream = sys.stderr if stream is None else stream
        self.images, self.steps, self.initial = 0, initial, initial
        self.loss_sum = self.correct = 0.0
        self.start = self.last_print = time.perf_counter()
        self.bar = None
        self.plain = False
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            tqdm = _tqdm()
            if tqdm is None:
                self.plain = True
            else:
                # tqdm hides its bar on a terminal that reports no size (some containers' ptys): assume 100x50
                sized = _terminal_columns(self.stream) > 0
                unsized = {} if sized else {"ncols": 100, "nrows": 50}
                self.bar = tqdm(total=total, desc=description, unit="batch", leave=False, file=self.stream,
                                dynamic_ncols=sized, initial=initial, **unsized)

    @property
    def images_per_second(self):
        return self.images / max(time.perf_counter() - self.start, 1e-9)

    def update(self, batch_size, loss=None, correct=None):
        """Count one batch; ``loss`` is its mean loss and ``correct`` its number of right top-1 predictions."""
        self.steps += 1
        self.images += batch_size
        if loss is not None:
            self.loss_sum += loss * batch_size
        if correct is not None:
            self.correct += correct
        if self.bar is not None:
            self.bar.set_postfix_str(self._summary(), refresh=False)
            self.bar.update(1)
        elif self.plain and time.perf_counter() - self.last_print >= self.PLAIN_INTERVAL:
            self.last_print = time.perf_counter()
            per_step = (self.last_print - self.start) / (self.steps - self.initial)
            remaining = (self.total - self.steps) * per_step if self.total else 0
            print(f"{self.description} {self.steps}/{self.total or '?'} {self._summary()} eta {remaining:.0f}s",
                  file=self.stream, flush=True)

    def _summary(self):
        count = max(self.images, 1)
        accuracy = 100 * self.correct / count
        return f"loss {self.loss_sum / count:.4f} acc {accuracy:.1f}% {self.images_per_second:.0f} img/s"

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
