"""Write files so that a kill, a full disk or an error never leaves half a file at the target: the writer fills a
temporary file beside it (same folder, so same filesystem), which is renamed into place only once complete."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def temporary_path(target: str | Path) -> Path:
    """Where this process writes `target` before renaming it: `.NAME.tmpPID.SUFFIX` beside it (the suffix kept, so
    that writers which read the format from the name still see it)."""
    target = Path(target)
    return target.with_name(f".{target.stem}.tmp{os.getpid()}{target.suffix}")


def stale_temporaries(target: str | Path) -> list[Path]:
    """The temporaries of `target` that writers left behind (killed before the rename), of any process."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    return sorted(target.parent.glob(f".{target.stem}.tmp*{target.suffix}"))


def remove(path: Path) -> None:
    """Delete a file or a folder tree; nothing when it is not there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    """Flush a file's (or folder's) data to the disk, so that the rename never publishes unwritten blocks."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target` to write; when the block ends without error it is flushed to the disk
    and renamed over `target` (an earlier file there is replaced only then). On any error or interrupt the
    temporary is deleted and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(target)
    remove(tmp)
    try:
        yield tmp
        if tmp.is_file():
            _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        remove(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` through `atomic_path`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path
