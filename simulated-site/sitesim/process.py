"""Start and drive the simulated site from tests and benchmarks (stdlib only).

``SimulatedSite`` runs ``python -m sitesim --port 0`` as a child
process in its own process group, learns the port from the banner line, talks
to the ``/__sim__/`` API with urllib, and stops the child by its PID (SIGTERM,
then SIGKILL), also when the block using it raises, so no test leaves a server
behind. It imports nothing from the server, so it is cheap to import anywhere.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

BANNER = "matter-crawler sitesim listening on "
LISTING_QUERY = (
    "p_keywords=&p_type%5B0%5D=14&p_program_type%5B0%5D=1049"
    "&p_certificate=&p_family=&p_firmware_ver="
)


class SiteStartError(RuntimeError):
    """The site did not start (bad option, port in use, timeout...)."""


def _cli_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _child_env() -> dict[str, str]:
    """The environment for the server: ours, with this package importable.

    The child runs ``-m sitesim``; whether or not the project is
    installed, it must import the same code as this process, whatever the
    working directory.
    """
    root = str(Path(__file__).resolve().parents[1])  # the directory that holds sitesim
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
    return env


class SimulatedSite:
    """A simulated catalogue site running in a child process.

    ``SimulatedSite(products=600, seed=1, error_rate=0.1, outage="5,10")``:
    keyword options are the CLI options with underscores (lists and tuples are
    joined with commas). ``SimulatedSite(cassettes=DIR)`` serves a recording
    made by ``scrapy record-site`` instead (``products`` is then unused). Use it
    as a context manager, or call ``start()`` and ``stop()``.
    """

    def __init__(
        self,
        products: int = 600,
        seed: int = 1,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 30.0,
        cassettes: str | Path | None = None,
        **fault_options: Any,
    ) -> None:
        self.products = products
        self.seed = seed
        # serve a recording (``scrapy record-site``) instead of a generated catalogue
        self.cassettes = cassettes
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.options = fault_options
        self.base_url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None

    # --- lifecycle ------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The server process's PID (only while running)."""
        if self._process is None:
            raise RuntimeError("the site is not running")
        return self._process.pid

    def command(self) -> list[str]:
        """The command line that starts the server."""
        command = [
            sys.executable, "-m", "sitesim",
            "--host", self.host, "--port", str(self.port),
            "--products", str(self.products), "--seed", str(self.seed),
        ]  # fmt: skip
        if self.cassettes is not None:
            command += ["--cassettes", str(self.cassettes)]
        for name, value in self.options.items():
            flag = f"--{name.replace('_', '-')}"
            if value is True:  # a switch such as hostile=True
                command.append(flag)
            elif value is not False:
                command += [flag, _cli_value(value)]
        return command

    def start(self) -> Self:
        """Start the server and wait for its banner line."""
        if self._process is not None:
            raise RuntimeError("the site is already running")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._process = process = subprocess.Popen(
            self.command(),
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,  # own process group: stopped by stop(), not by a stray Ctrl-C
        )
        atexit.register(self.stop)
        try:
            line = self._read_banner(process)
        except BaseException:
            self.stop()
            raise
        self.base_url = line[len(BANNER) :].strip()
        return self

    def _read_banner(self, process: subprocess.Popen[bytes]) -> str:
        stdout = process.stdout
        if stdout is None:  # pragma: no cover - Popen(stdout=PIPE) always sets it
            raise SiteStartError("no stdout pipe to the site")
        deadline = time.monotonic() + self.startup_timeout
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SiteStartError(
                        f"the site did not start within {self.startup_timeout:g} s"
                        f"{self._stderr_text()}"
                    )
                if selector.select(remaining):
                    chunk = os.read(stdout.fileno(), 4096)
                    if not chunk:
                        process.wait(timeout=5)
                        raise SiteStartError(
                            f"the site exited with status {process.returncode}{self._stderr_text()}"
                        )
                    buffer += chunk
        line = buffer.split(b"\n", 1)[0].decode()
        if not line.startswith(BANNER):
            raise SiteStartError(f"unexpected first line {line!r}{self._stderr_text()}")
        return line

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace").strip()
        return f"; stderr:\n{text}" if text else ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the server by PID, wait, SIGKILL if it does not exit."""
        process, self._process = self._process, None
        atexit.unregister(self.stop)
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=timeout)
            if process.stdout is not None:
                process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- URLs -----------------------------------------------------------------

    def url(self, path: str) -> str:
        """Absolute URL of a path on the site (e.g. a truth record's ``url``)."""
        return f"{self.base_url}{path}"

    def listing_url(self, page: int = 1) -> str:
        """Absolute URL of listing page ``page`` in its canonical form."""
        if page <= 1:
            return f"{self.base_url}/csa-iot_products/?{LISTING_QUERY}"
        return f"{self.base_url}/csa-iot_products/page/{page}/?{LISTING_QUERY}"

    # --- control API ----------------------------------------------------------

    def _api(self, path: str, body: dict[str, Any] | None = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url(path),
            data=data,
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")
            raise ValueError(f"{path}: HTTP {error.code}: {detail}") from None

    def truth(self) -> list[dict[str, Any]]:
        """The current ground truth, newest first."""
        return [json.loads(line) for line in self._api("/__sim__/truth").splitlines() if line]

    def stats(self) -> dict[str, Any]:
        """The server's account since start or the last reset."""
        return json.loads(self._api("/__sim__/stats"))

    def reset_stats(self) -> dict[str, Any]:
        """Zero the account, the request log and the per-path fault sequences."""
        return json.loads(self._api("/__sim__/stats/reset", {}))

    def requests_log(self, since: float | None = None) -> list[dict[str, Any]]:
        """The request log, optionally only requests that arrived at or after ``since``."""
        query = "" if since is None else "?" + urllib.parse.urlencode({"since": repr(since)})
        return json.loads(self._api(f"/__sim__/requests{query}"))

    def mutate(
        self,
        add: int = 0,
        remove: int = 0,
        change: int = 0,
        *,
        after_requests: int | None = None,
        after_list_page: int | None = None,
    ) -> dict[str, Any]:
        """Add, remove and change products; returns the affected paths.

        With ``after_requests`` or ``after_list_page`` the mutation waits for that
        moment of a crawl; the answer is then ``{"scheduled": {...}}`` and what it
        did is in :meth:`mutations` once applied.
        """
        body: dict[str, Any] = {"add": add, "remove": remove, "change": change}
        if after_requests is not None:
            body["after_requests"] = after_requests
        if after_list_page is not None:
            body["after_list_page"] = after_list_page
        return json.loads(self._api("/__sim__/mutate", body))

    def mutations(self) -> dict[str, Any]:
        """Scheduled mutations: ``{"pending": [...], "applied": [...]}``."""
        return json.loads(self._api("/__sim__/mutations"))

    def removed(self) -> list[dict[str, Any]]:
        """Truth records of the products mutations removed (as when removed)."""
        return [json.loads(line) for line in self._api("/__sim__/removed").splitlines() if line]

    def crosscheck(self) -> dict[str, Any]:
        """The simulated DCL's expected cross-check findings (``dcl=True``)."""
        return json.loads(self._api("/__sim__/crosscheck"))

    def dcl_truth(self) -> dict[str, Any]:
        """Every record of the simulated DCL as served, by kind (``dcl=True``)."""
        return json.loads(self._api("/__sim__/dcl"))

    def hostile(self) -> list[dict[str, Any]]:
        """The hostile products (``hostile=True``): path, kind and the expected outcome."""
        return json.loads(self._api("/__sim__/hostile"))

    def faults(self) -> dict[str, Any]:
        """The fault and presentation options in force."""
        return json.loads(self._api("/__sim__/faults"))

    def set_faults(self, **options: Any) -> dict[str, Any]:
        """Change options at runtime (CLI names with underscores); returns all of them."""
        return json.loads(self._api("/__sim__/faults", options))
