"""The journal of an exploration: every scoring is appended to ``OUT/journal.jsonl`` the moment it is
made, so a run that crashes or is killed loses nothing and the same command resumes it.

Format: JSON Lines. The first line is a header naming the model, data and settings by sha256
fingerprints (and the settings in clear, to say what changed); each further line is one scoring
``{"knobs": {layer: knob}, "value": subset metric, "origin": step}``. A record is one unbuffered
``write`` of a whole line, made as soon as the candidate is scored: once it returns, the record
survives the process being killed (SIGKILL included). ``fsync`` follows at most every
``SYNC_SECONDS`` and on close, so that a power cut loses at most that much (a per-record fsync
cost ~10 % of a small model's search). A torn last line is dropped on read.

Resuming replays the records into the Problem (its score table, history and scoring count) and
re-runs the strategy from the start: being deterministic for a seed, it asks for the same
candidates, finds the replayed ones already scored and only scores the rest, so the final front is
the one an uninterrupted run gives. Reading a journal only parses JSON: it cannot run code.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from .errors import CorruptFileError, InvalidSettingError, JournalMismatchError

FILENAME = "journal.jsonl"
SYNC_SECONDS = 1.0
FORMAT = "wsx-journal"
VERSION = 1
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # object reprs differ between runs only by address


def canonical(settings: dict) -> dict:
    """Settings as plain JSON, stable across processes (object addresses removed)."""
    text = json.dumps(settings, sort_keys=True, default=repr)
    return json.loads(_ADDRESS.sub("", text))


def settings_digest(settings: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(canonical(settings), sort_keys=True).encode()).hexdigest()


def read(path: str | os.PathLike) -> tuple[dict, list[dict], int]:
    """(header, records, bytes of intact lines) of a journal; a torn last line is left out."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorruptFileError(f"cannot read journal {path} ({exc}); check permissions, or re-run with "
                               "--restart / another --out") from exc
    # Only lines ended by a newline count: each record is written with its newline in one call, so
    # text after the last newline is a torn record. An unreadable last line is torn as well.
    lines = data.split(b"\n")[:-1]
    parsed: list[Any] = []
    intact = pos = 0
    for i, raw in enumerate(lines):
        pos += len(raw) + 1
        if not raw.strip():
            intact = pos
            continue
        try:
            parsed.append(json.loads(raw))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if not parsed:
                raise _foreign(path) from None
            if any(line.strip() for line in lines[i + 1:]):
                raise _corrupt(path, f"line {i + 1} is not JSON", len(parsed) - 1) from None
            break
        intact = pos
    if not parsed or not isinstance(parsed[0], dict) or parsed[0].get("format") != FORMAT:
        raise _foreign(path)
    header = parsed[0]
    if not isinstance(header.get("version"), int) or header["version"] > VERSION:
        raise CorruptFileError(f"{path} was written by a newer wsx (journal version {header.get('version')!r});"
                               " upgrade wsx, or re-run with --restart to start over")
    records = []
    for n, rec in enumerate(parsed[1:], 2):
        ok = (isinstance(rec, dict) and isinstance(rec.get("knobs"), dict) and isinstance(rec.get("origin", ""), str)
              and isinstance(rec.get("value"), (int, float)) and not isinstance(rec.get("value"), bool)
              and math.isfinite(rec["value"]))
        if not ok:
            raise _corrupt(path, f"record {n} is malformed", len(parsed) - 1)
        records.append(rec)
    return header, records, intact


def _foreign(path) -> CorruptFileError:
    return CorruptFileError(f"{path} is not a wsx journal (no wsx-journal header on its first line); "
                            "remove it, re-run with --restart, or pick another --out")


def _corrupt(path, what: str, records: int) -> CorruptFileError:
    return CorruptFileError(f"journal {path} is damaged ({what}); re-run with --restart "
                            f"(explore(..., restart=True)) to discard its {max(records, 0)} scorings, or pick "
                            "another --out")


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if old != new:
        shorten = (lambda v: (s := json.dumps(v))[:60] + ("..." if len(s) > 60 else ""))
        return [f"{prefix[:-1]}: {shorten(old)} -> {shorten(new)}"]
    return []


