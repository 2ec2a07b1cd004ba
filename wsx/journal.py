"""The journal of an exploration: every scoring is appended to ``OUT/journal.jsonl`` the moment it is
made, so a run that crashes or is killed loses nothing and the same command resumes it.

Format: JSON Lines. The first line is a header naming the model (its tensors and its computation),
the data, the metric (its code) and the settings by sha256 fingerprints (the settings also in clear,
to say what changed) and the baseline's search-subset score; each further line is one scoring
``{"knobs": {layer: knob}, "value": subset metric, "origin": step, "at": its place in the history,
"t": [scoring, clustering, wall seconds since the previous record], "h": checksum}``; a candidate
stopped early (early rejection) also has ``"rejected": true, "samples": samples seen, "bound": best
value it could still reach``; one with a measured ``Scored.distortion`` has ``"distortion"``. A record is one unbuffered ``write`` of a whole line, made as soon as
the candidate is scored: once it returns, the record survives the process being killed (SIGKILL
included). ``fsync`` follows at most every ``SYNC_SECONDS`` and on close, so that a power cut loses
at most that much (a per-record fsync cost ~10 % of a small model's search). A torn last line is dropped on read.

Resuming replays the records into the Problem (its score table, history and scoring count) and
re-runs the strategy from the start: being deterministic for a seed, it asks for the same
candidates, finds the replayed ones already scored and only scores the rest, so the final front is
the one an uninterrupted run gives. An executor hands back parts of a call as they finish (Ray
workers, in any order), and each is journaled then: records are replayed in ``at`` order, and those
past a gap (a part not finished when the run died) wait until the strategy asks for them again, so
the resumed history is the uninterrupted one too. Nothing in a journal is trusted unchecked: each record's
checksum, knob (valid for its layer) and value (finite, in the metric's range) are checked, the
baseline and a few replayed candidates (a seeded choice) are re-scored and must agree, and the
time the records cost is added to the resumed run's timings. Reading a journal only parses JSON:
it cannot run code.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .errors import CorruptFileError, JournalMismatchError, WsxError
from .files import os_error, os_errors
from .identity import strip_addresses

FILENAME = "journal.jsonl"
SYNC_SECONDS = 1.0
FORMAT = "wsx-journal"
VERSION = 2  # 2: computation and metric fingerprints, baseline, per-record timings and checksums
VERIFY = 3   # replayed candidates re-scored before the rest is trusted


def canonical(settings: dict) -> dict:
    """Settings as plain JSON, stable across processes (object addresses removed)."""
    text = json.dumps(settings, sort_keys=True, default=repr)
    return json.loads(strip_addresses(text))


def checksum(record: dict) -> str:
    """Of a record without its "h" (catches a flipped bit or an edited value)."""
    body = {k: v for k, v in record.items() if k != "h"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def settings_digest(settings: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(canonical(settings), sort_keys=True).encode()).hexdigest()


def journal_setting(out: str | os.PathLike, key: str) -> Any:
    """One setting of the journal in directory ``out`` as it was written (None without a readable
    journal): what a resumed run must keep although it would now choose otherwise."""
    try:  # the header line only: attaching reads (and checks) the records
        with open(Path(out) / FILENAME, "rb") as f:
            header = json.loads(f.readline())
    except (OSError, ValueError):
        return None  # no journal, or one attaching will report on
    settings = header.get("settings") if isinstance(header, dict) and header.get("format") == FORMAT else None
    return settings.get(key) if isinstance(settings, dict) else None


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
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > VERSION:
        raise CorruptFileError(f"{path} was written by a newer wsx (journal version {version!r});"
                               " upgrade wsx, or re-run with --restart to start over")
    if version < VERSION:
        raise JournalMismatchError(f"{path} was written by an older wsx (journal version {version}) that did not "
                                   "record the model's computation and the metric's code, so it cannot be "
                                   "checked; re-run with --restart to start over, or pick another --out")
    records = []
    for n, rec in enumerate(parsed[1:], 2):
        ok = (isinstance(rec, dict) and isinstance(rec.get("knobs"), dict) and isinstance(rec.get("origin", ""), str)
              and _finite(rec.get("value")) and _timing(rec) is not None and _rejection(rec) is not False
              and _place(rec) is not False)
        if not ok:
            raise _corrupt(path, f"record {n} is malformed", len(parsed) - 1)
        if rec.get("h") != checksum(rec):
            raise _corrupt(path, f"record {n} fails its checksum (edited or damaged)", len(parsed) - 1)
        records.append(rec)
    return header, records, intact


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    try:
        return _is_number(v) and math.isfinite(float(v))
    except OverflowError:  # an int beyond float range
        return False


def _place(rec: dict) -> int | None | bool:
    """A record's place in the history (None: its place in the file, as in journals written before
    ``at`` was), or False if malformed."""
    at = rec.get("at")
    if at is None:
        return None
    return at if isinstance(at, int) and not isinstance(at, bool) and at >= 0 else False


def _at(rec: dict, index: int) -> int:
    """A checked record's place in the history: its ``at``, else its index in the file."""
    at = _place(rec)
    return index if at is None else at


