"""The DCL's record kinds: their fields, keys, tables and single-record paths.

One table per kind (:mod:`matter_crawler.storage.models`): a column per field of
the ledger's message, named in snake_case after the message's proto name
(``cDCertificateId`` -> ``cd_certificate_id``), with the record's key fields as the
primary key. :data:`KINDS` is the one place that says which message field becomes
which column and how its value is read; the parser, the validation, the store and
the single-record URLs of dead letters all read it.

Value kinds, as the REST gateway writes them (docs/dcl/README.md): ``string``;
``int32``/``uint32`` (JSON numbers); ``uint64`` (a JSON *string* of digits);
``bool``; ``history`` (a list of objects, stored as JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: (message field, column, value kind)
FieldSpec = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class RecordKind:
    """One kind of DCL record: where it is listed and how it is stored."""

    name: str  # "vendor", "model", "model_version", "compliance", "model_status"
    table: str
    fields: tuple[FieldSpec, ...]
    key: tuple[str, ...]  # columns of the primary key, in the ledger's key order
    #: the list path and the answer's field holding the records (None: not listed)
    list_path: str | None = None
    list_field: str | None = None
    #: the single-record path, formatted with the key columns (None: no such path)
    record_path: str | None = None
    #: the single-record answer's field holding the record
    record_field: str | None = None

    def columns(self) -> tuple[str, ...]:
        return tuple(column for _, column, _ in self.fields)

    def tracked(self) -> tuple[str, ...]:
        """Columns whose changes are recorded (every one but the key)."""
        return tuple(c for c in self.columns() if c not in self.key)


_VENDOR = (
    ("vendorID", "vid", "int32"),
    ("vendorName", "vendor_name", "string"),
    ("companyLegalName", "company_legal_name", "string"),
    ("companyPreferredName", "company_preferred_name", "string"),
    ("vendorLandingPageURL", "vendor_landing_page_url", "string"),
    ("creator", "creator", "string"),
    ("schemaVersion", "schema_version", "uint32"),
)
_MODEL = (
    ("vid", "vid", "int32"),
    ("pid", "pid", "int32"),
    ("deviceTypeId", "device_type_id", "int32"),
    ("productName", "product_name", "string"),
    ("productLabel", "product_label", "string"),
    ("partNumber", "part_number", "string"),
    ("commissioningCustomFlow", "commissioning_custom_flow", "int32"),
    ("commissioningCustomFlowUrl", "commissioning_custom_flow_url", "string"),
    ("commissioningModeInitialStepsHint", "commissioning_mode_initial_steps_hint", "uint32"),
    (
        "commissioningModeInitialStepsInstruction",
        "commissioning_mode_initial_steps_instruction",
        "string",
    ),
    ("commissioningModeSecondaryStepsHint", "commissioning_mode_secondary_steps_hint", "uint32"),
    (
        "commissioningModeSecondaryStepsInstruction",
        "commissioning_mode_secondary_steps_instruction",
        "string",
    ),
    ("userManualUrl", "user_manual_url", "string"),
    ("supportUrl", "support_url", "string"),
    ("productUrl", "product_url", "string"),
    ("lsfUrl", "lsf_url", "string"),
    ("lsfRevision", "lsf_revision", "int32"),
    ("creator", "creator", "string"),
    ("schemaVersion", "schema_version", "uint32"),
    ("enhancedSetupFlowOptions", "enhanced_setup_flow_options", "int32"),
    ("enhancedSetupFlowTCUrl", "enhanced_setup_flow_tc_url", "string"),
    ("enhancedSetupFlowTCRevision", "enhanced_setup_flow_tc_revision", "int32"),
    ("enhancedSetupFlowTCDigest", "enhanced_setup_flow_tc_digest", "string"),
    ("enhancedSetupFlowTCFileSize", "enhanced_setup_flow_tc_file_size", "uint32"),
    ("maintenanceUrl", "maintenance_url", "string"),
    ("discoveryCapabilitiesBitmask", "discovery_capabilities_bitmask", "uint32"),
    ("commissioningFallbackUrl", "commissioning_fallback_url", "string"),
    ("icdUserActiveModeTriggerHint", "icd_user_active_mode_trigger_hint", "uint32"),
    (
        "icdUserActiveModeTriggerInstruction",
        "icd_user_active_mode_trigger_instruction",
        "string",
    ),
    ("factoryResetStepsHint", "factory_reset_steps_hint", "uint32"),
    ("factoryResetStepsInstruction", "factory_reset_steps_instruction", "string"),
)
_MODEL_VERSION = (
    ("vid", "vid", "int32"),
    ("pid", "pid", "int32"),
    ("softwareVersion", "software_version", "uint32"),
    ("softwareVersionString", "software_version_string", "string"),
    ("cdVersionNumber", "cd_version_number", "int32"),
    ("firmwareInformation", "firmware_information", "string"),
    ("softwareVersionValid", "software_version_valid", "bool"),
    ("otaUrl", "ota_url", "string"),
    ("otaFileSize", "ota_file_size", "uint64"),
    ("otaChecksum", "ota_checksum", "string"),
    ("otaChecksumType", "ota_checksum_type", "int32"),
    ("minApplicableSoftwareVersion", "min_applicable_software_version", "uint32"),
    ("maxApplicableSoftwareVersion", "max_applicable_software_version", "uint32"),
    ("releaseNotesUrl", "release_notes_url", "string"),
    ("creator", "creator", "string"),
    ("schemaVersion", "schema_version", "uint32"),
    ("specificationVersion", "specification_version", "uint32"),
)
_COMPLIANCE = (
    ("vid", "vid", "int32"),
    ("pid", "pid", "int32"),
    ("softwareVersion", "software_version", "uint32"),
    ("certificationType", "certification_type", "string"),
    ("softwareVersionString", "software_version_string", "string"),
    ("cDVersionNumber", "cd_version_number", "uint32"),
    ("softwareVersionCertificationStatus", "status", "uint32"),
    ("date", "date", "string"),
    ("reason", "reason", "string"),
    ("owner", "owner", "string"),
    ("history", "history", "history"),
    ("cDCertificateId", "cd_certificate_id", "string"),
    ("certificationRoute", "certification_route", "string"),
    ("programType", "program_type", "string"),
    ("programTypeVersion", "program_type_version", "string"),
    ("compliantPlatformUsed", "compliant_platform_used", "string"),
    ("compliantPlatformVersion", "compliant_platform_version", "string"),
    ("transport", "transport", "string"),
    ("familyId", "family_id", "string"),
    ("supportedClusters", "supported_clusters", "string"),
    ("OSVersion", "os_version", "string"),
    ("parentChild", "parent_child", "string"),
    ("certificationIdOfSoftwareComponent", "certification_id_of_software_component", "string"),
    ("schemaVersion", "schema_version", "uint32"),
    ("specificationVersion", "specification_version", "uint32"),
)
#: certified-models, provisional-models and revoked-models: one shape, one table,
#: told apart by the ``list`` column the parser sets from the path
_MODEL_STATUS = (
    ("vid", "vid", "int32"),
    ("pid", "pid", "int32"),
    ("softwareVersion", "software_version", "uint32"),
    ("certificationType", "certification_type", "string"),
    ("value", "value", "bool"),
    ("schemaVersion", "schema_version", "uint32"),
)

VENDOR = RecordKind(
    "vendor",
    "dcl_vendors",
    _VENDOR,
    key=("vid",),
    list_path="/dcl/vendorinfo/vendors",
    list_field="vendorInfo",
    record_path="/dcl/vendorinfo/vendors/{vid}",
    record_field="vendorInfo",
)
MODEL = RecordKind(
    "model",
    "dcl_models",
    _MODEL,
    key=("vid", "pid"),
    list_path="/dcl/model/models",
    list_field="model",
    record_path="/dcl/model/models/{vid}/{pid}",
    record_field="model",
)
#: no list path: a model's versions are listed by ``/dcl/model/versions/{vid}/{pid}``
MODEL_VERSION = RecordKind(
    "model_version",
    "dcl_model_versions",
    _MODEL_VERSION,
    key=("vid", "pid", "software_version"),
    record_path="/dcl/model/versions/{vid}/{pid}/{software_version}",
    record_field="modelVersion",
)
COMPLIANCE = RecordKind(
    "compliance",
    "dcl_compliance",
    _COMPLIANCE,
    key=("vid", "pid", "software_version", "certification_type"),
    list_path="/dcl/compliance/compliance-info",
    list_field="complianceInfo",
    record_path=(
        "/dcl/compliance/compliance-info/{vid}/{pid}/{software_version}/{certification_type}"
    ),
    record_field="complianceInfo",
)
MODEL_STATUS = RecordKind(
    "model_status",
    "dcl_model_statuses",
    (*_MODEL_STATUS, ("", "list", "list")),  # "list": set from the path, not the message
    key=("list", "vid", "pid", "software_version", "certification_type"),
)
#: the three status lists: list name -> (path, the answer's field)
STATUS_LISTS: dict[str, tuple[str, str]] = {
    "certified": ("/dcl/compliance/certified-models", "certifiedModel"),
    "provisional": ("/dcl/compliance/provisional-models", "provisionalModel"),
    "revoked": ("/dcl/compliance/revoked-models", "revokedModel"),
}

KINDS: dict[str, RecordKind] = {
    kind.name: kind for kind in (VENDOR, MODEL, MODEL_VERSION, COMPLIANCE, MODEL_STATUS)
}

#: softwareVersionCertificationStatus codes
STATUS_PROVISIONAL, STATUS_CERTIFIED, STATUS_REVOKED = 1, 2, 3


@dataclass(slots=True)
class DclRecord:
    """One ledger record, read from an answer: the item the ``dcl`` spider yields.

    ``values`` holds every column of its kind (:data:`KINDS`), already read into
    Python values; ``url`` is where the record can be fetched alone (its
    single-record path; for a status-list entry, the page it came from), which
    is what a dead letter names; ``problems`` makes the item invalid.
    """

    kind: str
    values: dict[str, Any]
    url: str
    problems: list[str] = field(default_factory=list)

    def key(self) -> tuple[Any, ...]:
        return tuple(self.values.get(column) for column in KINDS[self.kind].key)
