"""Shared fixtures: the simulated site in a child process, per-test databases.

Databases: ``database_url`` is a fresh SQLite file, or, for a test marked
``both_databases`` (a module's ``pytestmark``), a fresh SQLite file and then a fresh
database on a real PostgreSQL server: such a test runs once per backend
(``[sqlite]``, ``[postgresql]``; ``-m "not postgresql"`` leaves the second out).
The server (tests/postgresql.py) starts once per session, on the first test that
needs it; each test gets its own database, dropped after it.

On both backends: test_storage.py, the batch store of test_pipelines.py, the run
record's product counts (test_run_record.py), test_commands.py (whose fixture crawls
in full, refreshes after the site adds, removes and changes products, and crawls
incrementally into dead letters: incremental refresh, change history, delisting and
dead letters, checked through the commands), test_migrations.py (an old database
upgraded, then crawled incrementally), and in test_integrity_storage.py the
one-writer tests and a dead letter resolved by a later run once its batch is
committed. The crawl tests of test_incremental.py and test_run_record.py stay on
SQLite: they walk the same paths again, for a minute more of the default run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest

from sitesim.process import SimulatedSite

from .helpers import BACKENDS, IN_CI, missing_system_package, new_database
from .postgresql import PostgreSQLServer, PostgreSQLUnavailable

__all__ = ["IN_CI"]  # test modules import it from here


def require_executable(name: str, why: str) -> str:
    """The path of a system program a test needs: skip without it, but fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        missing_system_package(f"{name} is not installed ({why}); `make setup` installs it")
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules with tests marked slow first: under pytest-xdist (``make test``) a long
    test that starts last keeps one worker busy while the other has nothing left to do.
    Whole modules move, in their own order, so a module-scoped fixture with parameters
    is still set up once per parameter."""
    slow_modules = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow_modules)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if (
        metafunc.definition.get_closest_marker("both_databases")
        and "database_backend" in metafunc.fixturenames
    ):
        metafunc.parametrize("database_backend", BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgreSQLServer]:
    """A real PostgreSQL server for the session; clients find its password via PGPASSFILE."""
    try:
        server = PostgreSQLServer()
    except PostgreSQLUnavailable as why:
        missing_system_package(f"{why}; `make setup` installs it")
    server.start()
    try:
        # crawls and commands run as child processes: they inherit the variable
        with pytest.MonkeyPatch.context() as patch:
            for name, value in server.environment().items():
                patch.setenv(name, value)
            yield server
    finally:
        server.stop()


@pytest.fixture
def database_backend(request: pytest.FixtureRequest) -> str:
    """``sqlite``, unless the test is marked both_databases (then each in turn)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def make_database_url(
    request: pytest.FixtureRequest, database_backend: str, tmp_path
) -> Callable[[str], str]:
    """``make_database_url("name")``: another fresh database on the test's backend."""
    return lambda name: new_database(request, database_backend, tmp_path, name)


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
def database_url(make_database_url: Callable[[str], str]) -> str:
    return make_database_url("matter")
