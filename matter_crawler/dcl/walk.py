"""The ``dcl`` spider's walk of the ledger, counted: pure bookkeeping, no I/O.

The walk has eight stages, one request per page each: the six lists
(:data:`LIST_STAGES`, walked page by page), then one ``versions`` answer per
model (its software version numbers) and one ``model_versions`` answer per
version (the version record). For each stage :class:`Walk` counts the pages
asked for, done and failed, and knows the stage's length when the ledger said
it (``pagination.total`` of a list's first page, or the stages a stage follows
from being over). From that it tells the progress extension each stage's
pages (:meth:`Walk.progress`), the run record how far the walk got
(:meth:`Walk.stage`, :meth:`Walk.complete`), and it is saved with the job
(:meth:`Walk.to_state`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .records import STATUS_LISTS

#: stage -> (record kind, status list or None, list path)
LIST_STAGES: dict[str, tuple[str, str | None, str]] = {
    "vendors": ("vendor", None, "/dcl/vendorinfo/vendors"),
    "models": ("model", None, "/dcl/model/models"),
    "compliance": ("compliance", None, "/dcl/compliance/compliance-info"),
    **{name: ("model_status", name, path) for name, (path, _) in STATUS_LISTS.items()},
}
VERSIONS = "versions"  # a model's version numbers: one answer per model
MODEL_VERSIONS = "model_versions"  # a version record: one answer per version
STAGES = (*LIST_STAGES, VERSIONS, MODEL_VERSIONS)


@dataclass(slots=True)
class StageCount:
    """Pages of one stage: asked for, done, failed; ``total`` when known."""

    planned: int = 0
    done: int = 0
    failed: int = 0
    records: int = 0  # records (or version numbers) its pages gave
    total: int | None = None  # pages the stage will have (a list's, from pagination.total)

    @property
    def outstanding(self) -> int:
        return self.planned - self.done - self.failed


@dataclass(slots=True)
class Walk:
    """The walk's counts per stage. ``limit``: records per list page."""

    limit: int
    started: bool = False
    stages: dict[str, StageCount] = field(default_factory=lambda: {s: StageCount() for s in STAGES})
    models_listed: int | None = None  # pagination.total of the models list

    # -- events -----------------------------------------------------------------------

    def planned(self, stage: str) -> None:
        self.stages[stage].planned += 1

    def unplanned(self, stage: str) -> None:
        """A page asked for that was not a new request after all (already seen)."""
        self.stages[stage].planned -= 1

    def done(self, stage: str, records: int = 0) -> None:
        count = self.stages[stage]
        count.done += 1
        count.records += records

    def failed(self, stage: str) -> None:
        self.stages[stage].failed += 1

    def undone(self, stage: str) -> None:
        """A page counted done whose callback then raised: it failed after all."""
        count = self.stages[stage]
        count.done -= 1
        count.failed += 1

    def counted(self, stage: str, total: int) -> None:
        """A list's first answer counted its records (``pagination.count_total``)."""
        self.stages[stage].total = pages_for(total, self.limit)
        if stage == "models":
            self.models_listed = total

    def list_over(self, stage: str, page: int) -> bool:
        """Whether page ``page`` (1-based) is past a list whose length is known."""
        total = self.stages[stage].total
        return total is not None and page > total

    # -- what the walk tells ------------------------------------------------------------

    def stage_total(self, stage: str) -> tuple[float | None, float]:
        """The stage's expected pages and the part of it that is extrapolated."""
        count = self.stages[stage]
        if stage in LIST_STAGES:
            if count.outstanding == 0 and count.planned:
                return count.planned, 0.0  # the list is over: its pages are what was asked
            return count.total, 0.0
        if stage == VERSIONS:
            if self._over(*LIST_STAGES):  # every model is known: one answer each
                return count.planned, 0.0
            return self.models_listed, 0.0
        # model_versions: known once every model's versions are, else extrapolated
        if self._over(*LIST_STAGES, VERSIONS):
            return count.planned, 0.0
        versions = self.stages[VERSIONS]
        models, _ = self.stage_total(VERSIONS)
        if models is None:
            return None, 0.0
        if versions.done == 0:
            return None, 0.0
        models_left = max(0.0, models - versions.done - versions.failed)
        extrapolated = versions.records / versions.done * models_left
        return count.planned + extrapolated, extrapolated

    def _over(self, *stages: str) -> bool:
        return self.started and all(self.stages[s].outstanding == 0 for s in stages)

    def progress(self) -> dict[str, Any]:
        """Each stage's pages, for the progress extension (``{"stages": {...}}``)."""
        stages = {}
        for name, count in self.stages.items():
            total, extrapolated = self.stage_total(name)
            stages[name] = {
                "total": total,
                "done": count.done,
                "failed": count.failed,
                "extrapolated": extrapolated,
            }
        return {"stages": stages}

    def stage(self) -> str:
        """The first stage with pages outstanding; once none is, the first with a failed
        page (the run record's stage of an incomplete walk); else the last stage."""
        if not self.started:
            return "start"
        for name, count in self.stages.items():
            if count.outstanding:
                return name
        for name, count in self.stages.items():
            if count.failed:
                return name
        return MODEL_VERSIONS

    def complete(self) -> bool:
        """Whether the walk asked for every page and every page succeeded."""
        return self._over(*STAGES) and not any(c.failed for c in self.stages.values())

    def requests(self) -> int:
        """Pages asked for (retries not counted): the walk's requests."""
        return sum(count.planned for count in self.stages.values())

    # -- saved with the job ---------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "started": self.started,
            "models_listed": self.models_listed,
            "stages": {name: asdict(count) for name, count in self.stages.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Walk:
        walk = cls(limit=state["limit"], started=state["started"])
        walk.models_listed = state.get("models_listed")
        for name, values in state.get("stages", {}).items():
            if name in walk.stages:
                walk.stages[name] = StageCount(**values)
        return walk


def pages_for(records: int, limit: int) -> int:
    """Pages of a list of ``records`` at ``limit`` a page (an empty list is one page)."""
    return max(1, -(-records // limit))
