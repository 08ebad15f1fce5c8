"""JavaScript-only pages: rendered in the system's Chromium, or dead-lettered without one.

The simulated site serves a share of listing and product pages as empty shells
that a script fills in 50 ms after load (``js_only_rate``). Crawls run as child
processes, as a user runs them, against a real Chromium; the test without a
browser points ``PLAYWRIGHT_BROWSER_PATH`` at a path that does not exist, and
the test with a broken browser at a script that exits 1 as a Chromium without
its libraries does.
"""

from __future__ import annotations

import pickle
import shlex
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from scrapy import Request
from scrapy.settings import Settings
from scrapy.utils.request import request_from_dict
from scrapy.utils.test import get_crawler

from matter_crawler import settings as project_settings
from matter_crawler.middlewares.classify import FailureClass, classify_exception
from matter_crawler.rendering import browser as rendering_browser
from matter_crawler.rendering.addon import HANDLER_PATH, PROVIDER_PATH, Rendering
from matter_crawler.rendering.browser import NO_BROWSER, BrowserLaunchError, find_browser
from matter_crawler.rendering.confine import skip_resource
from matter_crawler.rendering.request_meta import render_or_explain, rendering_available
from matter_crawler.spiders.matter_products import MatterProductsSpider

from ..conftest import IN_CI
from ..helpers import crawl_runs, database_differences, query, run_crawl

LISTING_PATH = "/csa-iot_products/"
#: The project's RENDERING_* settings (their one home): get_crawler alone has Scrapy's defaults.
RENDERING_SETTINGS = {
    name: getattr(project_settings, name)
    for name in dir(project_settings)
    if name.startswith("RENDERING_")
}


def rendering_crawler(**settings):
    return get_crawler(settings_dict={**RENDERING_SETTINGS, **settings})


def page_of(path: str) -> int:
    """Listing page number of a logged listing path (``/csa-iot_products/page/N/?...``)."""
    parts = urlparse(path).path.strip("/").split("/")
    return int(parts[2]) if len(parts) >= 3 and parts[1] == "page" else 1


def served(site) -> tuple[Counter, set[str]]:
    """Page requests per path, and the paths the site served as JavaScript-only shells."""
    log = [entry for entry in site.requests_log() if entry["kind"] in ("list", "detail")]
    return Counter(entry["path"] for entry in log), {
        entry["path"] for entry in log if entry["fault"] == "js_only"
    }


def run_stats(database_url: str) -> dict:
    return crawl_runs(database_url)[-1]["stats"]


