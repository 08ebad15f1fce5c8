"""Deploying to a real scrapyd, scheduling, cancelling and resuming crawls.

scrapyd (installed in the virtualenv with the dev extra) runs from a temporary
directory with the example ``deploy/scrapyd.conf``, its port and directories
(eggs, logs, dbs, jobs) moved under the temporary directory, and basic auth from
``SCRAPYD_USERNAME`` / ``SCRAPYD_PASSWORD`` in its environment, as
docs/scrapyd.md says to run it. The project is deployed with ``scrapyd-deploy`` through the ``env`` target of
``scrapy.cfg``, whose URL and credentials come from the environment. Jobs run
with scrapyd's interpreter from the deployed egg, as in production.
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import json
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..helpers import (
    PROJECT_ROOT,
    crawl_runs,
    database_differences,
    free_port,
    query,
    scrapy_control,
    sqlite_url,
    stop_process,
    wait_for,
)

# every test here builds the egg in the project's build/ folder (scrapyd-deploy's own
# place): two pytest-xdist workers building at once break each other's build
pytestmark = pytest.mark.xdist_group(__name__)

BIN = Path(sys.executable).parent
PROJECT = "matter_crawler"
SPIDER = "matter_products"
DATA_SUFFIXES = {".csv", ".html", ".js", ".json", ".css", ".mako"}  # setup.py's package_data
EXAMPLE_CONF = PROJECT_ROOT / "deploy" / "scrapyd.conf"


def example_conf() -> configparser.ConfigParser:
    conf = configparser.ConfigParser()
    conf.read_string(EXAMPLE_CONF.read_text(encoding="utf-8"))
    return conf


@dataclass
class Scrapyd:
    url: str
    username: str
    password: str
    directory: Path
    process: subprocess.Popen[bytes]

    def api(self, endpoint: str, data: dict[str, Any] | list[tuple[str, str]] | None = None):
        """GET (no data) or POST (form data) a scrapyd endpoint with basic auth; the JSON answer."""
        body = urllib.parse.urlencode(data, doseq=True).encode() if data is not None else None
        request = urllib.request.Request(f"{self.url}/{endpoint}", data=body)
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "ok", answer
        return answer

    def deploy_environment(self) -> dict[str, str]:
        """What scrapy.cfg's ``env`` target reads."""
        return {
            **os.environ,
            "SCRAPYD_URL": self.url,
            "SCRAPYD_USERNAME": self.username,
            "SCRAPYD_PASSWORD": self.password,
            "HOME": str(self.directory),  # no ~/.netrc or ~/.scrapy.cfg of the machine's
        }

    def schedule(self, jobid: str, settings: dict[str, str], args: dict[str, str]) -> str:
        form = [("project", PROJECT), ("spider", SPIDER), ("jobid", jobid)]
        form += [("setting", f"{name}={value}") for name, value in settings.items()]
        form += list(args.items())
        return self.api("schedule.json", form)["jobid"]

    def jobs(self) -> dict[str, list[dict[str, Any]]]:
        return self.api(f"listjobs.json?project={PROJECT}")

    def finished(self, jobid: str) -> list[dict[str, Any]]:
        return [job for job in self.jobs()["finished"] if job["id"] == jobid]

    def running(self, jobid: str) -> bool:
        return any(job["id"] == jobid for job in self.jobs()["running"])

    def log(self, jobid: str) -> str:
        path = self.directory / "logs" / PROJECT / SPIDER / f"{jobid}.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


