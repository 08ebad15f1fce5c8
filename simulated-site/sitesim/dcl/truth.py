"""The ledger's records as the gateway serves them: the ground truth of a DCL crawl.

``GET /__sim__/dcl`` and ``--dump-dcl FILE`` give every record of every store,
each exactly as its list or single-record path writes it (the proto message with
every field, 64-bit integers as strings), in the ledger's key order:

``{"vendor": [...], "model": [...], "model_version": [...], "compliance": [...],
"model_status": [{"list": "certified", ...}, ...]}``

A crawl that read the whole ledger holds these records and no others.
"""

from __future__ import annotations

from typing import Any

from . import messages
from .ledger import Ledger

STATUS_LISTS = ("certified", "provisional", "revoked")


def ledger_json(ledger: Ledger) -> dict[str, Any]:
    statuses = [
        {"list": name, **messages.emit(messages.MODEL_INDEX, record)}
        for name in STATUS_LISTS
        for record in getattr(ledger, name).values()
    ]
    return {
        "vendor": [messages.emit(messages.VENDOR_INFO, r) for r in ledger.vendors.values()],
        "model": [messages.emit(messages.MODEL, r) for r in ledger.models.values()],
        "model_version": [
            messages.emit(messages.MODEL_VERSION, ledger.versions[key])
            for key in sorted(ledger.versions)
        ],
        "compliance": [
            messages.emit(messages.COMPLIANCE_INFO, r) for r in ledger.compliance.values()
        ],
        "model_status": statuses,
    }