def _timing(rec: dict) -> list | None:
    """[scoring, clustering, wall] seconds a record cost, or None if malformed."""
    t = rec.get("t", [0.0, 0.0, 0.0])
    if isinstance(t, list) and len(t) == 3 and all(_finite(x) and 0 <= x < 1e9 for x in t):
        return t
    return None


def _rejection(rec: dict):
    """The ``Scored`` of a rejected record or of one with a distortion, None for a plain full one,
    False if its rejection or distortion fields are malformed."""
    from .scoring import Scored

    distortion = rec.get("distortion")
    if distortion is not None and not (_finite(distortion) and distortion >= 0):
        return False
    if "rejected" not in rec:
        return None if distortion is None else Scored(float(rec["value"]), 0, distortion=float(distortion))
    samples, bound = rec.get("samples"), rec.get("bound")
    if rec["rejected"] is not True or not (isinstance(samples, int) and not isinstance(samples, bool) and samples >= 0):
        return False
    if bound is not None and not _finite(bound):
        return False
    return Scored(float(rec["value"]), samples, True, None if bound is None else float(bound),
                  None if distortion is None else float(distortion))


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


@dataclass
class ReplayCheck:
    """How a resumed journal is checked against the run at hand (built by the engine).

    ``baseline`` is the unmodified model's search-subset score now; ``value_range`` the metric's
    range; ``rescore(knob dicts, stop rule or None)`` scores them on the search subset (a list of
    ``wsx.scoring.Scored``); ``agree(old, new)`` says whether a journaled value and a fresh one are
    the same scoring (up to the backend's rounding)."""

    baseline: float
    value_range: tuple[float, float]
    rescore: Callable[..., Any]
    agree: Callable[[float, float], bool]


