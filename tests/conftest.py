"""Shared fixtures: the simulated site in a child process, per-test databases."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest

from matter_crawler.sitesim.process import SimulatedSite

from .helpers import sqlite_url

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_executable(name: str, why: str) -> str:
    """The path of a system program a test needs: skip without it, but fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({why}); `make setup` installs it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def simulated_site() -> Iterator[Callable[..., SimulatedSite]]:
    """Start simulated sites (``simulated_site(products=600, seed=1, **faults)``); all stopped after."""
    started: list[SimulatedSite] = []

    def start(**options) -> SimulatedSite:
        site = SimulatedSite(**options)
        site.start()
        started.append(site)
        return site

    yield start
    for site in started:
        site.stop()


@pytest.fixture
def database_url(tmp_path) -> str:
    return sqlite_url(tmp_path / "matter.sqlite3")
