"""Progress bars on stderr for long steps (tqdm), silent when disabled."""
from __future__ import annotations

import sys


class Progress:
    """One bar per strategy stage; ``update(n)`` after each scored chunk."""

    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._bar = None

    def start(self, name: str, total: int | None) -> None:
        self.finish()
        if self.enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=name, unit="cand", file=self.stream, leave=True,
                             dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def message(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)
