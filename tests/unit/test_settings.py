"""Every setting has one home: ``matter_crawler/settings.py``.

A component reads its settings without a fallback literal (a second default that
could drift from the first), every setting of ours that a component reads is
defined in settings.py, and the README's settings table gives the same default.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import scrapy.settings.default_settings as scrapy_defaults

from matter_crawler import settings as project_settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "matter_crawler"
GETTERS = {
    "get",
    "getbool",
    "getint",
    "getfloat",
    "getlist",
    "getdict",
    "getdictorlist",
    "getwithbase",
}
#: README defaults that are a description, not a value, and why that is right.
DESCRIBED = {
    "CSA_LISTING_QUERY": "a long query string, shown in settings.py",
    "RETRY_POLICIES": "a table per failure class, documented in middlewares/retry.py",
    "VALIDATION_MAX_LENGTHS_BASE": "a bound per field, listed in words",
}


def setting_reads() -> dict[str, list[tuple[str, int, bool]]]:
    """{setting name: [(file, line, read with a fallback literal)]} over the crawler's code."""
    reads: dict[str, list[tuple[str, int, bool]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in GETTERS
                and "settings" in ast.unparse(node.func.value).lower()
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                fallback = len(node.args) > 1 or any(k.arg == "default" for k in node.keywords)
                reads.setdefault(node.args[0].value, []).append((relative, node.lineno, fallback))
            elif (
                isinstance(node, ast.Subscript)
                and "settings" in ast.unparse(node.value).lower()
                and isinstance(node.slice, ast.Constant)
                and isinstance(node.slice.value, str)
            ):
                reads.setdefault(node.slice.value, []).append((relative, node.lineno, False))
    return {name: where for name, where in reads.items() if name.isupper()}


def ours(name: str) -> bool:
    return not hasattr(scrapy_defaults, name)


def readme_defaults() -> dict[str, str]:
    """{setting: default as the README's settings table writes it}."""
    text = (ROOT / "README.md").read_text()
    table = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    defaults = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = [name for part in re.findall(r"`([A-Z0-9_/]+)`", cells[0]) for name in expand(part)]
        values = [cells[1]]
        if len(names) > 1:
            parts = [part.strip() for part in cells[1].split(",")]
            values = parts if len(parts) == len(names) else [cells[1]] * len(names)
        defaults.update(zip(names, values, strict=True))
    return defaults


def expand(name: str) -> list[str]:
    """``ADAPTIVE_MIN/MAX_DELAY`` -> ``ADAPTIVE_MIN_DELAY``, ``ADAPTIVE_MAX_DELAY``."""
    match = re.fullmatch(r"(\w*?)([A-Z]+)/([A-Z]+)(\w*)", name)
    if not match:
        return [name]
    head, first, second, tail = match.groups()
    return [f"{head}{first}{tail}", f"{head}{second}{tail}"]


def same(written: str, value: Any) -> bool:
    """Does the README's text of a default say ``value``?"""
    if written == "none":
        return value is None
    if written == "the profile's":
        return value is None  # settings.py leaves it to CRAWL_PROFILE (profiles.py)
    if re.fullmatch(r"`[^`]*`", written):
        literal = written[1:-1]
        for parse in (ast.literal_eval, json.loads):
            try:
                return parse(literal) == value
            except (ValueError, SyntaxError):
                continue
        return literal == value
    if isinstance(value, list | tuple):
        return [part.strip().strip("`") for part in written.split(",")] == [
            str(item) for item in value
        ]
    try:
        return float(written) == float(value)
    except (TypeError, ValueError):
        return False


def test_components_read_settings_without_fallback_literals():
    fallbacks = [
        f"{file}:{line} {name}"
        for name, where in setting_reads().items()
        for file, line, fallback in where
        if fallback
    ]
    assert not fallbacks, "defaults belong in matter_crawler/settings.py:\n" + "\n".join(fallbacks)


def test_every_setting_of_ours_that_is_read_is_defined_in_settings_py():
    missing = sorted(
        name
        for name in setting_reads()
        if ours(name) and not hasattr(project_settings, name) and name not in profile_names()
    )
    assert not missing


def profile_names() -> set[str]:
    from matter_crawler.profiles import PROFILES

    return {name for profile in PROFILES.values() for name in profile}


def test_the_readme_table_lists_every_setting_of_ours_with_its_default():
    written = readme_defaults()
    problems = []
    for name in sorted(setting_reads()):
        if not ours(name):
            continue
        if name not in written:
            problems.append(f"{name}: not in the README's settings table")
        elif name not in DESCRIBED and not same(
            written[name], getattr(project_settings, name, None)
        ):
            problems.append(
                f"{name}: README {written[name]!r}, settings.py "
                f"{getattr(project_settings, name, None)!r}"
            )
    assert not problems, "\n".join(problems)
