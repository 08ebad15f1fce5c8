"""The decisions behind the operations commands, without a crawl: the JSON log line,
prune's age and rule (on a real SQLite file), and when the JSON handler is installed."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from scrapy import Spider
from scrapy.exceptions import UsageError
from scrapy.settings import Settings
from sqlalchemy import create_engine, insert

from matter_crawler.commands.prune import parse_age
from matter_crawler.json_log import JsonFormatter, json_handler, use_json_log
from matter_crawler.storage import prune
from matter_crawler.storage.backup import copy_sqlite
from matter_crawler.storage.models import Base, CrawlLock, CrawlRun, DeadLetter, ProductChange

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.getLogger("matter_crawler.test").makeRecord(
        "matter_crawler.test", logging.WARNING, __file__, 1, message, args, None, extra=extra
    )
    made.created = NOW.timestamp()
    return made


def test_a_record_is_one_json_line_with_its_fields_and_extras():
    line = JsonFormatter().format(record("%d pages", 3, spider=Spider("matter"), code=503))
    assert json.loads(line) == {
        "time": "2026-12-01T00:00:00.000+00:00",
        "level": "WARNING",
        "logger": "matter_crawler.test",
        "message": "3 pages",
        "spider": "matter",
        "code": 503,
    }


def test_an_exception_is_its_traceback_text():
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        failed = record("boom")
        failed.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(failed))
    assert entry["message"] == "boom"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ZeroDivisionError: division by zero")


def test_hostile_text_stays_on_one_line_without_control_characters():
    text = "A\u2028B\x85C\nD\x1b[31mE\u202eF"
    line = JsonFormatter().format(record("%s", text, where=object()))
    assert line.isascii()
    assert len(line.splitlines()) == 1
    assert json.loads(line)["message"] == text
    assert json.loads(line)["where"].startswith("<object object at")


def test_json_log_replaces_scrapys_root_handler_only_when_asked():
    before = list(logging.root.handlers)
    plain = Settings({"LOG_FORMAT": "%(message)s"})
    assert use_json_log(plain) is False
    assert plain.getbool("LOG_INSTALL_ROOT_HANDLER")
    own = Settings({"LOG_FORMAT": "json", "LOG_INSTALL_ROOT_HANDLER": False})
    assert use_json_log(own) is False  # the user's own logging
    assert logging.root.handlers == before
    settings = Settings({"LOG_FORMAT": "json", "LOG_LEVEL": "WARNING"})
    try:
        assert use_json_log(settings) is True
        (added,) = [handler for handler in logging.root.handlers if handler not in before]
        assert isinstance(added.formatter, JsonFormatter)
        assert added.level == logging.WARNING
        assert not settings.getbool("LOG_INSTALL_ROOT_HANDLER")  # Scrapy installs none
    finally:
        for handler in logging.root.handlers[:]:
            if handler not in before:
                logging.root.removeHandler(handler)


@pytest.mark.parametrize(
    ("text", "age"),
    [("180d", timedelta(days=180)), ("36h", timedelta(hours=36)), ("1.5D", timedelta(hours=36))],
)
def test_ages_are_days_or_hours(text, age):
    assert parse_age(text) == age


@pytest.mark.parametrize("text", ["180", "6m", "-1d", "d", "1e3d", "180 days"])
def test_other_ages_are_refused(text):
    with pytest.raises(UsageError, match=r"e\.g\. 180d or 36h"):
        parse_age(text)


def test_the_rule_keeps_recent_running_and_pending_rows(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'prune.sqlite3'}")
    Base.metadata.create_all(engine)
    old, recent = NOW - timedelta(days=200), NOW - timedelta(days=2)
    cutoff = NOW - timedelta(days=180)
    runs = [  # id, started, finished
        (1, old, old),  # ended long ago: its changes go
        (2, old, None),  # killed long ago (or still running)
        (3, recent, recent),
    ]
    with engine.begin() as conn:
        for run_id, started, finished in runs:
            conn.execute(
                insert(CrawlRun.__table__).values(
                    id=run_id, spider="s", status="x", started_at=started, finished_at=finished
                )
            )
        for run_id in (1, 2, 3, None, 99):  # None: no run; 99: a run record that is gone
            conn.execute(
                insert(ProductChange.__table__).values(
                    product_url=f"u{run_id}", field="f", run_id=run_id, changed_at=old
                )
            )
        for url, resolved in (("old", old), ("recent", recent), ("pending", None)):
            conn.execute(
                insert(DeadLetter.__table__).values(
                    url=url,
                    failure_class="server",
                    last_error="e",
                    attempts=1,
                    first_failed_at=old,
                    last_failed_at=old,
                    resolved_at=resolved,
                )
            )
    counted = prune.count(engine, cutoff, crawl_may_run=True)
    assert counted == {"product_changes": 3, "dcl_changes": 0, "dead_letters": 1}
    assert prune.count(engine, cutoff, crawl_may_run=False)["product_changes"] == 4
    with engine.begin() as conn:  # a lock row: a crawl may be running
        conn.execute(
            insert(CrawlLock.__table__).values(
                name="writer", token="t", pid=1, host="h", acquired_at=NOW, heartbeat_at=NOW
            )
        )
    assert prune.crawl_lock_held(engine)
    assert prune.prune(engine, cutoff) == {
        "product_changes": 4,
        "dcl_changes": 0,
        "dead_letters": 1,
    }
    with engine.connect() as conn:
        left = conn.execute(ProductChange.__table__.select()).all()
        letters = conn.execute(DeadLetter.__table__.select()).all()
    assert sorted(row.product_url for row in left) == ["u3"]
    assert sorted(row.url for row in letters) == ["pending", "recent"]
    engine.dispose()


#: Commits rows to tables a and b, one of each per transaction, as fast as it can.
WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
print("ready", flush=True)
while True:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO a (v) VALUES (randomblob(2000))")
    conn.execute("INSERT INTO b (n) VALUES (1)")
    conn.execute("COMMIT")
"""


