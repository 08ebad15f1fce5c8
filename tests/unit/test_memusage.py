"""ProcessMemoryUsage: Scrapy's MemoryUsage without the memory of the process that started the crawl.

The crawl through a large parent is in tests/crawl/test_crawl.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

from scrapy.extensions.memusage import MemoryUsage

from matter_crawler.extensions.memusage import ProcessMemoryUsage

from ..adaptive_helpers import project_settings_with
from ..helpers import PROJECT_ROOT

#: Holds 300 MB, then execs a program that reports both readings of its peak memory.
READINGS = (
    "import os, sys\n"
    "held = b'x' * (300 << 20)  # written, so resident\n"
    "report = (\n"
    "    'import json, resource\\n'\n"
    "    'from scrapy.utils.test import get_crawler\\n'\n"
    "    'from matter_crawler.extensions.memusage import ProcessMemoryUsage\\n'\n"
    "    'ours = ProcessMemoryUsage.from_crawler(get_crawler()).get_virtual_size()\\n'\n"
    "    'rusage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\\n'\n"
    "    'print(json.dumps([ours, rusage]))'\n"
    ")\n"
    "os.execv(sys.executable, [sys.executable, '-c', report])\n"
)


def test_the_peak_is_this_programs_not_the_one_it_replaced():
    completed = subprocess.run(
        [sys.executable, "-c", READINGS],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    ours, rusage = json.loads(completed.stdout)
    assert rusage >= 300 << 20  # what Scrapy's MemoryUsage reads: the replaced image's peak
    assert 0 < ours < 200 << 20  # an interpreter with Scrapy imported


def test_it_takes_the_place_of_scrapys_extension():
    assert issubclass(ProcessMemoryUsage, MemoryUsage)  # Scrapy's settings, stats and checks
    settings = project_settings_with()
    extensions = settings.get_component_priority_dict_with_base("EXTENSIONS")
    assert "scrapy.extensions.memusage.MemoryUsage" not in extensions
    assert extensions["matter_crawler.extensions.memusage.ProcessMemoryUsage"] == 0
