"""Mutations at a chosen moment of a crawl: ``POST /__sim__/mutate`` with a trigger.

A test that removes products "while the crawler walks the listing" needs the
mutation to land at the same point of the crawl on every run, which a timer in
the test cannot promise on a loaded machine. A scheduled mutation waits for a
moment the site itself sees:

- ``after_requests: N``: once the site has answered N more page requests (listing
  and product pages, any status) after the mutation was scheduled;
- ``after_list_page: K``: once listing page K has been answered with a whole page
  (status 200) after the mutation was scheduled.

The triggering request is rendered before the mutation applies, so it shows the
catalogue as it was; every request after it sees the mutated catalogue. Applied
mutations are kept with what they did (``GET /__sim__/mutations``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .catalogue import Catalogue, CatalogueError

TRIGGERS = ("after_requests", "after_list_page")


@dataclass(slots=True)
class ScheduledMutation:
    """A mutation waiting for its trigger."""

    number: int
    changes: dict[str, int]  # add / remove / change
    trigger: str
    value: int
    requests_seen: int = 0

    def describe(self) -> dict[str, Any]:
        return {"id": self.number, **self.changes, self.trigger: self.value}


@dataclass(slots=True)
class MutationSchedule:
    """The site's pending and applied mutations."""

    catalogue: Catalogue
    clock: Callable[[], float]
    pending: list[ScheduledMutation] = field(default_factory=list)
    applied: list[dict[str, Any]] = field(default_factory=list)
    _count: int = 0

    def schedule(self, changes: dict[str, int], trigger: str, value: Any) -> dict[str, Any]:
        """Keep a mutation until its trigger; raises CatalogueError for bad values."""
        if trigger not in TRIGGERS:
            raise CatalogueError(f"unknown trigger {trigger!r}")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CatalogueError(f"{trigger} must be a positive integer")
        for name, count in changes.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise CatalogueError(f"{name} must be a non-negative integer")
        self._count += 1
        mutation = ScheduledMutation(self._count, dict(changes), trigger, value)
        self.pending.append(mutation)
        return mutation.describe()

    def served(self, kind: str, key: str, status: int) -> None:
        """A page request was answered: apply the mutations it triggers, in order."""
        if not self.pending or kind not in ("list", "detail"):
            return
        due = []
        for mutation in self.pending:
            mutation.requests_seen += 1
            if mutation.trigger == "after_requests":
                fires = mutation.requests_seen >= mutation.value
            else:
                fires = status == 200 and key == f"list:{mutation.value}"
            if fires:
                due.append(mutation)
        for mutation in due:
            self.pending.remove(mutation)
            record: dict[str, Any] = {
                **mutation.describe(),
                "applied_at": self.clock(),
                "after_page_requests": mutation.requests_seen,
            }
            try:
                result = self.catalogue.mutate(**mutation.changes)
            except CatalogueError as error:  # e.g. more removals than products by now
                record["error"] = str(error)
            else:
                record.update(added=result.added, removed=result.removed, changed=result.changed)
            self.applied.append(record)

    def describe(self) -> dict[str, Any]:
        return {
            "pending": [mutation.describe() for mutation in self.pending],
            "applied": self.applied,
        }
