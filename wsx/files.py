"""Writing into an ``--out`` directory: one run at a time, whole files or none, OS errors as OutputError.

A run holds an exclusive ``flock`` on ``OUT/.lock`` while it scores and writes; a second run on the
same directory is refused at once. The kernel drops the lock when the holder exits, however it dies
(SIGKILL included), so a killed run never blocks the next one. Every file is written to a temporary
name in the same directory and moved over the final name (``os.replace``): a kill or a full disk
leaves the previous version or the new one, never half of one.
"""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from .errors import InvalidSettingError, OutputError

LOCKFILE = ".lock"
_WHAT = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
         errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
         errno.EPERM: "permission denied", errno.ENOTDIR: "a part of the path is a file, not a directory"}


RESUMES = " (journal.jsonl keeps every scoring made so far: re-running the same command resumes)"


def os_error(path, exc: OSError, doing: str = "write", note: str = RESUMES) -> OutputError:
    """An OutputError naming ``path``, what the OS said and what to do."""
    why = _WHAT.get(exc.errno, exc.strerror or type(exc).__name__)
    return OutputError(f"cannot {doing} {path}: {why} ({type(exc).__name__}: {exc}); free space, fix the "
                       f"permissions or pick another --out{note}")


def prepare_dir(out) -> Path:
    """``out`` as an existing directory; raises InvalidSettingError for a file, OutputError for an OS error."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidSettingError(f"--out {out} is a file; give a directory for the results")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), out)
        raise InvalidSettingError(f"--out {out} lies under {blocker}, which is a file; give a directory path "
                                  "whose parents are directories") from None
    except OSError as exc:
        raise os_error(out, exc, "create the directory") from None
    return out


class OutDirLock:
    """An exclusive lock on ``OUT/.lock`` for the length of one run (``release`` or process exit)."""

    def __init__(self, out):
        self.out = prepare_dir(out)
        self.path = self.out / LOCKFILE
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise os_error(self.path, exc, "create the lock file") from None
        try:
            import fcntl
        except ImportError:  # no flock on this platform: runs are not serialised
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = self._holder()
            self.release()
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"--out {self.out} is in use by another wsx run{holder}; wait for it to "
                                  "finish, or pick another --out") from None
            raise os_error(self.path, exc, "lock") from None
        try:  # who holds it, for the message a second run prints
            os.ftruncate(self._fd, 0)
            os.write(self._fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass

    def _holder(self) -> str:
        try:
            pid = self.path.read_text().strip()
        except OSError:
            return ""
        return f" (process {pid})" if pid.isdigit() else ""

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "OutDirLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def atomic_write(path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` for a temporary file beside ``path`` (same suffix, so writers that infer
    the format from it still work), then move it over ``path``. Nothing is left on failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise os_error(path, exc) from None
    except BaseException:
        _remove(tmp)
        raise
    return path


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


@contextmanager
def os_errors(path, doing: str = "write"):
    """Turn an OSError inside the block into an OutputError naming ``path``."""
    try:
        yield
    except OSError as exc:
        raise os_error(path, exc, doing) from None
