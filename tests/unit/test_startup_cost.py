"""What every ``scrapy`` start costs: the levers of issue 19 that keep it down.

Module imports are checked in a fresh interpreter (this one has imported everything).
"""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest
from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.test import get_crawler

from matter_crawler.extensions.gc_tuning import GarbageCollectorTuning
from matter_crawler.switched_off import SWITCHED, SwitchedOffComponents

from ..adaptive_helpers import project_settings_with

ROOT = Path(__file__).resolve().parents[2]


def fresh_modules(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"import sys\n{code}\nprint('\\n'.join(sys.modules))"
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return set(output.split())


def test_listing_the_commands_does_not_import_openpyxl():
    # what Scrapy does at every start, a crawl's too, to find the commands
    modules = fresh_modules(
        "from scrapy.utils.misc import walk_modules\nwalk_modules('matter_crawler.commands')"
    )
    assert "matter_crawler.commands.export" in modules
    assert "openpyxl" not in modules


def test_switched_off_stock_components_are_left_out_and_never_imported():
    settings = project_settings_with()
    SwitchedOffComponents().update_settings(settings)
    for _switch, base, path in SWITCHED:
        assert path not in settings[base], path
    assert not settings.getbool("REMOTE_CONTROL_ENABLED")
    # building the component tables as Scrapy does imports none of them
    modules = fresh_modules(
        "from tests.adaptive_helpers import project_settings_with\n"
        "from matter_crawler.switched_off import SwitchedOffComponents\n"
        "settings = project_settings_with()\n"
        "SwitchedOffComponents().update_settings(settings)\n"
        "settings.get_component_priority_dict_with_base('EXTENSIONS')\n"
        "settings.get_component_priority_dict_with_base('DOWNLOADER_MIDDLEWARES')"
    )
    assert "scrapy.extensions.remote_control" not in modules
    assert "aiohttp" not in modules
    assert "tldextract" not in modules


def test_a_switch_turned_on_keeps_its_component_as_in_scrapy():
    settings = project_settings_with(REMOTE_CONTROL_ENABLED=True, COOKIES_ENABLED=True)
    SwitchedOffComponents().update_settings(settings)
    extensions = settings.get_component_priority_dict_with_base("EXTENSIONS")
    middlewares = settings.get_component_priority_dict_with_base("DOWNLOADER_MIDDLEWARES")
    assert "scrapy.extensions.remote_control.RemoteControl" in extensions
    assert "scrapy.downloadermiddlewares.cookies.CookiesMiddleware" in middlewares
    assert "scrapy.extensions.telnet.TelnetConsole" not in extensions


def test_the_collector_is_tuned_while_the_engine_runs():
    threshold = gc.get_threshold()
    with pytest.raises(NotConfigured):
        GarbageCollectorTuning.from_crawler(
            get_crawler(settings_dict={"GC_FREEZE_AT_START": False, "GC_GEN0_THRESHOLD": 0})
        )
    assert gc.get_threshold() == threshold
    settings = {"GC_FREEZE_AT_START": True, "GC_GEN0_THRESHOLD": 12345}
    crawler = get_crawler(settings_dict=settings)
    extension = GarbageCollectorTuning.from_crawler(crawler)  # signals hold receivers weakly
    try:
        assert gc.get_threshold() == (12345, *threshold[1:])
        crawler.signals.send_catch_log(signals.engine_started)
        frozen = crawler.stats.get_value("gc/frozen_objects")
        # the count only shrinks afterwards, as frozen objects are freed
        assert frozen >= gc.get_freeze_count() > 0
        crawler.signals.send_catch_log(signals.engine_stopped)
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == threshold
        assert extension.freeze
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