def test_a_stepwise_backup_copies_one_snapshot_while_a_writer_commits(tmp_path):
    """Without the held snapshot, each commit between two steps restarts the copy (and
    one commit after another, it never ends); with it, the steps go straight through."""
    source, target = tmp_path / "source.sqlite3", tmp_path / "copy.sqlite3"
    with closing(sqlite3.connect(source)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v BLOB)")
        conn.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, n INTEGER)")
        conn.executemany("INSERT INTO a (v) VALUES (randomblob(2000))", [()] * 3000)
        conn.executemany("INSERT INTO b (n) VALUES (1)", [()] * 3000)
        conn.commit()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(source)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "ready\n"
        copied: list[int] = []

        def progress(done: int, total: int) -> None:
            if copied and done <= copied[-1]:
                raise AssertionError(f"the copy started again: {copied[-1]} then {done} pages")
            copied.append(done)

        result = copy_sqlite(source, target, busy_timeout=30, progress=progress, step_pages=8)
        with closing(sqlite3.connect(source, timeout=30)) as conn:
            after = conn.execute("SELECT count(*) FROM a").fetchone()[0]
    finally:
        writer.terminate()
        writer.wait(timeout=30)
    assert result.sound
    assert len(copied) == -(-result.pages // 8)  # one pass, no step twice
    with closing(sqlite3.connect(target)) as conn:
        rows = conn.execute("SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)").fetchone()
    assert rows[0] == rows[1] >= 3000  # one snapshot: each commit wholly in, or wholly out
    assert after > rows[0]  # the writer committed on while the copy was made


def test_the_json_handler_is_built_from_scrapys_log_settings(tmp_path):
    with pytest.raises(ValueError, match="Invalid format 'json'"):
        logging.Formatter("json")  # why "json" gives no valid LOG_FORMAT a second meaning
    log = tmp_path / "crawl.log"
    log.write_text("old\n")
    settings = Settings({"LOG_FILE": str(log), "LOG_FILE_APPEND": False, "LOG_ENCODING": "latin-1"})
    handler = json_handler(settings)
    try:
        assert isinstance(handler, logging.FileHandler)
        assert (handler.mode, handler.encoding) == ("w", "latin-1")
        assert log.read_text() == ""  # not appended to
    finally:
        handler.close()
    assert isinstance(json_handler(Settings({"LOG_ENABLED": False})), logging.NullHandler)
    stream = json_handler(Settings({"LOG_LEVEL": "ERROR"}))
    assert type(stream) is logging.StreamHandler
    assert stream.level == logging.ERROR
