"""The simulated site shares no code with the crawler, and the crawler none with it.

A crawler bug copied into the site would make both agree on a wrong answer, and
the tests could not see it. Two checks: what importing every module of the site
really loads (in a fresh interpreter), and what the sources say they import
(an AST scan, which also sees imports inside functions that never ran).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CRAWLER = PROJECT_ROOT / "matter_crawler"
SITESIM = PROJECT_ROOT / "simulated-site" / "sitesim"
#: The crawler's own stack: the site is built on Twisted and the standard library alone.
CRAWLER_LIBRARIES = frozenset(
    {"scrapy", "scrapy_playwright", "parsel", "sqlalchemy", "itemadapter", "w3lib"}
)

IMPORT_EVERY_MODULE = textwrap.dedent(
    """\
    import importlib, json, pkgutil, sys
    import sitesim as package
    imported = [package.__name__]
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
        imported.append(module.name)
    print(json.dumps({"imported": imported, "loaded": sorted(sys.modules)}))
    """
)


def in_sitesim(name: str) -> bool:
    return name == "sitesim" or name.startswith("sitesim.")


def test_importing_the_whole_site_loads_nothing_of_the_crawler() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_MODULE],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    # the walk found every module there is (else this test would prove nothing)
    sources = {
        ".".join(path.relative_to(SITESIM.parent).with_suffix("").parts)
        for path in SITESIM.rglob("*.py")
    }
    expected = {name.removesuffix(".__init__") for name in sources}
    assert set(report["imported"]) == expected
    crawler = [
        name
        for name in report["loaded"]
        if name == "matter_crawler" or name.startswith("matter_crawler.")
    ]
    assert crawler == []
    libraries = [name for name in report["loaded"] if name.split(".")[0] in CRAWLER_LIBRARIES]
    assert libraries == []


# -- the sources ---------------------------------------------------------------------------


def module_name(path: Path) -> str:
    parts = path.relative_to(SITESIM.parent).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


def imported_names(
    source: str, module: str, *, is_package: bool
) -> Iterator[tuple[int, str, str | None]]:
    """``(line, absolute name, relative base)`` of every import in ``source``.

    ``from X import a`` gives ``X.a`` (``a`` may be a module). A relative import
    is resolved, and its base is the package it starts from (``""`` when it climbs
    above the top one); an absolute import has base None. ``importlib.import_module``
    and ``__import__`` calls with a constant name count too.
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = None
            parent = node.module or ""
            if node.level:
                climbed = (
                    package[: len(package) - node.level + 1] if node.level <= len(package) else []
                )
                base = ".".join(climbed)
                parent = ".".join([*climbed, *([node.module] if node.module else [])])
            for alias in node.names:
                name = parent if alias.name == "*" else f"{parent}.{alias.name}".lstrip(".")
                yield node.lineno, name, base
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if called in ("import_module", "__import__") and isinstance(first, ast.Constant):
                yield node.lineno, str(first.value), None


def crawler_imports(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Imports in a module of the site that reach out of it, as ``line: name``.

    Out of it: a module of the crawler, one of the crawler's libraries, or any
    relative import that climbs out of ``sitesim`` (``from ..``).
    """
    found = []
    for line, name, base in imported_names(source, module, is_package=is_package):
        crawler = name == "matter_crawler" or name.startswith("matter_crawler.")
        climbs_out = base is not None and not in_sitesim(base)
        if crawler or climbs_out or name.split(".")[0] in CRAWLER_LIBRARIES:
            found.append(f"{line}: {name}")
    return found


def test_no_module_of_the_site_imports_the_crawler() -> None:
    offenders = []
    for path in sorted(SITESIM.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        module = module_name(path)
        found = crawler_imports(source, module, is_package=path.name == "__init__.py")
        offenders += [f"{path.relative_to(PROJECT_ROOT)}:{entry}" for entry in found]
    assert offenders == []


def test_no_module_of_the_crawler_imports_the_site() -> None:
    offenders = []
    for path in sorted(CRAWLER.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        module = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
        names = imported_names(
            source, module.removesuffix(".__init__"), is_package=path.name == "__init__.py"
        )
        offenders += [
            f"{path.relative_to(PROJECT_ROOT)}:{line}: {name}"
            for line, name, _base in names
            if in_sitesim(name)
        ]
    assert offenders == []


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("from matter_crawler.parsing import parse_detail", ["1: matter_crawler.parsing.parse_detail"]),
        ("import matter_crawler.verify", ["1: matter_crawler.verify"]),
        ("from matter_crawler import settings", ["1: matter_crawler.settings"]),
        ("import matter_crawler", ["1: matter_crawler"]),  # the crawler's package itself
        ("from .. import verify", ["1: verify"]),  # above the site's package
        ("from ..parsing.content import page_problem", ["1: parsing.content.page_problem"]),
        ("from ... import anything", ["1: anything"]),  # above the top package
        ("from .. import sitesim", ["1: sitesim"]),  # out, even if back in
        ("def later():\n    import scrapy.http", ["2: scrapy.http"]),
        ("import importlib\nimportlib.import_module('matter_crawler.rendering')", ["2: matter_crawler.rendering"]),
        ("from parsel import Selector", ["1: parsel.Selector"]),
        # what the site may import
        ("from . import truth\nfrom .catalogue import Catalogue", []),
        ("from sitesim.config import Settings", []),
        ("from twisted.web import server", []),
    ],
)  # fmt: skip
def test_the_scan_sees_imports_that_reach_the_crawler(source: str, found: list[str]) -> None:
    assert crawler_imports(source, "sitesim.server") == found


START_THE_SITE_ALONE = textwrap.dedent(
    """\
    import json, sys, urllib.request
    from sitesim.process import SimulatedSite
    with SimulatedSite(products=12, seed=1) as site:
        with urllib.request.urlopen(site.base_url + "/robots.txt", timeout=30) as answer:
            status = answer.status
    print(json.dumps({"status": status, "loaded": sorted(sys.modules)}))
    """
)


def test_the_site_starts_from_a_program_that_never_imported_the_crawler() -> None:
    """The site's launcher finds its own package, not the crawler's (a benchmark or a
    user's script may start the site before, or without, importing the crawler)."""
    completed = subprocess.run(
        [sys.executable, "-c", START_THE_SITE_ALONE],
        cwd=PROJECT_ROOT.parent,  # not the project: nothing importable by accident
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["status"] == 200
    assert not [name for name in report["loaded"] if name.split(".")[0] == "matter_crawler"]
