"""The test run installs the versions constraints.txt names, and setup.py admits them.

setup.py's ranges are what a user may install; constraints.txt is the set CI tests.
An upgrade is a change to constraints.txt that goes through a test run, not whatever
release a fresh ``pip install`` found that day.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pinned() -> dict[str, str]:
    """constraints.txt as {canonical name: version}."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            requirement = Requirement(text)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{text}: constraints pin exact versions"
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def declared() -> list[Requirement]:
    """setup.py's install_requires and the dev extra, read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup"
    )
    keywords = {
        keyword.arg: ast.literal_eval(keyword.value)
        for keyword in call.keywords
        if keyword.arg in ("install_requires", "extras_require")
    }
    return [Requirement(text) for text in keywords["install_requires"]] + [
        Requirement(text) for text in keywords["extras_require"]["dev"]
    ]


def test_the_test_environment_holds_the_pinned_versions():
    wrong = {}
    for name, wanted in pinned().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != wanted:
            wrong[name] = (installed, wanted)
    assert not wrong, f"installed vs constraints.txt (run ./scripts/setup.sh): {wrong}"


def test_setup_py_admits_every_pinned_version_and_pins_every_requirement():
    pins = pinned()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in constraints.txt"
        assert requirement.specifier.contains(pins[name]), (
            f"constraints.txt's {requirement.name}=={pins[name]} is outside setup.py's "
            f"{requirement.specifier}"
        )


def test_dependencies_whose_private_parts_we_touch_have_an_upper_bound():
    # the downloader's scrapy#6982 workaround and the rendering handler subclass depend on
    # the internals of these two: a release outside the tested range must not install
    bounded = {canonicalize_name(r.name): r.specifier for r in declared()}
    for name in ("scrapy", "scrapy-playwright"):
        assert any(spec.operator in ("<", "<=", "==", "~=") for spec in bounded[name]), name


#: Two modules of one xdist group each: every test prints the worker it ran on.
GROUPED_MODULE = """
import os
import pytest

pytestmark = pytest.mark.xdist_group("together")


@pytest.mark.parametrize("n", range(4))
def test_worker(n):
    print("worker", os.environ["PYTEST_XDIST_WORKER"])
"""


def test_xdist_loadgroup_keeps_a_group_on_one_worker(tmp_path):
    # `make test` runs `--dist loadgroup`: the modules marked xdist_group share a
    # module-scoped fixture (a crawl, a scrapyd) that each worker of the group would
    # build again. pytest 9.2 undid the grouping without an error (pytest-xdist#1386)
    for name in ("test_one.py", "test_two.py"):
        (tmp_path / name).write_text(GROUPED_MODULE)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "2",
            "--dist",
            "loadgroup",
            "-rA",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:twisted",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:]
    workers = re.findall(r"^worker (gw\d+)$", completed.stdout, re.MULTILINE)
    assert len(workers) == 8, completed.stdout[-2000:]
    assert len(set(workers)) == 1, workers
