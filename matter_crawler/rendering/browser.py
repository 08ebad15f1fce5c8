"""The browser itself: finding Chromium, how it is started, and why it would not start.

Nothing here imports Playwright: the add-on, the classifier and a crawl without
rendering read these without loading scrapy-playwright (see the package doc).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import socket
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.async_api import Error as PlaywrightError
    from scrapy.settings import BaseSettings

BROWSER_PATH_SETTING = "PLAYWRIGHT_BROWSER_PATH"
#: Where Debian's ``chromium`` package puts the browser (``scripts/setup.sh`` installs it).
DEFAULT_BROWSER_PATHS = ("/usr/bin/chromium",)
NO_BROWSER = f"no browser to render it (install chromium or set {BROWSER_PATH_SETTING})"
BROKEN_BROWSER_FIX = f"repair or reinstall chromium, or set {BROWSER_PATH_SETTING} to a working one"
#: A failed launch's message: the browser's own stderr lines, and how its process ended.
BROWSER_STDERR_LINE = re.compile(r"^(?:\s*- )?\[pid=\d+\]\[err\] (.*\S)", re.MULTILINE)
BROWSER_EXIT = re.compile(r"<process did exit: exitCode=(-?\d+|null), signal=(\w+)>")
#: What Chromium says when asked for its sandbox as root, and what to do about it.
SANDBOX_AS_ROOT = "Running as root without --no-sandbox is not supported"
SANDBOX_AS_ROOT_FIX = (
    "Chromium's sandbox cannot run as root: run the crawl as a normal user, or set "
    "RENDERING_SANDBOX=auto (off as root)"
)
#: How much of the browser's stderr a dead-letter reason quotes.
BROWSER_STDERR_SHOWN = (3, 300)  # lines, characters

#: Keep Chromium off the network it would otherwise try at start (updates, sync,
#: field trials): here every such connection is refused, and elsewhere it is noise.
#: Playwright passes some of these itself; listing them says what we rely on.
CHROMIUM_ARGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
)
#: WebRTC may not send UDP outside the proxy (which refuses everything): no STUN to loopback.
CONFINED_CHROMIUM_ARGS = ("--webrtc-ip-handling-policy=disable_non_proxied_udp",)


class BrowserLaunchError(Exception):
    """The browser did not start: missing libraries, a broken or missing executable.

    Retrying cannot mend it, so the failure class is ``config``
    (:mod:`matter_crawler.middlewares.classify`): the page is dead-lettered at
    once, and the message, which becomes the dead-letter reason, says so.
    """


def find_browser(settings: BaseSettings, environ: Mapping[str, str] | None = None) -> str | None:
    """The Chromium executable to use, or None.

    ``PLAYWRIGHT_BROWSER_PATH`` (setting, then environment variable) wins when
    set, even when it names nothing: pointing it at a missing path is how a
    crawl says "no browser" on a machine that has one.
    """
    environ = os.environ if environ is None else environ
    configured = settings.get(BROWSER_PATH_SETTING) or environ.get(BROWSER_PATH_SETTING)
    candidates = (configured,) if configured else DEFAULT_BROWSER_PATHS
    for candidate in candidates:
        path = shutil.which(candidate) if os.sep not in candidate else candidate
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def launch_failure(executable: str, error: PlaywrightError) -> str:
    """Why the browser did not start, briefly: how its process ended and what it printed."""
    message = error.message
    exited = BROWSER_EXIT.search(message)
    if exited is None:  # e.g. "Failed to launch chromium because executable doesn't exist at ..."
        detail = message.split("\n", 1)[0].removeprefix("BrowserType.launch: ")
    elif exited[1] == "null":
        detail = f"{executable} was killed by {exited[2]} at start"
    else:
        detail = f"{executable} exited with code {exited[1]} at start"
    browser_log = message.split("\nCall log:", 1)[0]  # the call log repeats the browser's lines
    lines, characters = BROWSER_STDERR_SHOWN
    # (when Playwright summarises the failure instead, the browser's lines are in the call log)
    found = BROWSER_STDERR_LINE.findall(browser_log) or BROWSER_STDERR_LINE.findall(message)
    printed = list(dict.fromkeys(found))[:lines]
    if printed:
        detail += ": " + " | ".join(printed)[:characters]
    if SANDBOX_AS_ROOT in message:
        return f"the browser cannot start: {detail}; {SANDBOX_AS_ROOT_FIX}"
    return f"the browser is broken: {detail}; {BROKEN_BROWSER_FIX}"


# -- confinement of the process: environment, sandbox, network underneath the routes -------


def browser_environment(names: Iterable[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` named in ``names`` (``LC_*``: a prefix): nothing else."""
    patterns = [name.strip() for name in names if name.strip()]
    return {
        name: value
        for name, value in environ.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    }


def sandbox_wanted(setting: Any, euid: int) -> bool:
    """``RENDERING_SANDBOX``: ``auto`` means on, except as root (Chromium refuses it there)."""
    if str(setting).strip().lower() == "auto":
        return euid != 0
    return str(setting).strip().lower() in ("1", "true", "yes", "on")


_refusing_socket: socket.socket | None = None


def refusing_port() -> int:
    """A loopback port that refuses every connection, for as long as this process runs.

    The socket is bound but never listens: no other program can listen there,
    and a connection attempt gets a reset at once.
    """
    global _refusing_socket  # noqa: PLW0603 - one per process, kept open on purpose
    if _refusing_socket is None:
        _refusing_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        _refusing_socket.bind(("127.0.0.1", 0))
    return _refusing_socket.getsockname()[1]


def proxy_args(origins: Iterable[str]) -> list[str]:
    """Chromium flags: every host but ``origins`` (loopback too) through a proxy that refuses."""
    bypass = ["<-loopback>"]  # loopback is not exempt from the proxy
    for origin in origins:
        bypass.append(origin.split("://", 1)[1])  # host:port
    return [
        f"--proxy-server=http://127.0.0.1:{refusing_port()}",
        f"--proxy-bypass-list={';'.join(bypass)}",
    ]