class Journal:
    """Appends scorings of one Problem to ``OUT/journal.jsonl``; built by ``attach``.

    ``fingerprint`` is the header's (model, data and settings digests), as a Result records it.
    """

    def __init__(self, path: Path, replayed: int, fingerprint: dict):
        self.path = path
        self.replayed = replayed
        self.fingerprint = fingerprint
        self.written = 0
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._synced = time.monotonic()

    @classmethod
    def attach(cls, problem, out: str | os.PathLike, fingerprint: dict, settings: dict, *,
               restart: bool = False) -> "Journal":
        """Open (or start) the journal in directory ``out`` for ``problem``.

        An existing journal of the same model, data and settings is replayed into ``problem``; one of
        another run raises JournalMismatchError, unless ``restart`` discards it.
        """
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise InvalidSettingError(f"--out {out} is a file; give a directory for the results")
        out.mkdir(parents=True, exist_ok=True)
        path = out / FILENAME
        settings = canonical(settings)
        from . import __version__

        header = {"format": FORMAT, "version": VERSION, "wsx_version": __version__,
                  "fingerprint": {"model": fingerprint.get("model"), "data": fingerprint.get("data"),
                                  "settings": settings_digest(settings)},
                  "settings": settings}
        replayed = 0
        if path.exists() and not restart:
            old, records, intact = read(path)
            _check_same(path, old, header, len(records))
            for rec in records:
                try:
                    knobs = {name: _as_knob(v) for name, v in rec["knobs"].items()}
                    replayed += problem.replay(knobs, rec["value"], rec.get("origin", ""))
                except (InvalidSettingError, TypeError) as exc:
                    raise _corrupt(path, f"a record does not fit this problem: {exc}", len(records)) from None
            if intact < path.stat().st_size:
                os.truncate(path, intact)  # drop a torn tail before appending
        else:
            tmp = path.with_name(FILENAME + ".tmp")
            with open(tmp, "w") as f:
                f.write(json.dumps(header, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
        journal = cls(path, replayed, header["fingerprint"])
        problem._on_scored = journal.record
        return journal

    def record(self, key: tuple, knobs: dict, value: float, origin: str) -> None:
        """Append one scoring, durably, as one line (Problem calls this after each scoring)."""
        if self._fd is None:
            return
        line = json.dumps({"knobs": knobs, "value": value, "origin": origin}, separators=(",", ":"),
                          default=_plain) + "\n"
        data = line.encode()
        while data:  # a regular file takes it in one call; loop in case of a short write
            data = data[os.write(self._fd, data):]
        if time.monotonic() - self._synced >= SYNC_SECONDS:
            os.fsync(self._fd)
            self._synced = time.monotonic()
        self.written += 1

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def info(self) -> dict:
        return {"path": self.path.name, "replayed": self.replayed, "scored": self.written}


def _as_knob(v: Any) -> Any:
    """JSON gives lists where knobs were tuples (e.g. (sparsity, k)); tuples are what a run uses."""
    return tuple(_as_knob(x) for x in v) if isinstance(v, list) else v


def _plain(v: Any) -> Any:
    item = getattr(v, "item", None)  # numpy scalars
    if item is not None:
        return item()
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def _check_same(path: Path, old: dict, new: dict, records: int) -> None:
    fp_old, fp_new = old.get("fingerprint") or {}, new["fingerprint"]
    what = f"{path} belongs to another exploration"
    todo = (f"; re-run with --restart (explore(..., restart=True)) to discard its {records} scorings, or "
            "pick another --out")
    if fp_old.get("model") != fp_new["model"]:
        raise JournalMismatchError(f"{what}: the model's weights differ{todo}")
    if fp_old.get("data") != fp_new["data"]:
        raise JournalMismatchError(f"{what}: the scoring data differ{todo}")
    if fp_old.get("settings") != fp_new["settings"]:
        diff = _differences(old.get("settings"), new["settings"]) or ["(settings digest differs)"]
        raise JournalMismatchError(f"{what}: settings differ ({'; '.join(diff[:6])}){todo}")
