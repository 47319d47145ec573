"""Files that are whole or absent: every write goes to a temp file beside the target, is fsynced and renamed.

Temp files are named ``.<target>.<host>-<pid>.<random>.tmp`` so that a later process can tell a stale one (its
writer is dead) from one being written right now, and remove it (``clean_stale_temps``): a kill during a
multi-GB checkpoint write would otherwise leave the partial file on disk forever.

A full disk raises :class:`DiskFull`, which names the file that could not be written and the space it needs,
instead of a bare ``[Errno 28]``.
"""
from __future__ import annotations

import errno
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable, IO

HOST = socket.gethostname()
HOST_TAG = HOST.replace(".", "_")  # no dots: temp names are split on them
NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
FOREIGN_TEMP_AGE_S = 24 * 3600  # a temp of another host (or an old name) is stale after a day


class DiskFull(OSError):
    """A write that did not fit; the message names the file and the space it needs."""


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n / 2**10:,.0f} kB"


def free_bytes(path: Path) -> int:
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def disk_full(path: Path, needed: int | None, cause: BaseException | None = None) -> DiskFull:
    try:
        free = f"{mb(free_bytes(path))} free there"
    except OSError:
        free = "free space unknown"
    need = f"it needs about {mb(needed)} ({free})" if needed else free
    reason = "no space left on the disk" if cause is None or getattr(cause, "errno", None) == errno.ENOSPC \
        else "disk quota exceeded" if getattr(cause, "errno", None) in NO_SPACE else str(cause)
    return DiskFull(errno.ENOSPC, f"could not write {path}: {reason}; {need}. Free some space (or point --results "
                                  f"at a bigger disk) and re-run the same command: finished runs are kept")


def no_space(e: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT error behind ``e``, if any (torch's zip writer wraps it in a RuntimeError)."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno in NO_SPACE:
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def temp_path(target: Path) -> Path:
    """A new, empty, uniquely named temp file beside ``target`` (0666 minus umask: results are for sharing)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{HOST_TAG}-{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())
    return Path(tmp)


def atomic_write(target: Path, write: Callable[[IO[bytes]], None], needed: int | None = None) -> Path:
    """``write(f)`` into a temp file, fsync, rename onto ``target``. ``needed`` (bytes, an estimate) is checked
    against the free space first, so a write that cannot fit fails before it fills the disk."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in NO_SPACE:
            raise disk_full(target, needed, e) from e
        raise
    if needed and free_bytes(target.parent) < needed:
        raise disk_full(target, needed)
    tmp = None
    try:
        tmp = temp_path(target)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except DiskFull:
        raise
    except Exception as e:
        cause = no_space(e)
        if cause is not None:
            raise disk_full(target, needed, cause) from e
        raise
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
    return target


def atomic_write_text(path: Path, text: str) -> None:
    """Readers never see half a file."""
    data = text.encode()
    atomic_write(Path(path), lambda f: f.write(data), needed=len(data))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def is_stale(tmp: Path, now: float | None = None) -> bool:
    """A temp whose writer is dead: on this host by its pid, elsewhere (or unnamed) by its age."""
    parts = tmp.name[:-len(".tmp")].rsplit(".", 2)
    owner = parts[-2] if len(parts) == 3 else ""
    host, _, pid = owner.rpartition("-")
    if host == HOST_TAG and pid.isdigit():
        return int(pid) != os.getpid() and not _pid_alive(int(pid))
    try:
        return (now or time.time()) - tmp.stat().st_mtime > FOREIGN_TEMP_AGE_S
    except OSError:
        return False


def clean_stale_temps(directory: Path, everything: bool = False) -> tuple[int, int]:
    """Remove stale ``.*.tmp`` files under ``directory`` (``everything``: all of them, for a caller that holds the
    directory's lock, so no one else can be writing there). Returns (files, bytes) removed."""
    n = size = 0
    directory = Path(directory)
    if not directory.is_dir():
        return 0, 0
    for tmp in directory.rglob(".*.tmp"):
        if tmp.is_file() and (everything or is_stale(tmp)):
            try:
                st = tmp.stat().st_size
                tmp.unlink()
            except OSError:
                continue
            n, size = n + 1, size + st
    return n, size
