"""Request and response bodies of the HTTP API (they are also its OpenAPI schemas).

By API area: `base` (the limits, the JSON check, `Body`, the error envelope), `images` (detect, embed, verify),
`persons` (persons, faces, corrections, bulk import), `search`, `audit` (audit pages, erasure receipts) and `admin`
(tenants, admin keys, keys, migrations, health). Callers import from here: `from securegate.schemas import X`.
"""

from securegate.schemas.base import (
    Body, ErrorBody, ErrorResponse, IMAGE, MAX_BODY_DEPTH, METADATA_MAX_BYTES, METADATA_MAX_DEPTH, PAGE_LIMIT_MAX,
    SEQ_MAX, check_json,
)
from securegate.schemas.images import (
    DetectResponse, EmbedResponse, EmbeddedFace, Face, ImageOptions, ImageRequest, ModelInfo, VerifyRequest, VerifyResponse,
)
from securegate.schemas.admin import (
    ADMIN_KEY_NAME_PATTERN, AdminKeyCreate, AdminKeyCreated, AdminKeyList, AdminKeyView, AdminScope, ApiKeyCreated,
    Health, KeyCache, KeyRotation, KeyStatus, MigrationStart, MigrationStatus, Readiness, RootKeyRotation,
    ShardPlacement, TenantCreate, TenantCreated, TenantPatch, TenantPlacement, TenantView,
)
from securegate.schemas.persons import (
    FaceEnrol, FaceEnrolOptions, FaceEnrolled, FaceMove, FaceMoved, FaceSummary, IMPORT_MAX_ITEMS, ImportItem,
    ImportRefusal,
    ImportRequest, ImportResponse, ImportedItem, PersonCreate, PersonCreated, PersonMerge, PersonPage, PersonView,
    PersonsMerged, RejectionCreate, RejectionList, RejectionView, RejectionsAdded,
)
from securegate.schemas.search import (
    SearchMatch, SearchOptions, SearchRequest, SearchResponse, SearchedFace,
)
from securegate.schemas.audit import (
    AuditEvent, AuditPage, AuditVerification, ErasureReceipt, OrgAuditEvent, OrgAuditPage, ReceiptSignature,
    SigningKeyView, SigningKeys,
)

__all__ = [
    "ADMIN_KEY_NAME_PATTERN", "AdminKeyCreate", "AdminKeyCreated", "AdminKeyList", "AdminKeyView", "AdminScope",
    "ApiKeyCreated", "AuditEvent", "AuditPage", "AuditVerification", "Body", "DetectResponse", "EmbedResponse",
    "EmbeddedFace", "ErasureReceipt", "ErrorBody", "ErrorResponse", "Face", "FaceEnrol",
    "FaceEnrolOptions", "FaceEnrolled", "FaceMove",
    "FaceMoved", "FaceSummary", "Health", "IMAGE", "IMPORT_MAX_ITEMS", "ImageOptions", "ImageRequest", "ImportItem",
    "ImportRefusal", "ImportRequest", "ImportResponse", "ImportedItem", "KeyCache", "KeyRotation", "KeyStatus",
    "MAX_BODY_DEPTH", "METADATA_MAX_BYTES", "METADATA_MAX_DEPTH", "MigrationStart", "MigrationStatus", "ModelInfo",
    "OrgAuditEvent", "OrgAuditPage", "PAGE_LIMIT_MAX", "PersonCreate", "PersonCreated", "PersonMerge", "PersonPage",
    "PersonView", "PersonsMerged", "Readiness", "ReceiptSignature", "RejectionCreate", "RejectionList",
    "RejectionView", "RejectionsAdded", "RootKeyRotation", "SEQ_MAX", "SearchMatch", "SearchOptions", "SearchRequest",
    "SearchResponse", "SearchedFace", "ShardPlacement", "SigningKeyView", "SigningKeys", "TenantCreate",
    "TenantCreated", "TenantPatch", "TenantPlacement", "TenantView", "VerifyRequest", "VerifyResponse",
    "check_json",
]
