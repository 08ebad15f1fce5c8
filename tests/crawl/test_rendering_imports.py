"""A crawl without rendering, and every ``scrapy`` command, never import Playwright.

scrapy-playwright and Playwright are loaded only by the rendering handler and its
browser provider, which only scrapy-playwright's handler machinery loads (the add-on
names them by dotted path). Checked in child processes with ``python -X importtime``,
which prints every module a process imports, at start or later.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from ..helpers import PROJECT_ROOT, crawl_command, crawl_runs, run_crawl_command

#: The packages a crawl without rendering must never load.
BROWSER_PACKAGES = ("playwright", "scrapy_playwright")
#: ``import time: self [us] | cumulative | imported package``; the name indented by depth.
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", re.MULTILINE)


def imported(output: str) -> set[str]:
    return set(IMPORT_LINE.findall(output))


def browser_modules(output: str) -> list[str]:
    modules = imported(output)
    assert "scrapy" in modules, "no -X importtime output: the check would see nothing"
    return sorted(m for m in modules if m.split(".")[0] in BROWSER_PACKAGES)


def with_importtime(command: list[str]) -> list[str]:
    assert command[0] == sys.executable
    return [command[0], "-X", "importtime", *command[1:]]


def test_the_middlewares_and_the_rendering_package_import_no_browser_code():
    modules = [
        "matter_crawler.middlewares.retry",
        "matter_crawler.middlewares.classify",
        "matter_crawler.middlewares.breaker",
        "matter_crawler.middlewares.callback_errors",
        "matter_crawler.rendering",
        "matter_crawler.rendering.addon",
        "matter_crawler.rendering.middleware",
        "matter_crawler.rendering.request_meta",
        "matter_crawler.rendering.confine",
        "matter_crawler.rendering.browser",
        "matter_crawler.settings",
    ]
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert browser_modules(completed.stderr) == []


def test_a_scrapy_command_imports_no_browser_code():
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "scrapy", "list"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.split() == ["dcl", "matter_products"]
    assert browser_modules(completed.stderr) == []


@pytest.mark.parametrize(
    "settings",
    [
        {"RENDERING_ENABLED": False},
        {"PLAYWRIGHT_BROWSER_PATH": "/nonexistent/chromium"},  # no browser found
    ],
    ids=["rendering-off", "no-browser"],
)
def test_a_crawl_without_rendering_imports_no_browser_code(simulated_site, database_url, settings):
    # shells make the retry ask whether a browser can render them (render_or_explain)
    site = simulated_site(products=24, seed=4, js_only_rate=0.3)
    command = with_importtime(crawl_command(site.base_url, database_url, settings=settings))
    result = run_crawl_command(command, database_url, timeout=300).check()
    stats = crawl_runs(database_url)[-1]["stats"]
    assert stats["render/unavailable"] >= 1  # the path that asks about rendering ran
    assert browser_modules(result.output) == []


def test_the_former_module_paths_still_load_without_browser_code():
    """Settings and JOBDIR requests written for ``matter_crawler/rendering.py`` name these."""
    code = (
        "import sys\n"
        "from scrapy.utils.misc import load_object\n"
        "from matter_crawler.rendering import addon, confine, middleware\n"
        "assert load_object('matter_crawler.rendering.Rendering') is addon.Rendering\n"
        "assert load_object('matter_crawler.rendering.ForcedRenderingMiddleware') is "
        "middleware.ForcedRenderingMiddleware\n"
        "assert load_object('matter_crawler.rendering.confine_page') is confine.confine_page\n"
        "assert load_object('matter_crawler.rendering.skip_resource') is confine.skip_resource\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{BROWSER_PACKAGES!r}))\n"
        "handler = load_object('matter_crawler.rendering.LazyPlaywrightDownloadHandler')\n"
        "print(handler.__module__)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert completed.stdout.splitlines() == ["[]", "matter_crawler.rendering.handler"]