@pytest.fixture
def chromium() -> str:
    """The browser a crawl would use (``find_browser``): skip without one, fail under CI=true."""
    settings = Settings()
    settings.setmodule("matter_crawler.settings")
    browser = find_browser(settings)
    if browser is None:
        message = (
            "no browser found (renders JavaScript-only pages): install chromium "
            "(`make setup` does) or set PLAYWRIGHT_BROWSER_PATH"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return browser


def dead_letters(database_url: str) -> list[tuple]:
    return query(
        database_url, "select url, stage, failure_class, last_error, attempts from dead_letters"
    )


def check_only_shells_lost(site, truth: list[dict], database_url: str) -> list[tuple]:
    """Seed 4's shells were dead-lettered and every other product stored; the dead letters.

    Each page, shells too, was fetched once: a shell is never fetched again when
    nothing can render it.
    """
    requests, shells = served(site)
    shell_lists = sorted(page_of(path) for path in shells if path.startswith(LISTING_PATH))
    shell_details = {path for path in shells if not path.startswith(LISTING_PATH)}
    assert shell_lists == [3, 12]
    assert shell_details
    # once, but page 1, read again at the end of the full run (products listed meanwhile)
    page_one = site.listing_url(1).removeprefix(site.base_url)
    assert {path: count for path, count in requests.items() if count != 1} == {page_one: 2}

    letters = dead_letters(database_url)
    assert {urlparse(url).path for url, *_ in letters if "/csa_product/" in url} == shell_details
    assert sorted(
        page_of(url.removeprefix(site.base_url)) for url, *_ in letters if "/csa-iot" in url
    ) == [3, 12]
    # everything else is stored, exactly: products of readable listing pages with readable pages
    unreachable = {r["url"] for r in truth[24:36] + truth[132:144]}
    expected = [r for r in truth if r["url"] not in unreachable | shell_details]
    assert query(database_url, "select count(*) from products") == [(len(expected),)]
    assert database_differences(database_url, expected) == []
    (run,) = crawl_runs(database_url)
    assert (run["status"], run["dead_letters"]) == ("finished", len(letters))
    return letters


# -- with a browser -------------------------------------------------------------


@pytest.mark.system
@pytest.mark.slow
def test_javascript_only_pages_are_rendered_and_every_product_stored(
    chromium, simulated_site, database_url
):
    # seed 8: listing page 1 (which gives the page count) and page 6 are shells, ~30 products too
    site = simulated_site(products=150, seed=8, js_only_rate=0.2)
    truth = site.truth()

    result = run_crawl(site.base_url, database_url).check()

    assert database_differences(database_url, truth) == []
    requests, shells = served(site)
    shell_lists = sorted(page_of(path) for path in shells if path.startswith(LISTING_PATH))
    shell_details = [path for path in shells if not path.startswith(LISTING_PATH)]
    assert shell_lists == [1, 6]
    assert len(shell_details) >= 20
    # a shell is fetched twice (plain, then in the browser), every other page once; page 1
    # twice as much: it is read again at the end of the full run
    page_one = site.listing_url(1).removeprefix(site.base_url)
    assert {path: count for path, count in requests.items() if count != 1} == {
        **dict.fromkeys(shells, 2),
        page_one: 4,
    }
    stats = run_stats(database_url)
    assert stats["render/requested"] == len(shells) + 1
    assert stats["render/requested/list"] == 2 + 1
    assert (
        stats["playwright/page_count/closed"] == stats["playwright/page_count"] == len(shells) + 1
    )
    assert stats["playwright/page_count/max_concurrent"] <= 4  # PLAYWRIGHT_MAX_PAGES_PER_CONTEXT
    assert stats["playwright/context_count/max_concurrent"] == 1  # PLAYWRIGHT_MAX_CONTEXTS
    assert "retry/count" not in stats  # rendering is not a retry
    assert crawl_runs(database_url)[-1]["dead_letters"] == 0
    # the browser skips stylesheets, images and fonts: none reached the site
    assert not [e for e in site.requests_log() if ".css" in e["path"]]
    assert "Rendering JavaScript-only pages in" in result.output


@pytest.fixture
def driver_starts(tmp_path, monkeypatch) -> Path:
    """A file with a line for every start of Playwright's Node.js driver by a crawl.

    Playwright runs ``$PLAYWRIGHT_NODEJS_PATH`` as its driver when set: a wrapper
    that notes the start and runs the bundled Node.js.
    """
    import playwright

    node = Path(playwright.__file__).parent / "driver" / "node"
    if not node.is_file():
        pytest.skip(f"no bundled Node.js at {node}")
    starts = tmp_path / "driver-starts.log"
    wrapper = tmp_path / "node"
    wrapper.write_text(
        f"#!/bin/sh\necho started >> {shlex.quote(str(starts))}\n"
        f'exec {shlex.quote(str(node))} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PLAYWRIGHT_NODEJS_PATH", str(wrapper))  # the crawl inherits it
    return starts


def driver_start_count(starts: Path) -> int:
    return len(starts.read_text().splitlines()) if starts.exists() else 0


@pytest.mark.system
def test_a_crawl_that_renders_nothing_never_starts_the_browser(
    chromium, simulated_site, database_url, driver_starts
):
    site = simulated_site(products=36, seed=2)
    result = run_crawl(site.base_url, database_url).check()
    assert database_differences(database_url, site.truth()) == []
    assert "Rendering JavaScript-only pages in" in result.output  # the handler is installed
    assert driver_start_count(driver_starts) == 0  # but Playwright's driver never started
    assert "Starting Playwright" not in result.output
    assert not any(key.startswith("playwright/") for key in run_stats(database_url))


@pytest.mark.slow
@pytest.mark.system
def test_forced_rendering_renders_every_page_and_sees_redirects_past_the_end(
    chromium, simulated_site, database_url
):
    # past the end, page 4 redirects to page 1: the browser follows it, the spider must not
    site = simulated_site(products=30, seed=3, js_only_rate=0.3, past_end="redirect")
    truth = site.truth()

    result = run_crawl(site.base_url, database_url, settings={"RENDERING_FORCE": True}).check()

    assert database_differences(database_url, truth) == []
    requests, shells = served(site)
    assert shells  # some pages only the browser could read
    listing_pages = sorted(page_of(p) for p in requests if p.startswith(LISTING_PATH))
    # pages 1-3, page 4 past the end, page 1 again as the redirect's target (in the browser),
    # and page 1 read again at the end of the full run
    assert listing_pages == [1, 2, 3, 4]
    assert requests[site.listing_url(1).removeprefix(site.base_url)] == 3
    assert sum(count for path, count in requests.items() if "/csa_product/" in path) == 30
    stats = run_stats(database_url)
    assert stats["render/forced"] == 4 + 30 + 1  # every listing page and product page
    assert "render/requested" not in stats  # none needed a second, rendered fetch
    assert "Page 4 is past the end (302)" in result.output
    (run,) = crawl_runs(database_url)
    assert (run["status"], run["pages_crawled"], run["products_delisted"]) == ("finished", 3, 0)


@pytest.mark.slow
@pytest.mark.system
def test_forced_rendering_does_not_wait_for_content_on_a_404(
    chromium, simulated_site, database_url
):
    # page 2 is past the end and answers 404: the wait must end there, not time out
    site = simulated_site(products=12, seed=4)
    result = run_crawl(site.base_url, database_url, settings={"RENDERING_FORCE": True}).check()
    assert database_differences(database_url, site.truth()) == []
    assert "Page 2 is past the end (404)" in result.output
    stats = run_stats(database_url)
    assert stats["render/forced"] == 2 + 12 + 1  # and page 1 again at the end of the run
    assert not [key for key in stats if key.startswith("retry/")]  # no timeout, no retry


@pytest.mark.system
def test_a_browser_timeout_is_a_transient_failure_and_the_page_is_closed(
    chromium, simulated_site, database_url, driver_starts
):
    # the shell fills in after 50 ms; a 10 ms wait times out in Playwright every time
    site = simulated_site(products=12, seed=1, js_only_rate=1.0)
    result = run_crawl(
        site.base_url,
        database_url,
        settings={
            "RENDERING_WAIT_TIMEOUT": 0.01,
            "RETRY_POLICIES": {"transient": {"attempts": 2, "base": 0.1, "cap": 0.1}},
        },
    )
    assert result.returncode == 0, result.output[-4000:]
    ((url, stage, failure_class, error, attempts),) = query(
        database_url, "select url, stage, failure_class, last_error, attempts from dead_letters"
    )
    assert (url, stage, failure_class, attempts) == (site.listing_url(1), "list", "transient", 2)
    assert error.startswith("TimeoutError: Page.wait_for_function: Timeout 10ms exceeded")
    stats = run_stats(database_url)
    assert stats["retry/class/transient"] == 1
    assert stats["playwright/page_count/closed"] == stats["playwright/page_count"] == 2
    # Playwright started once, at the first render (the wrapper sees starts: see above)
    assert driver_start_count(driver_starts) == 1
    assert result.output.count("Starting Playwright for the first page to render") == 1


# -- without a browser ------------------------------------------------------------


def test_without_a_browser_the_crawl_runs_and_shells_are_dead_lettered(
    simulated_site, database_url, tmp_path
):
    # seed 4: listing pages 3 and 12 are shells, and ~30 product pages
    site = simulated_site(products=150, seed=4, js_only_rate=0.2)
    truth = site.truth()
    missing_browser = tmp_path / "no-such-chromium"

    result = run_crawl(
        site.base_url, database_url, settings={"PLAYWRIGHT_BROWSER_PATH": str(missing_browser)}
    ).check()

    assert "No browser found" in result.output
    assert "scrapy-playwright" not in result.output  # the handler was never installed
    letters = check_only_shells_lost(site, truth, database_url)
    for _url, _stage, failure_class, error, attempts in letters:
        assert failure_class == "content"
        assert attempts == 1  # fetching it again would bring back the same shell
        assert error.endswith(
            "built by JavaScript; no browser to render it "
            "(install chromium or set PLAYWRIGHT_BROWSER_PATH)"
        )
    stats = run_stats(database_url)
    assert stats["render/unavailable"] == len(letters)
    assert "retry/count" not in stats


# -- with a broken browser -----------------------------------------------------------


def test_a_browser_that_does_not_start_is_a_config_failure_and_only_shells_are_lost(
    simulated_site, database_url, tmp_path
):
    # what a Chromium missing a library does: a line on stderr, exit status 1
    launches = tmp_path / "launches.log"
    browser = tmp_path / "chromium"
    browser.write_text(
        "#!/bin/sh\n"
        f"echo launched >> {shlex.quote(str(launches))}\n"
        "echo 'chromium: error while loading shared libraries: libnss3.so' >&2\n"
        "exit 1\n"
    )
    browser.chmod(0o755)
    site = simulated_site(products=150, seed=4, js_only_rate=0.2)  # as without a browser
    truth = site.truth()

    result = run_crawl(
        site.base_url, database_url, settings={"PLAYWRIGHT_BROWSER_PATH": str(browser)}
    ).check()

    assert f"Rendering JavaScript-only pages in {browser}" in result.output  # it looked fine
    letters = check_only_shells_lost(site, truth, database_url)
    for _url, _stage, failure_class, error, attempts in letters:
        assert (failure_class, attempts) == ("config", 1)  # not retried: a retry cannot mend it
        assert error == (
            f"BrowserLaunchError: the browser is broken: {browser} exited with code 1 at start: "
            "chromium: error while loading shared libraries: libnss3.so; "
            "repair or reinstall chromium, or set PLAYWRIGHT_BROWSER_PATH to a working one"
        )
    # started once: every later render failed at once with the same reason
    assert launches.read_text().splitlines() == ["launched"]
    assert result.output.count("Pages built by JavaScript are dead-lettered") == 1  # logged once
    stats = run_stats(database_url)
    assert stats["render/requested"] == len(letters)
    assert stats["dead_letters/config"] == len(letters)
    assert "retry/count" not in stats


# -- units ------------------------------------------------------------------------


def test_find_browser_prefers_the_setting_then_the_environment(tmp_path):
    browser = tmp_path / "chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    other = tmp_path / "other-chromium"
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    env = {"PLAYWRIGHT_BROWSER_PATH": str(other)}
    assert find_browser(Settings({"PLAYWRIGHT_BROWSER_PATH": str(browser)}), env) == str(browser)
    assert find_browser(Settings(), env) == str(other)
    # a configured path that does not exist means no browser, never a fallback
    missing = {"PLAYWRIGHT_BROWSER_PATH": str(tmp_path / "missing")}
    assert find_browser(Settings(missing), {}) is None
    assert find_browser(Settings(), missing) is None
    browser.chmod(0o644)  # not executable
    assert find_browser(Settings({"PLAYWRIGHT_BROWSER_PATH": str(browser)}), {}) is None


def test_find_browser_falls_back_to_the_debian_path(tmp_path, monkeypatch):
    debian = tmp_path / "usr-bin-chromium"
    debian.write_text("#!/bin/sh\n")
    debian.chmod(0o755)
    monkeypatch.setattr(rendering_browser, "DEFAULT_BROWSER_PATHS", (str(debian),))
    assert find_browser(Settings(), {}) == str(debian)
    assert find_browser(Settings({"PLAYWRIGHT_BROWSER_PATH": ""}), {}) == str(debian)
    debian.chmod(0o644)  # there, but not executable
    assert find_browser(Settings(), {}) is None
    debian.unlink()
    assert find_browser(Settings(), {}) is None


def test_a_browser_that_does_not_start_is_config_and_other_playwright_errors_transient():
    assert classify_exception(BrowserLaunchError("the browser is broken")) is FailureClass.CONFIG
    timeout = PlaywrightTimeoutError("Page.wait_for_function: Timeout 10ms exceeded.")
    assert classify_exception(timeout) is FailureClass.TRANSIENT
    refused = PlaywrightError("Page.goto: net::ERR_CONNECTION_REFUSED at http://site/")
    assert classify_exception(refused) is FailureClass.TRANSIENT


def _addon_settings(**values) -> Settings:
    settings = Settings()
    settings.setmodule("matter_crawler.settings", priority="project")
    settings.setdict(values, priority="cmdline")
    Rendering().update_settings(settings)
    return settings


def test_the_addon_installs_the_handler_only_with_a_browser(tmp_path):
    browser = tmp_path / "chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    settings = _addon_settings(
        PLAYWRIGHT_BROWSER_PATH=str(browser), PLAYWRIGHT_MAX_PAGES_PER_CONTEXT=2
    )
    handlers = settings.getwithbase("DOWNLOAD_HANDLERS")
    assert handlers["http"] == handlers["https"] == HANDLER_PATH
    assert settings["PLAYWRIGHT_BROWSER_PROVIDER"] == PROVIDER_PATH  # starts Playwright lazily
    assert rendering_available(settings)
    launch = settings.getdict("PLAYWRIGHT_LAUNCH_OPTIONS")
    assert launch["executable_path"] == str(browser)
    assert launch["headless"] is True
    assert "--disable-background-networking" in launch["args"]
    assert settings.getint("PLAYWRIGHT_MAX_CONTEXTS") == 1
    assert settings.getint("PLAYWRIGHT_MAX_PAGES_PER_CONTEXT") == 2  # -s wins over the add-on
    assert settings.getfloat("PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT") == 30_000

    without = _addon_settings(PLAYWRIGHT_BROWSER_PATH=str(tmp_path / "missing"))
    assert not rendering_available(without)
    assert "PLAYWRIGHT_LAUNCH_OPTIONS" not in without
    off = _addon_settings(PLAYWRIGHT_BROWSER_PATH=str(browser), RENDERING_ENABLED=False)
    assert not rendering_available(off)
    with pytest.raises(ValueError, match="RENDERING_FORCE is on but there is no browser"):
        _addon_settings(PLAYWRIGHT_BROWSER_PATH=str(tmp_path / "missing"), RENDERING_FORCE=True)


def test_render_or_explain(tmp_path):
    request = Request("http://site/csa_product/x/", meta={"stage": "detail", "retry_times": 1})
    reason = "empty shell: no detail markup, the page is built by JavaScript"

    crawler = rendering_crawler(DOWNLOAD_HANDLERS={"http": HANDLER_PATH})
    crawler.stats.open_spider()
    rendered = render_or_explain(crawler, request, reason)
    assert isinstance(rendered, Request)
    assert rendered.dont_filter
    assert rendered.meta["playwright"] is True
    assert rendered.meta["retry_times"] == 1
    assert "playwright_include_page" not in rendered.meta  # scrapy-playwright closes the page
    (wait,) = rendered.meta["playwright_page_methods"]
    assert wait.method == "wait_for_function"
    assert wait.kwargs["arg"] == "div.entry-product-details, table.product-certificates-table"
    assert wait.kwargs["timeout"] == 15_000  # RENDERING_WAIT_TIMEOUT, in milliseconds
    assert crawler.stats.get_value("render/requested/detail") == 1
    assert render_or_explain(crawler, rendered, reason) == f"{reason}, even rendered in the browser"

    assert "retry_policies" not in request.meta  # a page to render keeps its content policy

    plain = rendering_crawler()
    plain.stats.open_spider()
    assert render_or_explain(plain, request, reason) == f"{reason}; {NO_BROWSER}"
    # nothing can render it: the content policy is capped, the retry gives up at once
    assert request.meta["retry_policies"] == {"content": {"attempts": 1}}
    tuned = Request(request.url, meta={"retry_policies": {"content": {"base": 0.5}}})
    render_or_explain(plain, tuned, reason)
    assert tuned.meta["retry_policies"] == {"content": {"base": 0.5, "attempts": 1}}
    off = rendering_crawler(RENDERING_ENABLED=False)
    off.stats.open_spider()
    assert render_or_explain(off, request, reason).endswith(
        "rendering is off (RENDERING_ENABLED=False)"
    )


def test_a_rendered_request_survives_a_pause_in_jobdir():
    """JOBDIR's disk queue pickles requests: the page methods must come back intact."""
    crawler = rendering_crawler(DOWNLOAD_HANDLERS={"http": HANDLER_PATH})
    crawler.stats.open_spider()
    spider = MatterProductsSpider()
    request = Request(
        "http://site/csa_product/x/", callback=spider.parse_detail, meta={"stage": "detail"}
    )
    rendered = render_or_explain(crawler, request, "empty shell")
    restored = request_from_dict(
        pickle.loads(pickle.dumps(rendered.to_dict(spider=spider))), spider=spider
    )
    (wait,) = restored.meta["playwright_page_methods"]
    assert (wait.method, wait.args, wait.kwargs) == (
        "wait_for_function",
        rendered.meta["playwright_page_methods"][0].args,
        rendered.meta["playwright_page_methods"][0].kwargs,
    )


def test_a_shell_carrying_its_markup_in_a_script_is_recognised():
    """The simulated site's shells (like many real ones) hold the page's markup as a JS string."""
    from matter_crawler.parsing.content import page_problem

    markup = '<div class=\\"entry-product-details\\"><ul><li class=\\"item\\"></li></ul></div>'
    shell = (
        "<!DOCTYPE html><html><head><title>Smart Plug - CSA-IOT</title></head><body>"
        '<main><div id="product-root"></div></main>'
        f'<script id="product-root-loader">var markup = "{markup}";</script></body></html>'
    ).encode()
    problem = page_problem(shell, "detail")
    assert problem is not None
    assert problem.needs_javascript
    rendered = shell.replace(b'<div id="product-root"></div>', markup.replace("\\", "").encode())
    assert page_problem(rendered, "detail") is None


def test_skipped_resources():
    class FakeRequest:  # the one attribute skip_resource reads
        def __init__(self, resource_type: str) -> None:
            self.resource_type = resource_type

    assert skip_resource(FakeRequest("stylesheet"))
    assert skip_resource(FakeRequest("image"))
    assert not skip_resource(FakeRequest("script"))  # scripts build the page
    assert not skip_resource(FakeRequest("document"))
