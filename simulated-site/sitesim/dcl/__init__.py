"""A simulated Distributed Compliance Ledger (``--dcl``): the DCL's REST paths under
``/dcl/``, served from a ledger derived from the site's catalogue with a seeded,
known set of disagreements, and the cross-check's ground truth.

Modules: ``ledger`` (what the ledger holds and the disagreements seeded into it),
``store`` (store keys and key order), ``messages`` (the proto messages and their
JSON), ``gateway`` (paths, pagination and errors as the cosmos-sdk gRPC gateway
answers them), ``crosscheck`` (the expected findings), ``truth`` (every record, as
served: what a crawl of the ledger must hold).
"""

from .crosscheck import crosscheck_json
from .gateway import PREFIX, Gateway
from .ledger import Ledger, build
from .truth import ledger_json

__all__ = ["PREFIX", "Gateway", "Ledger", "build", "crosscheck_json", "ledger_json"]
