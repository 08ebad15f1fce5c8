"""``ProcessMemoryUsage``: Scrapy's MemoryUsage, measuring this program and not its parent.

Scrapy's MemoryUsage reads the crawl's peak memory from ``getrusage(RUSAGE_SELF).ru_maxrss``.
On Linux that figure is inherited: when a process execs, the kernel folds the high-water
mark of the image it replaces into the process's record, and a child forked from a large
process carries that process's memory until its exec. So a crawl started by a process
holding 600 MB (a notebook, a task runner, a benchmark harness) begins with a 600 MB
"peak"; under the ``MEMUSAGE_LIMIT_MB`` of 500 that the ``polite`` and ``balanced``
profiles set, MemoryUsage's first check, as the engine starts, closes it
(``memusage_exceeded``) before its first request.

This subclass reads ``VmHWM`` from ``/proc/self/status`` instead: the same high-water
mark, of this program's image alone (it starts from zero at exec). Where ``/proc`` is
missing it is Scrapy's reading (macOS starts ``ru_maxrss`` afresh at exec). Everything
else is Scrapy's: the ``MEMUSAGE_*`` settings, the ``memusage/*`` stats, the warning and
the close reason. ``settings.py`` puts it in the place of Scrapy's extension.
"""

from __future__ import annotations

from scrapy.extensions.memusage import MemoryUsage


def peak_resident_bytes() -> int | None:
    """This program's peak resident memory (``VmHWM``), or None where /proc has none."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024  # in kB
    except (OSError, ValueError, IndexError):
        pass
    return None


class ProcessMemoryUsage(MemoryUsage):
    def get_virtual_size(self) -> int:
        peak = peak_resident_bytes()
        return super().get_virtual_size() if peak is None else peak