@pytest.fixture
def scrapyd(tmp_path) -> Iterator[Scrapyd]:
    """A real scrapyd on a free loopback port, with basic auth; stopped by PID after."""
    directory = tmp_path / "scrapyd"
    directory.mkdir()
    port = free_port()
    password = secrets.token_urlsafe(16)
    conf = example_conf()
    conf["scrapyd"].update(
        {
            "http_port": str(port),
            "eggs_dir": str(directory / "eggs"),
            "logs_dir": str(directory / "logs"),
            "dbs_dir": str(directory / "dbs"),
            "jobs_dir": str(directory / "jobs"),
            "poll_interval": "0.5",  # jobs start sooner than the example's 2 s
        }
    )
    with (directory / "scrapyd.conf").open("w", encoding="utf-8") as out:
        conf.write(out)
    # The credentials are given here, never inherited: SCRAPYD_* variables of the
    # user's shell (another password, another port) must not reach this scrapyd.
    inherited = {
        name: value for name, value in os.environ.items() if not name.startswith("SCRAPYD_")
    }
    log = (directory / "scrapyd.out").open("wb")
    process = subprocess.Popen(
        [str(BIN / "scrapyd")],
        cwd=directory,  # scrapyd reads ./scrapyd.conf
        env={
            **inherited,
            "HOME": str(directory),  # and ~/.scrapyd.conf, which must not exist
            "SCRAPYD_USERNAME": "operator",
            "SCRAPYD_PASSWORD": password,
        },
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, with the crawls it starts
    )
    server = Scrapyd(f"http://127.0.0.1:{port}", "operator", password, directory, process)

    def answering() -> bool:
        assert process.poll() is None, (directory / "scrapyd.out").read_text()
        try:
            server.api("daemonstatus.json")
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    try:
        wait_for(answering, timeout=30, message="scrapyd to answer")
        yield server
    finally:
        stop_process(process, signal.SIGTERM, wait=20)
        # a crawl scrapyd started and left behind (after a failure) goes too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def deploy(server: Scrapyd, version: str) -> dict[str, Any]:
    """``scrapyd-deploy env``, as an operator runs it from the project root."""
    build_existed = (PROJECT_ROOT / "build").exists()
    try:
        completed = subprocess.run(
            [str(BIN / "scrapyd-deploy"), "env", "--version", version],
            cwd=PROJECT_ROOT,
            env=server.deploy_environment(),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        if not build_existed:  # setuptools' build/ is ours; the gitignore covers it anyway
            subprocess.run(["rm", "-rf", str(PROJECT_ROOT / "build")], check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def wait_finished(server: Scrapyd, jobid: str, count: int = 1, timeout: float = 180) -> None:
    def done() -> bool:
        return len(server.finished(jobid)) >= count

    try:
        wait_for(done, timeout=timeout, interval=0.5, message=f"job {jobid} to finish")
    except AssertionError:
        raise AssertionError(f"job {jobid} did not finish:\n{server.log(jobid)[-5000:]}") from None


# -- the egg ----------------------------------------------------------------------


def test_the_egg_carries_the_package_and_its_data(tmp_path):
    egg = tmp_path / "matter_crawler.egg"
    build_existed = (PROJECT_ROOT / "build").exists()
    try:
        subprocess.run(
            [str(BIN / "scrapyd-deploy"), "--build-egg", str(egg)],
            cwd=PROJECT_ROOT,
            # --build-egg leaves its scrapydeploy-* build folder behind (scrapyd-client 2.0.3):
            # in the test's own folder it goes with the test's files
            env={**os.environ, "TMPDIR": str(tmp_path)},
            capture_output=True,
            check=True,
            timeout=180,
        )
    finally:
        if not build_existed:
            subprocess.run(["rm", "-rf", str(PROJECT_ROOT / "build")], check=False)

    names = set(zipfile.ZipFile(egg).namelist())
    package = PROJECT_ROOT / "matter_crawler"
    sources = [p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    data_files = [p for p in sources if p.suffix in DATA_SUFFIXES]
    assert data_files  # at least the live page's HTML, script and style
    for path in sources:
        if path.suffix == ".py" or path.suffix in DATA_SUFFIXES:
            assert str(path.relative_to(PROJECT_ROOT)) in names, f"{path} is not in the egg"
    assert "EGG-INFO/entry_points.txt" in names
    # the simulated site is a distribution of its own: a job never carries it
    assert not [name for name in names if "sitesim" in name]

    # From the egg alone (the editable install hidden): every module imports, and
    # pkgutil.get_data reads every data file, as scrapyd's runner will.
    check = textwrap.dedent(
        f"""\
        import pkgutil, sys
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
        sys.path_hooks[:] = [h for h in sys.path_hooks if "editable" not in repr(h)]
        sys.path.insert(0, {str(egg)!r})
        from scrapy.utils.misc import walk_modules
        modules = walk_modules("matter_crawler")
        outside = [m.__name__ for m in modules if not m.__file__.startswith({str(egg)!r})]
        assert not outside, outside
        for name in {[str(p.relative_to(package)) for p in data_files]!r}:
            directory, _, filename = name.rpartition("/")
            parts = directory.split("/")
            for cut in range(len(parts), -1, -1):  # the deepest package holding the file
                owner = ".".join(["matter_crawler", *parts[:cut]])
                if owner in sys.modules:
                    break
            relative = "/".join([*parts[cut:], filename])
            assert pkgutil.get_data(owner, relative), name
        # the schema revisions run from the zipped egg (copied out for Alembic)
        from matter_crawler.storage import Database
        database = Database("sqlite:///" + {str(tmp_path / "egg.sqlite3")!r})
        assert database.schema_change.before == "empty", database.schema_change
        database.close()
        print(len(modules))
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert int(completed.stdout) >= 30


def test_the_crawler_reads_package_data_with_pkgutil_not_file_paths():
    """``__file__`` paths break inside a zipped egg; pkgutil.get_data does not."""
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for path in (PROJECT_ROOT / "matter_crawler").rglob("*.py")
        if "__file__" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


# -- scrapyd ----------------------------------------------------------------------


def test_the_example_conf_holds_no_credentials():
    """Credentials come from scrapyd's environment (SCRAPYD_USERNAME / SCRAPYD_PASSWORD)."""
    options = example_conf()["scrapyd"]
    assert "username" not in options
    assert "password" not in options
    assert options["bind_address"] == "127.0.0.1"


def test_basic_auth_is_required(scrapyd):
    # the conf has no credentials (above): the ones in scrapyd's environment are enforced
    assert "password" not in (scrapyd.directory / "scrapyd.conf").read_text()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{scrapyd.url}/daemonstatus.json", timeout=10)
    assert refused.value.code == 401
    wrong = Scrapyd(scrapyd.url, "operator", "not-the-password", scrapyd.directory, scrapyd.process)
    with pytest.raises(urllib.error.HTTPError) as refused:
        wrong.api("daemonstatus.json")
    assert refused.value.code == 401
    assert scrapyd.api("daemonstatus.json")["running"] == 0


@pytest.mark.slow
def test_deploy_schedule_cancel_and_resume(scrapyd, simulated_site, tmp_path):
    answer = deploy(scrapyd, version="1")
    # the egg holds both spiders: the catalogue's and the ledger's
    assert (answer["status"], answer["project"], answer["spiders"]) == ("ok", PROJECT, 2)
    assert scrapyd.api(f"listspiders.json?project={PROJECT}")["spiders"] == ["dcl", SPIDER]
    assert scrapyd.api(f"listversions.json?project={PROJECT}")["versions"] == ["1"]

    # a whole crawl, with settings and a spider argument
    site = simulated_site(products=120, seed=11)
    database = sqlite_url(tmp_path / "first.sqlite3")
    settings = {"CSA_BASE_URL": site.base_url, "DATABASE_URL": database, "CRAWL_PROFILE": "fast"}
    scrapyd.schedule("first", settings, {"mode": "full", "end_page": "10"})
    wait_finished(scrapyd, "first")
    assert database_differences(database, site.truth()) == []
    # end_page reached the spider: without it, page 11 is fetched to confirm the end
    assert site.stats()["by_kind"]["list"] == 10
    (run,) = crawl_runs(database)
    assert (run["job_id"], run["mode"], run["status"]) == ("first", "full", "finished")
    assert run["settings"]["CSA_BASE_URL"] == site.base_url
    assert (scrapyd.directory / "jobs" / PROJECT / SPIDER / "first").is_dir()  # its JOBDIR

    # a slow crawl, cancelled mid-way (scrapyd sends SIGINT: Scrapy stops gracefully) ...
    # 250 ms a page, 4 at a time: when the cancel is sent, some 230 pages (about 14 s) are
    # left, far more than a cancel takes on a loaded machine. The resume runs at 10 ms a page.
    slow = simulated_site(products=240, seed=12, latency_ms=250)
    truth = slow.truth()
    database = sqlite_url(tmp_path / "second.sqlite3")
    settings = {
        "CSA_BASE_URL": slow.base_url,
        "DATABASE_URL": database,
        "CRAWL_PROFILE": "fast",
        "CONCURRENT_REQUESTS": "4",
        "CONCURRENT_REQUESTS_PER_DOMAIN": "4",
        "ADAPTIVE_MAX_CONCURRENCY": "4",
        "STORE_FLUSH_INTERVAL": "0.5",
    }
    scrapyd.schedule("second", settings, {})
    wait_for(
        lambda: slow.stats()["by_kind"].get("detail", 0) >= 12,
        timeout=120,
        message="the second crawl to fetch product pages",
    )
    assert scrapyd.running("second")
    assert scrapyd.api("cancel.json", {"project": PROJECT, "job": "second"})["prevstate"] == (
        "running"
    )
    wait_finished(scrapyd, "second")
    stopped = crawl_runs(database)
    assert [(r["status"], r["finish_reason"]) for r in stopped] == [("stopped", "shutdown")]
    stored_before = query(database, "select count(*) from products")[0][0]
    assert 0 < stored_before < len(truth)
    fetched_before = slow.stats()["by_kind"]["detail"]
    first_log = scrapyd.log("second")
    assert "Received SIGINT, shutting down gracefully" in first_log

    # ... and rescheduled with the same job id: the same JOBDIR, so it resumes
    slow.set_faults(latency_ms=10)
    scrapyd.schedule("second", settings, {})
    wait_finished(scrapyd, "second", count=2)
    assert database_differences(database, truth) == []
    assert query(database, "select count(*), count(distinct url) from products") == [
        (len(truth), len(truth))
    ]
    (run,) = crawl_runs(database)  # the same run, resumed
    assert (run["status"], run["sessions"], run["job_id"]) == ("finished", 2, "second")
    assert "Resuming a full crawl" in scrapyd.log("second")
    # the resumed session fetched what was left, not everything again
    fetched_after = slow.stats()["by_kind"]["detail"] - fetched_before
    assert fetched_after <= len(truth) - stored_before


@pytest.mark.slow
def test_a_scrapyd_job_is_controlled_through_its_monitoring_server(
    scrapyd, simulated_site, tmp_path
):
    """Its address is in the job's log, its token in the job's JOBDIR; scrapy control
    pauses, resumes and stops it (docs/scrapyd.md, "Control a running job")."""
    deploy(scrapyd, version="1")
    site = simulated_site(products=600, seed=13, latency_ms=100)
    database = sqlite_url(tmp_path / "controlled.sqlite3")
    settings = {
        "CSA_BASE_URL": site.base_url,
        "DATABASE_URL": database,
        "CRAWL_PROFILE": "fast",
        "CONCURRENT_REQUESTS": "2",
        "MONITORING_PORT": "0",
    }
    scrapyd.schedule("controlled", settings, {})
    address = wait_for(
        lambda: re.search(
            r"Monitoring server on (http://127\.0\.0\.1:\d+/)", scrapyd.log("controlled")
        ),
        timeout=120,
        message="the job's monitoring address",
    )
    url = address.group(1)
    token_file = (
        scrapyd.directory
        / "jobs"
        / PROJECT
        / SPIDER
        / "controlled"
        / "matter_crawler.control-token"
    )
    wait_for(token_file.exists, message="the job's token file")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()

    assert scrapy_control(url, "pause")["state"] == "paused"
    since = time.time()
    time.sleep(2.0)
    assert site.requests_log(since=since) == []
    assert scrapyd.running("controlled")
    assert scrapy_control(url, "resume")["state"] == "running"
    wait_for(lambda: site.requests_log(since=since), timeout=30, message="requests again")
    assert scrapy_control(url, "stop")["state"] == "stopping"
    wait_finished(scrapyd, "controlled")
    (run,) = crawl_runs(database)
    assert (run["status"], run["finish_reason"], run["job_id"]) == (
        "stopped",
        "shutdown",
        "controlled",
    )
    assert not token_file.exists()
    log = scrapyd.log("controlled")
    assert "Crawl paused (live control)" in log
    assert token not in log
