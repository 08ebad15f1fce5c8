"""Whether the process that wrote a lock or a marker is still running.

A crawl leaves its identity where another crawl must find it: in the
database's writer lock (:mod:`matter_crawler.storage.lock`) and in the JOBDIR's
running marker (:mod:`matter_crawler.core.session`). The identity is the process id,
the host name and what the operating system says of the process's start (on
Linux the boot id and the start time in clock ticks from ``/proc``), so that a
process id reused by another program after the crawl died is not taken for
the crawl.

On the same host the answer is exact: the process is running, or it is not
(stale). A process on another host cannot be asked: :func:`is_running` then
answers None and the caller decides (the database lock by its heartbeat's age).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """A process, told apart from any later process with the same id."""

    pid: int
    host: str
    started: str | None  # None where the OS does not say (not Linux), or an old marker

    @classmethod
    def current(cls) -> ProcessIdentity:
        pid = os.getpid()
        return cls(pid=pid, host=this_host(), started=process_start(pid))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_text(cls, text: str) -> ProcessIdentity | None:
        """Read :meth:`to_json`'s output, or a bare pid (written by older versions)."""
        text = text.strip()
        if text.isdigit():
            return cls(pid=int(text), host=this_host(), started=None)
        try:
            values: Any = json.loads(text)
            return cls(pid=int(values["pid"]), host=str(values["host"]), started=values["started"])
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


@cache
def this_host() -> str:
    return socket.gethostname()


@cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """The boot id and start time (clock ticks since boot) of a process; None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20:
        return None
    return f"{_boot_id()}:{fields[19]}"


def pid_running(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def _command_line(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode("utf-8", "replace")


def is_running(identity: ProcessIdentity, *, program: str | None = None) -> bool | None:
    """Whether the process is still running: None when it is on another host.

    Without a recorded start (an old marker, a system without ``/proc``), a
    running process with that id counts as the same process if its command
    line mentions ``program`` (when given and readable).
    """
    if identity.host != this_host():
        return None
    if not pid_running(identity.pid):
        return False
    now = process_start(identity.pid)
    if identity.started is not None and now is not None:
        return now == identity.started
    if program is not None:
        command = _command_line(identity.pid)
        if command is not None:
            return program in command
    return True
