"""Where the commands write: checks on the output file, and its replacement on success.

Never the database (nor its -wal, -shm or -journal file, by any name or link);
an existing file only with ``--force``, keeping its permissions; the new file is
written beside it and renamed over it only when complete (docs/security.md). The
feed and report extensions replace their files the same way (:func:`write_file`).
"""

from __future__ import annotations

import io
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ._database import CommandError


def default_mode() -> int:
    """The permissions a new file gets here (0o666 less the umask), as ``open`` would give."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def kept_mode(path: Path) -> int:
    """The permissions of the file at ``path``, which its replacement keeps; else the default."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:  # none, or a dangling symlink: the link is replaced, not its target
        return default_mode()


def _is_database(path: Path, database: Path) -> bool:
    """Whether ``path`` is the database file or one of SQLite's files beside it."""
    for name in ("", "-wal", "-shm", "-journal"):
        candidate = database.with_name(database.name + name)
        if path.resolve() == candidate.resolve():
            return True
        try:
            if os.path.samefile(path, candidate):  # a hard link, a symlink to it
                return True
        except OSError:
            continue
    return False


def check_output(path: Path, *, force: bool, database: Path | None) -> int:
    """Whether ``path`` may be written; the permissions the written file is to have.

    Never the database (nor its -wal, -shm or -journal file, by any name or
    link); an existing file only with ``--force``, keeping its permissions.
    """
    if database is not None and _is_database(path, database):
        raise CommandError(f"{path} is the database ({database}): refusing to write over it")
    if path.is_dir():
        raise CommandError(f"{path} is a directory: give a file name")
    if not path.parent.is_dir():
        raise CommandError(f"no directory {path.parent} to write {path.name} in")
    if os.path.lexists(path) and not force:
        raise CommandError(f"{path} exists: add --force to replace it")
    return kept_mode(path)


@contextmanager
def replaced_when_done(path: Path, mode: int) -> Iterator[tuple[Path, int]]:
    """A new temporary file beside ``path`` (its name and descriptor), renamed to it on success.

    The temporary file is created exclusively (no other file or link is ever
    written through), gets ``mode``, and replaces ``path`` in one rename: a
    failed export leaves ``path`` as it was.
    """
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    partial = Path(name)
    try:
        os.fchmod(descriptor, mode)
        yield partial, descriptor
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_file(path: Path, data: bytes, mode: int) -> None:
    """``data`` to ``path``, renamed into place when complete."""
    with (
        replaced_when_done(path, mode) as (_partial, descriptor),
        open(descriptor, "wb") as stream,
    ):
        stream.write(data)


def write_output(output: str, data: bytes, mode: int) -> None:
    """``data`` to ``output`` (``-``: standard output), renamed into place when complete."""
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    write_file(Path(output), data, mode)


@contextmanager
def text_output(output: str, mode: int) -> Iterator[IO[str]]:
    """A UTF-8 text stream to ``output`` (``-``: standard output), CSV-safe newlines."""
    if output == "-":
        stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
        try:
            yield stream
            stream.flush()
        finally:
            stream.detach()
        return
    with (
        replaced_when_done(Path(output), mode) as (_partial, descriptor),
        open(descriptor, "w", encoding="utf-8", newline="") as stream,
    ):
        yield stream