class Journal:
    """Appends scorings of one Problem to ``OUT/journal.jsonl``; built by ``attach``.

    ``fingerprint`` is the header's (model, computation, data, metric and settings digests), as a
    Result records it; ``timings`` the seconds the replayed records cost (scoring, clustering, wall).
    """

    def __init__(self, path: Path, replayed: int, fingerprint: dict, timers=None, timings=None):
        self.path = path
        self.replayed = replayed
        self.fingerprint = fingerprint
        self.timings = timings or {"scoring": 0.0, "clustering": 0.0, "wall": 0.0}
        self.written = 0
        self._timers = timers
        self._last = self._clock()
        with os_errors(path, "open"):
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._synced = time.monotonic()

    @classmethod
    def attach(cls, problem, out: str | os.PathLike, fingerprint: dict, settings: dict, *,
               restart: bool = False, check: ReplayCheck | None = None) -> "Journal":
        """Open (or start) the journal in directory ``out`` for ``problem``.

        An existing journal of the same model, data, metric and settings is checked and replayed into
        ``problem``; one of another run raises JournalMismatchError, unless ``restart`` discards it.
        """
        path = Path(out) / FILENAME
        settings = canonical(settings)
        from . import __version__

        header = {"format": FORMAT, "version": VERSION, "wsx_version": __version__,
                  "fingerprint": {key: fingerprint.get(key) for key in ("model", "computation", "data", "metric")}
                  | {"settings": settings_digest(settings)},
                  "settings": settings, "baseline": None if check is None else check.baseline}
        replayed = 0
        timings = {"scoring": 0.0, "clustering": 0.0, "wall": 0.0}
        if path.exists() and not restart:
            old, records, intact = read(path)
            _check_same(path, old, header, len(records), check)
            replayed = _replay(path, problem, records, timings, check)
            if intact < path.stat().st_size:
                with os_errors(path):
                    os.truncate(path, intact)  # drop a torn tail before appending
        else:
            with os_errors(path):
                tmp = path.with_name(FILENAME + ".tmp")
                with open(tmp, "w") as f:
                    f.write(json.dumps(header, sort_keys=True) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                tmp.replace(path)
        journal = cls(path, replayed, header["fingerprint"], problem.timers, timings)
        problem._on_scored = journal.record
        return journal

    def _clock(self) -> tuple[float, float, float]:
        timers = self._timers
        if timers is None:
            return 0.0, 0.0, time.perf_counter()
        return timers.get("scoring"), timers.get("clustering"), time.perf_counter()

    def record(self, key: tuple, knobs: dict, value: float, scored=None, *, origin: str, at: int) -> None:
        """Append one scoring, durably, as one line (Problem calls this as soon as a scoring is back),
        with its place in the history (``at``: parts of a chunk may come back in any order) and the
        seconds spent since the previous one (scoring, clustering, wall)."""
        if self._fd is None:
            return
        now = self._clock()
        spent = [round(max(a - b, 0.0), 6) for a, b in zip(now, self._last)]
        self._last = now
        body = {"knobs": knobs, "value": value, "origin": origin, "at": at, "t": spent}
        if scored is not None and scored.rejected:
            body.update(rejected=True, samples=int(scored.samples), bound=scored.bound)
        if scored is not None and scored.distortion is not None:
            body["distortion"] = scored.distortion
        rec = json.loads(json.dumps(body, default=_plain))
        rec["h"] = checksum(rec)
        data = (json.dumps(rec, separators=(",", ":")) + "\n").encode()
        at = None
        try:
            at = os.lseek(self._fd, 0, os.SEEK_END)
            while data:  # a regular file takes it in one call; loop in case of a short write
                data = data[os.write(self._fd, data):]
            if time.monotonic() - self._synced >= SYNC_SECONDS:
                os.fsync(self._fd)
                self._synced = time.monotonic()
        except OSError as exc:
            if at is not None:  # leave no partial line behind: the journal stays as it was
                try:
                    os.ftruncate(self._fd, at)
                except OSError:
                    pass
            raise os_error(self.path, exc) from None
        self.written += 1

    def close(self, *, raise_errors: bool = True) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            except OSError as exc:
                if raise_errors:
                    raise os_error(self.path, exc) from None
            finally:
                os.close(fd)

    def info(self) -> dict:
        return {"path": self.path.name, "replayed": self.replayed, "scored": self.written}


def _replay(path: Path, problem, records: list[dict], timings: dict, check: ReplayCheck | None) -> int:
    """Check every record against ``problem`` and replay it; then re-score a seeded few."""
    lo, hi = check.value_range if check is not None else (-math.inf, math.inf)
    replayed, count = [], 0
    # in history order: parts of a chunk were journaled as they came back, in any order
    numbered = sorted(enumerate(records, 2), key=lambda item: _at(item[1], item[0] - 2))
    for n, rec in numbered:
        def bad(what: str) -> CorruptFileError:
            return _corrupt(path, f"record {n} {what}", len(records))

        knobs = {}
        for name, raw in rec["knobs"].items():
            if name not in problem.layer_names:
                raise bad(f"names layer {name!r}, which this model does not have")
            try:
                knob = problem.approximation.check_knob(problem.layer(name), _as_knob(raw))
            except (WsxError, TypeError, ValueError, OverflowError) as exc:
                raise bad(f"has an invalid knob for layer {name!r} ({exc})") from None
            if knob != _as_knob(raw):
                raise bad(f"has knob {raw!r} for layer {name!r}, which is not a knob value")
            knobs[name] = knob
        value = float(rec["value"])
        if not lo <= value <= hi:
            raise bad(f"has value {value!r}, outside the metric's range [{lo}, {hi}]")
        key = tuple(sorted(knobs.items()))
        known = problem.scores.get(key)
        scored = _rejection(rec)
        if known is not None and known != value and key not in problem.rejected:
            raise bad(f"scores a candidate again with another value ({known!r}, then {value!r})")
        if problem.replay(knobs, value, rec.get("origin", ""), scored, at=_place(rec)):
            count += 1
            replayed.append((knobs, value, scored))
        for part, seconds in zip(("scoring", "clustering", "wall"), _timing(rec)):
            timings[part] += seconds
    if check is not None and replayed:
        rng = np.random.default_rng(problem.seed)
        picked = [replayed[i] for i in sorted(rng.choice(len(replayed), min(VERIFY, len(replayed)), replace=False))]
        full = [(knobs, old) for knobs, old, scored in picked if scored is None or not scored.rejected]
        parts = [(full, check.rescore([knobs for knobs, _ in full]), False)] if full else []
        rejected = [(knobs, old) for knobs, old, scored in picked if scored is not None and scored.rejected]
        if rejected:  # re-scored under the same rule, a rejected candidate fails again; its value was a
            # mean over the samples it saw, in the order of its time (Problem.order_samples_by), so it
            # need not repeat
            parts.append((rejected, check.rescore([knobs for knobs, _ in rejected], problem.stop_rule), True))
        for items, fresh, was_rejected in parts:
            for (knobs, old), new in zip(items, fresh):
                same = (new.rejected or not problem.meets_target(float(new.value))) if was_rejected else \
                    check.agree(old, float(new.value))
                if not same:
                    raise JournalMismatchError(
                        f"{path} does not reproduce: candidate {knobs} scores {float(new.value):.6g} now, the journal "
                        f"says {old:.6g} (the model, data or metric changed in a way their fingerprints do not "
                        f"show, or the journal was edited); re-run with --restart (explore(..., restart=True)) to "
                        f"discard its {len(records)} scorings, or pick another --out")
    return count


def _as_knob(v: Any) -> Any:
    """JSON gives lists where knobs were tuples (e.g. (sparsity, k)); tuples are what a run uses."""
    return tuple(_as_knob(x) for x in v) if isinstance(v, list) else v


def _plain(v: Any) -> Any:
    item = getattr(v, "item", None)  # numpy scalars
    if item is not None:
        return item()
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


_WHAT_DIFFERS = {"model": "the model's weights differ",
                 "computation": "the model's computation differs (its layers, forward code or traced program)",
                 "data": "the scoring data differ", "metric": "the metric's code differs"}


def _check_same(path: Path, old: dict, new: dict, records: int, check: ReplayCheck | None) -> None:
    fp_old = old.get("fingerprint") if isinstance(old.get("fingerprint"), dict) else {}
    fp_new = new["fingerprint"]
    what = f"{path} belongs to another exploration"
    todo = (f"; re-run with --restart (explore(..., restart=True)) to discard its {records} scorings, or "
            "pick another --out")
    for key, differs in _WHAT_DIFFERS.items():
        if fp_old.get(key) != fp_new[key]:
            raise JournalMismatchError(f"{what}: {differs}{todo}")
    if fp_old.get("settings") != fp_new["settings"]:
        diff = _differences(old.get("settings"), new["settings"]) or ["(settings digest differs)"]
        raise JournalMismatchError(f"{what}: settings differ ({'; '.join(diff[:6])}){todo}")
    if check is not None:
        base = old.get("baseline")
        if not _finite(base) or not check.agree(float(base), check.baseline):
            raise JournalMismatchError(
                f"{what}: the unmodified model scores {check.baseline:.6g} on the search subset now, the journal "
                f"recorded {base!r} (the model, data or metric changed in a way their fingerprints do not show)"
                f"{todo}")
