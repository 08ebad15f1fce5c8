"""Fixtures: simulated sites in child processes, started once and stopped by PID.

Starting a site costs ~0.3 s, so sites are shared per session; the one whose
faults tests change is put back to its defaults (and its account zeroed)
after every test, so no test sees another's faults.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sitesim.config import Settings
from sitesim.process import SimulatedSite


@pytest.fixture(scope="session")
def site() -> Iterator[SimulatedSite]:
    """600 products, seed 1, no faults; tests must not change it."""
    with SimulatedSite(products=600, seed=1) as running:
        yield running


@pytest.fixture(scope="session")
def truth(site: SimulatedSite) -> list[dict]:
    """The default site's ground truth (newest first)."""
    return site.truth()


@pytest.fixture(scope="session")
def variant_site() -> Iterator[SimulatedSite]:
    """A site where each markup variant is on most pages."""
    with SimulatedSite(products=600, seed=7, variant_rate=0.6) as running:
        yield running


@pytest.fixture(scope="session")
def _shared_fault_site() -> Iterator[SimulatedSite]:
    with SimulatedSite(products=120, seed=3) as running:
        yield running


@pytest.fixture
def fault_site(_shared_fault_site: SimulatedSite) -> Iterator[SimulatedSite]:
    """A site for fault tests: defaults and a zero account before and after."""
    defaults = Settings().as_json()
    _shared_fault_site.set_faults(**defaults)
    _shared_fault_site.reset_stats()
    yield _shared_fault_site
    _shared_fault_site.set_faults(**defaults)
    _shared_fault_site.reset_stats()
