"""A real PostgreSQL server for tests and benchmarks: Debian's binaries, a throwaway cluster.

:class:`PostgreSQLServer` runs ``initdb`` into a temporary data directory and
``postgres`` on a free 127.0.0.1 port (no Unix socket outside that directory),
with password authentication for a superuser of its own, and stops it by PID.
PostgreSQL refuses to run as root: as root, the cluster belongs to the
``postgres`` user that Debian's package creates, and the programs run as that
user through ``setpriv`` (which execs, so the PID we hold is the server's).

Clients get the password the way the README tells users to pass it: from a
password file named by ``PGPASSFILE`` (libpq's, read by psycopg), never in the
URL; :meth:`PostgreSQLServer.environment` gives the variable to set.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from glob import glob
from pathlib import Path

from sqlalchemy import create_engine, text

from .helpers import free_port

DEBIAN_BINARIES = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"  # created by Debian's postgresql-common
SUPERUSER = "matter"
#: Settings for a throwaway cluster. Durability off: the tests do not cut the power.
TEST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgreSQLUnavailable(Exception):
    """Why no server can be started here (the package missing, no user to run it as)."""


def find_binaries() -> Path:
    """The directory holding initdb and postgres: on PATH, else Debian's newest version."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres"):
        return Path(initdb).resolve().parent
    versions = sorted(glob(DEBIAN_BINARIES), key=lambda path: int(Path(path).parent.name))
    for directory in reversed(versions):
        if (Path(directory) / "initdb").exists() and (Path(directory) / "postgres").exists():
            return Path(directory)
    raise PostgreSQLUnavailable(
        "PostgreSQL is not installed (Debian's postgresql package: initdb and postgres)"
    )


class PostgreSQLServer:
    """``with PostgreSQLServer() as server: server.create_database("x") -> URL``."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.binaries = find_binaries()
        self.settings = TEST_SETTINGS if settings is None else settings
        self.run_as: list[str] = []
        self.owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self.owner = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgreSQLUnavailable(
                    f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL as"
                ) from None
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                raise PostgreSQLUnavailable("running as root and setpriv is missing")
            self.run_as = [
                setpriv,
                f"--reuid={self.owner.pw_uid}",
                f"--regid={self.owner.pw_gid}",
                "--init-groups",
                "--",
            ]
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self.directory: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def data_directory(self) -> Path:
        assert self.directory is not None
        return self.directory / "data"

    @property
    def password_file(self) -> Path:
        assert self.directory is not None
        return self.directory / "pgpass"

    def environment(self) -> dict[str, str]:
        """What a client needs in its environment: where libpq finds the password."""
        return {"PGPASSFILE": str(self.password_file)}

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL for psycopg 3; the password comes from PGPASSFILE."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _chown(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, self.owner.pw_uid, self.owner.pw_gid)

    def _log_tail(self) -> str:
        log = self.directory / "server.log" if self.directory else None
        return log.read_text(errors="replace")[-3000:] if log and log.exists() else ""

    def start(self, timeout: float = 60) -> PostgreSQLServer:
        # not under pytest's tmp_path: its parents are closed to the postgres user
        self.directory = Path(tempfile.mkdtemp(prefix="matter-postgresql-"))
        os.chmod(self.directory, 0o711)
        self.data_directory.mkdir(mode=0o700)
        self._chown(self.data_directory)
        superuser_password = self.directory / "initdb-password"
        superuser_password.write_text(self.password + "\n")
        os.chmod(superuser_password, 0o600)
        self._chown(superuser_password)  # initdb runs as the server's user and reads it
        initdb = subprocess.run(
            [
                *self.run_as,
                str(self.binaries / "initdb"),
                "--pgdata",
                str(self.data_directory),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(superuser_password),
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        superuser_password.unlink()
        if initdb.returncode != 0:
            self.remove()
            raise RuntimeError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
        self.port = free_port()
        # libpq's password file: host:port:database:user:password, private to its reader
        self.password_file.write_text(f"127.0.0.1:{self.port}:*:{SUPERUSER}:{self.password}\n")
        os.chmod(self.password_file, 0o600)
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.data_directory),
            "max_connections": "100",
            **self.settings,
        }
        log = (self.directory / "server.log").open("wb")
        try:
            self.process = subprocess.Popen(
                [
                    *self.run_as,
                    str(self.binaries / "postgres"),
                    "-D",
                    str(self.data_directory),
                    *(
                        part
                        for name, value in options.items()
                        for part in ("-c", f"{name}={value}")
                    ),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        engine = self.engine()
        deadline = time.monotonic() + timeout
        try:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"postgres exited at start:\n{self._log_tail()}")
                try:
                    with engine.connect() as conn:
                        conn.execute(text("select 1"))
                    return
                except (
                    Exception
                ) as error:  # starting up: refused, or "the database system is starting"
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"postgres not ready after {timeout}s: {error}\n{self._log_tail()}"
                        ) from None
                    time.sleep(0.1)
        finally:
            engine.dispose()

    def engine(self, database: str = "postgres"):
        """An engine as superuser (autocommit: CREATE/DROP DATABASE refuse transactions)."""
        return create_engine(
            self.url(database),
            isolation_level="AUTOCOMMIT",
            connect_args={"passfile": str(self.password_file)},
        )

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        engine = self.engine()
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def copy_database(self, source: str, target: str) -> str:
        """A copy of the database ``source`` (no one may be connected to it); its URL."""
        engine = self.engine()
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{target}" TEMPLATE "{source}"'))
        finally:
            engine.dispose()
        return self.url(target)

    def drop_database(self, name: str) -> None:
        """Drop it, ending any connection a crawl or a test left open."""
        engine = self.engine()
        try:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            engine.dispose()

    def stop(self, wait: float = 30) -> None:
        """Fast shutdown (SIGINT) by PID, SIGKILL if it hangs; then the directory goes."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.remove()

    def remove(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgreSQLServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@contextmanager
def postgresql_server(settings: dict[str, str] | None = None) -> Iterator[PostgreSQLServer]:
    server = PostgreSQLServer(settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()
