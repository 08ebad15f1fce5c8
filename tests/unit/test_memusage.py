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
from ..helpers import PROJECT_ROOT, from_a_large_process

#: Prints both readings of its peak memory: ours and ru_maxrss (what Scrapy's MemoryUsage reads).
READINGS = (
    "import json, resource\n"
    "from scrapy.utils.test import get_crawler\n"
    "from matter_crawler.extensions.memusage import ProcessMemoryUsage\n"
    "ours = ProcessMemoryUsage.from_crawler(get_crawler()).get_virtual_size()\n"
    "rusage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
    "print(json.dumps([ours, rusage]))\n"
)


def test_the_peak_is_this_programs_not_the_one_it_replaced():
    completed = subprocess.run(
        from_a_large_process([sys.executable, "-c", READINGS]),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    ours, rusage = json.loads(completed.stdout)
    assert rusage >= 300 << 20  # the peak of the image the exec replaced
    assert 0 < ours < 200 << 20  # an interpreter with Scrapy imported


def test_it_takes_the_place_of_scrapys_extension():
    assert issubclass(ProcessMemoryUsage, MemoryUsage)  # Scrapy's settings, stats and checks
    settings = project_settings_with()
    extensions = settings.get_component_priority_dict_with_base("EXTENSIONS")
    assert "scrapy.extensions.memusage.MemoryUsage" not in extensions
    assert extensions["matter_crawler.extensions.memusage.ProcessMemoryUsage"] == 0
