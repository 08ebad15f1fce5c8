"""Register a crawl in a Prometheus file-based service-discovery (file_sd) file.

Many jobs (parallel scrapyd jobs) share one file, a JSON list of target groups
``{"targets": ["127.0.0.1:9412"], "labels": {...}}``, which Prometheus watches
(``file_sd_configs``). Every change is a read-modify-write under an exclusive
``fcntl`` lock on ``<file>.lock``, written to a temporary file in the same
directory and moved over the old one with ``os.replace``, so Prometheus never
reads half a file and no job loses another's entry.

Each entry carries hidden bookkeeping labels (``__`` prefix, which Prometheus
drops after relabelling): the host and process id of the job that wrote it.
Every update also removes entries of this host whose process is gone (a job
killed with SIGKILL cannot remove its own), and the entry is removed at exit
even if the spider never closed cleanly.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HOST_LABEL = "__matter_crawler_host"
PID_LABEL = "__matter_crawler_pid"

TargetGroup = dict[str, Any]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM  # exists, owned by someone else
    return True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock_path = path.with_name(path.name + ".lock")
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_groups(path: Path) -> list[TargetGroup]:
    """The target groups in an SD file ([] if it is missing or unreadable)."""
    try:
        groups = json.loads(path.read_text(encoding="utf-8") or "[]")
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        logger.warning("Replacing unreadable service-discovery file %s: %s", path, error)
        return []
    return (
        [group for group in groups if isinstance(group, dict)] if isinstance(groups, list) else []
    )


def update_groups(path: Path, change: Callable[[list[TargetGroup]], list[TargetGroup]]) -> None:
    """Apply ``change`` to the file's groups under the lock, dropping dead local jobs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        host = socket.gethostname()
        groups = [
            group
            for group in read_groups(path)
            if not (
                group.get("labels", {}).get(HOST_LABEL) == host
                and not _pid_alive(int(group.get("labels", {}).get(PID_LABEL, 0) or 0))
            )
        ]
        groups = change(groups)
        temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
        temporary.write_text(json.dumps(groups, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)


class ServiceDiscoveryEntry:
    """This process's target in a shared file_sd file: :meth:`add`, then :meth:`remove`."""

    def __init__(self, path: Path, target: str, labels: dict[str, str]) -> None:
        self.path = path
        self.target = target
        self.labels = {
            **labels,
            HOST_LABEL: socket.gethostname(),
            PID_LABEL: str(os.getpid()),
        }
        self.registered = False

    def _is_mine(self, group: TargetGroup) -> bool:
        labels = group.get("labels", {})
        return (
            group.get("targets") == [self.target]
            and labels.get(HOST_LABEL) == self.labels[HOST_LABEL]
            and labels.get(PID_LABEL) == self.labels[PID_LABEL]
        )

    def add(self) -> None:
        def change(groups: list[TargetGroup]) -> list[TargetGroup]:
            kept = [group for group in groups if not self._is_mine(group)]
            return [*kept, {"targets": [self.target], "labels": self.labels}]

        update_groups(self.path, change)
        self.registered = True
        atexit.register(self.remove)
        logger.info("Registered %s in the Prometheus target file %s", self.target, self.path)

    def remove(self) -> None:
        """Remove this target (idempotent; also runs at interpreter exit)."""
        if not self.registered:
            return
        self.registered = False
        atexit.unregister(self.remove)
        try:
            update_groups(
                self.path, lambda groups: [group for group in groups if not self._is_mine(group)]
            )
        except OSError as error:
            logger.error("Could not remove %s from %s: %s", self.target, self.path, error)
        else:
            logger.info("Removed %s from the Prometheus target file %s", self.target, self.path)
