"""Write a new schema revision for what changed in matter_crawler/storage/models.py.

    .venv/bin/python scripts/new_revision.py "add delisting confirmations"

creates ``matter_crawler/storage/migrations/versions/0002_add_delisting_confirmations.py``
(the next number, then the message; at most 32 characters, Alembic's limit): Alembic's
autogenerate compares a scratch SQLite database built by the existing revisions with
models.py and writes the operations that turn one into the other, as batch operations
that SQLite and PostgreSQL both run. Review it (docs/migrations.md says what to look
for), then add its check to tests/crawl/test_migrations.py.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402

from matter_crawler.storage import create_database_engine  # noqa: E402
from matter_crawler.storage.schema import (  # noqa: E402
    alembic_config,
    migrations_directory,
    prepare_schema,
    revisions,
)

MAX_REVISION_ID = 32  # alembic_version.version_num is VARCHAR(32)


def revision_id(message: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")
    return f"{len(revisions()) + 1:04d}_{slug}"[:MAX_REVISION_ID].rstrip("_")


def new_revision(message: str, directory: Path | None = None) -> Path:
    """Autogenerate the revision; into ``directory`` instead of the package's (for tests)."""
    with tempfile.TemporaryDirectory(prefix="matter-new-revision-") as scratch:
        engine = create_database_engine(f"sqlite:///{scratch}/head.sqlite3")
        try:
            prepare_schema(engine)
            with engine.begin() as conn:
                config = alembic_config(conn)
                if directory is not None:
                    versions = migrations_directory() / "versions"
                    config.set_main_option("version_locations", f"{versions}:{directory}")
                    config.set_main_option("path_separator", ":")
                script = command.revision(
                    config,
                    message=message,
                    autogenerate=True,
                    rev_id=revision_id(message),
                    version_path=str(directory) if directory is not None else None,
                )
        finally:
            engine.dispose()
    assert script is not None
    assert not isinstance(script, list)
    path = Path(script.path)
    # the project's style: unused imports out, formatted (ruff is in the dev extra)
    ruff = Path(sys.executable).with_name("ruff")
    if ruff.exists():
        subprocess.run([ruff, "check", "--fix", "--quiet", path], check=False)
        subprocess.run([ruff, "format", "--quiet", path], check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("message", help="what the revision does, in a few words")
    options = parser.parse_args()
    path = new_revision(options.message)
    print(f"Wrote {path.relative_to(ROOT)}: review it, then add its check to UPGRADE_CHECKS")


if __name__ == "__main__":
    main()
