"""Strategy interface: searches a Problem for knob combinations."""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import ClassVar

from .errors import SearchStopped


class Strategy(ABC):
    """A search over per-layer knob values.

    Keyword-only constructor parameters are stored as given (scikit-learn discipline); state learned
    while running ends with ``_``. ``run(problem)`` scores candidates through ``problem.evaluate`` —
    which records every scoring in the problem's history — and never touches a framework.

    A strategy minimises the **metric loss** (``Candidate.accuracy_loss``, ``problem.loss``: positive
    is worse, whatever the metric and its direction) and maximises CR; a candidate meets the target
    when its loss is at most ``problem.max_loss``. "AL" in the built-in strategies' documentation is
    this loss (the accuracy loss of the thesis when the metric is top-1).
    """

    name: ClassVar[str] = ""
    extra: ClassVar[str | None] = None

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return True, ""

    def get_params(self) -> dict:
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self" and hasattr(self, p)}

    def set_params(self, **params) -> "Strategy":
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {key!r}; valid: {sorted(valid)}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def run(self, problem) -> None:
        """Search ``problem``; stops quietly when its budget or time limit is reached."""
        try:
            self._run(problem)
        except SearchStopped:
            problem.note(f"{self.name}: stopped early ({problem.stop_reason})")

    @abstractmethod
    def _run(self, problem) -> None:
        """The search itself."""
