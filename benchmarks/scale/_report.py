"""The end of a scale benchmark: its markdown printed, and written to ``--out`` where given."""
from __future__ import annotations

from pathlib import Path


def emit(lines: list[str], out: str | None) -> int:
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        Path(out).write_text(text)
    return 0
