"""Progress bars on stderr for long steps (tqdm), silent when disabled.

A bar counts scorings. Its total is what the step may still score: a strategy's count capped by the
budget left, less the candidates that turn out to be known already (scored earlier, replayed from a
journal): a resumed run counts only what is left. A step whose length is not known in advance (an
NSGA-II that stops when its front settles) has no total, hence no ETA. When a step ends, its bar ends
at 100 %: the total becomes the count reached (a budget or an early stop ends a step before its
planned total).
"""
from __future__ import annotations

import sys


class Progress:
    """One bar per strategy stage; ``update(n)`` after each scored chunk, ``skip(n)`` for candidates
    of the stage that need no scoring."""

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

    def skip(self, n: int) -> None:
        """``n`` candidates of the stage were known already: they leave the total."""
        if self._bar is not None and self._bar.total is not None and n:
            self._bar.total = max(self._bar.total - n, self._bar.n)
            self._bar.refresh()

    def note(self, text: str) -> None:
        """A short status shown after the counts (e.g. the generation of an NSGA-II)."""
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def finish(self) -> None:
        if self._bar is not None:
            if self._bar.total is None or self._bar.n != self._bar.total:
                self._bar.total = self._bar.n  # the step ended here: the bar ends at its end
            self._bar.refresh()
            self._bar.close()
            self._bar = None

    def message(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)
