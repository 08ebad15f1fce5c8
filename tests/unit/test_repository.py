"""The repository stands alone: no tracked file points at a path outside it.

Notes kept beside a checkout (a folder shared between machines or sessions, another
worktree) are not part of the project: someone with only the repository cannot follow
such a pointer. What the project knows about the real site lives in
docs/site-markup.md, and code, tests and docs point there.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: This file: its examples of outside paths are meant.
THIS_FILE = "tests/unit/test_repository.py"

OUTSIDE_PATTERNS = (
    (re.compile(r"(?<![\w-])shared/[\w.-]*[\w-]"), "a file in a folder beside the repository"),
    (re.compile(r"(?<![\w.:/-])/work/[^\s`'\"),]*"), "an absolute path on the build machine"),
)
# A relative path that climbs: "../x/y". Not "http://.../x" nor ".../delay" (a dot before).
PARENT_PATH = re.compile(r"(?<![\w./-])(?:\.\./)+[^\s`'\"()<>\[\]{},;|*]*")


def tracked_text_files() -> list[tuple[str, str]]:
    """(path, text) of every tracked file that is text (no NUL byte), this one aside."""
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout")
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.decode()
    files = []
    for name in filter(None, listing.split("\0")):
        path = ROOT / name
        if not path.is_file():  # deleted in the working tree, not yet committed
            continue
        data = path.read_bytes()
        if name != THIS_FILE and b"\0" not in data:
            files.append((name, data.decode("utf-8", "replace")))
    return files


def parent_path_problem(name: str, reference: str) -> str | None:
    """Why a ``../`` path in file ``name`` does not name a path of this repository."""
    target = reference.split("#", 1)[0].split("?", 1)[0]
    resolved = os.path.normpath(os.path.join(os.path.dirname(name), target))
    if resolved == ".." or resolved.startswith("../"):
        return "a path above the repository"
    if not (ROOT / resolved).exists():
        return f"{resolved} is not in the repository"
    return None


def test_no_tracked_file_names_a_path_outside_the_repository():
    files = tracked_text_files()
    assert "README.md" in dict(files)  # the scan sees the repository's files
    found = []
    for name, text in files:
        for number, line in enumerate(text.splitlines(), 1):
            for pattern, what in OUTSIDE_PATTERNS:
                found += [f"{name}:{number}: {m.group()} ({what})" for m in pattern.finditer(line)]
            for match in PARENT_PATH.finditer(line):
                if problem := parent_path_problem(name, match.group()):
                    found.append(f"{name}:{number}: {match.group()} ({problem})")
    assert found == [], "tracked files point outside the repository:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("see ../outside/notes.md", True),
        ("Markup follows shared/notes.md", True),
        ("measured from `/work/main`", True),
        ("see [../README.md](../README.md#postgresql)", False),
        ("http://.../csa_product/arbor-r162/", False),
        ("``adaptive/<domain>/concurrency``, ``.../delay``", False),
        ("the shared 2-core machine", False),
        ("https://example.org/work/item", False),
    ],
)
def test_the_patterns_tell_outside_paths_from_inside_ones(line, expected):
    # as if the line were in docs/x.md (README.md is one level up)
    flagged = any(pattern.search(line) for pattern, _ in OUTSIDE_PATTERNS) or any(
        parent_path_problem("docs/x.md", m.group()) for m in PARENT_PATH.finditer(line)
    )
    assert flagged is expected
