"""Request and response bodies of the HTTP API (they are also its OpenAPI schemas)."""

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IMAGE = "base64 of the image file's bytes (JPEG, PNG, WebP, BMP, TIFF, GIF)"

# What the API accepts it must be able to store and return: bodies are refused at the door past these.
MAX_BODY_DEPTH = 32  # nesting of any request body
METADATA_MAX_DEPTH = 16  # a person's metadata object counts as level 1
METADATA_MAX_BYTES = 16 * 1024  # UTF-8 JSON; a page of 1000 persons stays under 16 MiB
SEQ_MAX = 2**63 - 1  # SQLite's largest INTEGER: audit sequence numbers
PAGE_LIMIT_MAX = 1000  # items per page of a list (persons); HTTP and handle callers alike


def check_json(value: Any, max_depth: int) -> None:
    """Refuses what JSON parsing lets through but no response can carry: strings that are not Unicode
    text (lone surrogates, from escapes like \\udfff), numbers JSON has no form for (NaN, Infinity), and
    nesting deeper than `max_depth` (which breaks recursive encoders on the way out). Iterative, so
    the check itself cannot hit the recursion limit."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                item = item.values()
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError("a string holds a lone UTF-16 surrogate (not Unicode text)") from None
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and Infinity are not JSON numbers")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def encodable(cls, data: Any) -> Any:
        check_json(data, MAX_BODY_DEPTH)
        return data


class ErrorBody(BaseModel):
    code: str = Field(..., examples=["invalid_image"])
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


# ---- stateless ----------------------------------------------------------------------------------------------
class ImageRequest(Body):
    image: str = Field(..., description=IMAGE)
    max_faces: int | None = Field(None, ge=1, le=1000, description="largest faces first; capped by the server limit")


class VerifyRequest(Body):
    """Either two images (`image_a`, `image_b`), or one `image` against an enrolled `person_id` (needs an API key)."""

    image_a: str | None = Field(None, description=IMAGE)
    image_b: str | None = Field(None, description=IMAGE)
    image: str | None = Field(None, description=IMAGE)
    person_id: str | None = Field(None, max_length=64)
    threshold: float | None = Field(None, ge=-1, le=1, description="cosine accept threshold; default: tenant's, else the model pack's")

    @model_validator(mode="after")
    def one_form(self):
        pair = (self.image_a, self.image_b)
        person = (self.image, self.person_id)
        complete_pair = all(v is not None for v in pair) and all(v is None for v in person)
        complete_person = all(v is not None for v in person) and all(v is None for v in pair)
        if not (complete_pair or complete_person):
            raise ValueError("give either image_a and image_b, or image and person_id (not both forms)")
        return self


class Face(BaseModel):
    bbox: list[float]
    landmarks: list[list[float]]
    score: float


class DetectResponse(BaseModel):
    faces: list[Face]


class ModelInfo(BaseModel):
    name: str
    dim: int


class EmbeddedFace(BaseModel):
    bbox: list[float]
    score: float
    embedding: list[float]


class EmbedResponse(BaseModel):
    model: ModelInfo
    faces: list[EmbeddedFace]


class VerifyResponse(BaseModel):
    similarity: float
    match: bool
    threshold: float
    best_face_similarity: float | None = Field(None, description="person form: best over the person's faces")
    centroid_similarity: float | None = Field(None, description="person form: to the person's centroid")
    best_rejection_similarity: float | None = Field(None, description="person form: best over the person's rejections")
    rejected: bool | None = Field(None, description="person form: the probe is at least as close to a rejection of "
                                                    "the person as to the person (then no match, whatever the threshold)")

    def __bool__(self) -> bool:  # the typed client's `if sg.verify(a, b):`
        return self.match


# ---- tenants (admin) -----------------------------------------------------------------------------------------
class TenantCreate(Body):
    name: str = Field(..., min_length=1, max_length=200)
    settings: dict[str, Any] | None = Field(None, description="default_threshold, retention_days, match_on, quality")


class TenantPatch(Body):
    settings: dict[str, Any]


class TenantCreated(BaseModel):
    tenant_id: str
    api_key: str = Field(..., description="shown once; stored only as a hash", repr=False)


class ApiKeyCreated(BaseModel):
    api_key: str = Field(..., repr=False)  # never printed by accident


# ---- admin keys (admin) --------------------------------------------------------------------------------------
# What an admin key may do (tenancy/admin_keys.py; deployments/admin_keys.py maps each admin endpoint to one).
AdminScope = Literal["tenants:read", "tenants:write", "keys:read", "keys:rotate", "audit:read",
                     "admin-keys:read", "admin-keys:write", "models:migrate"]
ADMIN_KEY_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"  # safe in a URL path and in the key's `sgadmin_<name>_<secret>`


class AdminKeyCreate(Body):
    name: str = Field(..., pattern=ADMIN_KEY_NAME_PATTERN, description="never reused, also once revoked")
    scopes: list[AdminScope] = Field(..., min_length=1, max_length=16,
                                     description="a subset of the calling key's own scopes")


class AdminKeyView(BaseModel):
    name: str
    scopes: list[AdminScope]
    created_at: float
    revoked_at: float | None = None


class AdminKeyCreated(AdminKeyView):
    admin_key: str = Field(..., description="shown once; stored only as a hash", repr=False)


class AdminKeyList(BaseModel):
    admin_keys: list[AdminKeyView]


class TenantView(BaseModel):
    tenant_id: str
    name: str
    model: ModelInfo
    settings: dict[str, Any]
    created_at: float


class ShardPlacement(BaseModel):
    shard: int = Field(..., description="0 is the primary (the tenant file's one writer)")
    state: str = Field(..., description="Ray's actor state: ALIVE, RESTARTING (its node was lost; waiting for a node "
                       "with room), PENDING_CREATION, DEAD; INACTIVE when the tenant is not active (it activates on "
                       "first use); UNKNOWN when Ray's actor table could not be read")
    node_id: str | None = Field(None, description="the Ray node it runs on, while ALIVE")
    node_ip: str | None = None
    pid: int | None = None
    restarts: int | None = Field(None, description="how often Ray restarted it (crashes, node losses)")


class TenantPlacement(TenantView):
    active: bool = Field(..., description="whether any of its index actors exists")
    shards: list[ShardPlacement]


# ---- persons and faces ---------------------------------------------------------------------------------------
class PersonCreate(Body):
    external_id: str | None = Field(None, min_length=1, max_length=256)
    metadata: dict[str, Any] = Field(default_factory=dict, description=(
        f"any JSON object, returned as given: at most {METADATA_MAX_DEPTH} levels deep and {METADATA_MAX_BYTES} "
        "bytes of UTF-8 JSON"))

    @field_validator("metadata")
    @classmethod
    def bounded(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        check_json(metadata, METADATA_MAX_DEPTH)
        size = len(json.dumps(metadata, ensure_ascii=False, allow_nan=False).encode("utf-8"))
        if size > METADATA_MAX_BYTES:
            raise ValueError(f"metadata is {size} bytes of JSON, over the limit of {METADATA_MAX_BYTES}")
        return metadata


class PersonCreated(BaseModel):
    person_id: str


class FaceSummary(BaseModel):
    face_id: str
    created_at: float
    quality: float


class PersonView(BaseModel):
    person_id: str
    external_id: str | None
    metadata: dict[str, Any]
    created_at: float
    faces: list[FaceSummary] = Field(default_factory=list)


class PersonPage(BaseModel):
    persons: list[PersonView]
    next_cursor: str | None


class FaceEnrol(Body):
    image: str = Field(..., description=IMAGE)
    face_index: int | None = Field(None, ge=0, le=1000, description="which face, when the image holds several (largest first)")


class FaceEnrolled(BaseModel):
    face_id: str
    quality: float


# ---- corrections: rejections, merge, move ---------------------------------------------------------------------
class RejectionCreate(Body):
    """"Not this person": exactly one of `image` (its face; `face_index` picks one of several), `face_id` (an
    enrolled face of another person of this tenant) or `unknown_id` (an anonymous id from the camera events)."""

    image: str | None = Field(None, description=IMAGE)
    face_index: int | None = Field(None, ge=0, le=1000, description="which face of `image` (largest first)")
    face_id: str | None = Field(None, min_length=1, max_length=64)
    unknown_id: str | None = Field(None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def one_source(self):
        if sum(v is not None for v in (self.image, self.face_id, self.unknown_id)) != 1:
            raise ValueError("give exactly one of image, face_id or unknown_id")
        if self.face_index is not None and self.image is None:
            raise ValueError("face_index goes with image")
        return self


class RejectionsAdded(BaseModel):
    person_id: str
    rejection_ids: list[str] = Field(..., description="one per vector stored (an unknown gives one per kept sample)")


class RejectionView(BaseModel):
    rejection_id: str
    source: str = Field(..., description="image, face or unknown")
    created_at: float


class RejectionList(BaseModel):
    person_id: str
    rejections: list[RejectionView]


class PersonMerge(Body):
    merged_person_id: str = Field(..., min_length=1, max_length=64, description="the person absorbed (deleted after)")


class PersonsMerged(BaseModel):
    person_id: str = Field(..., description="the surviving person")
    merged_person_id: str = Field(..., description="the absorbed person: answers 404 from now on")
    faces_moved: int
    rejections_moved: int
    events_relinked: int = Field(0, description="camera events of the merged person now naming the surviving one")


class FaceMove(Body):
    to_person_id: str = Field(..., min_length=1, max_length=64)


class FaceMoved(BaseModel):
    face_id: str
    person_id: str = Field(..., description="the face's person now")


# ---- bulk import ----------------------------------------------------------------------------------------------
IMPORT_MAX_ITEMS = 64  # photos per call; the body limit (limits.max_body_bytes) bounds their bytes


class ImportItem(PersonCreate):
    """One photo of a person named by `external_id` (created with `metadata` when the tenant has no such person)."""

    external_id: str = Field(..., min_length=1, max_length=256)
    image: str = Field(..., description=IMAGE)


class ImportRequest(Body):
    items: list[ImportItem] = Field(..., min_length=1, max_length=IMPORT_MAX_ITEMS)


class ImportRefusal(BaseModel):
    code: str = Field(..., examples=["no_face"], description="no_face, multiple_faces, low_quality, invalid_image, image_too_large")
    message: str
    reasons: list[dict[str, Any]] | None = Field(None, description="low_quality: the failed gates")
    faces: list[list[float]] | None = Field(None, description="multiple_faces: the boxes found, largest first")


class ImportedItem(BaseModel):
    index: int = Field(..., description="position in the request's items")
    external_id: str
    status: str = Field(..., description="enrolled, skipped (this photo of this person is already enrolled) or refused")
    person_id: str | None = None
    face_id: str | None = None
    quality: float | None = None
    error: ImportRefusal | None = Field(None, description="why a refused photo was refused")


class ImportResponse(BaseModel):
    items: list[ImportedItem]
    enrolled: int
    skipped: int
    refused: int


class SearchRequest(Body):
    image: str = Field(..., description=IMAGE)
    threshold: float | None = Field(None, ge=-1, le=1)
    top_k: int = Field(1, ge=1, le=100)
    max_faces: int | None = Field(None, ge=1, le=1000)


class SearchMatch(BaseModel):
    person_id: str
    external_id: str | None
    face_id: str | None = Field(None, description="the best matching face; null when matching on centroids")
    similarity: float


class SearchedFace(BaseModel):
    bbox: list[float]
    score: float
    matches: list[SearchMatch]


class SearchResponse(BaseModel):
    faces: list[SearchedFace]
    threshold: float


class AuditEvent(BaseModel):
    seq: int
    at: float
    actor: str = Field(..., description="key:<api key id>, admin, or retention")
    action: str = Field(..., examples=["face.enrol"])
    outcome: str = Field(..., description="ok, or the error code")
    counts: dict[str, float]
    ids: dict[str, str] = Field(default_factory=dict, description="corrections: the person, face ids they touched")


class AuditPage(BaseModel):
    events: list[AuditEvent]
    next_since: int = Field(..., description="pass as `since` for the next page")


class AuditVerification(BaseModel):
    """An audit chain checked against its hash links and its provider-MACed checkpoints (tenancy/chain.py)."""

    intact: bool
    first_bad_seq: int | None = Field(..., description="earliest entry that may have been tampered with")
    reason: str | None = Field(..., description="edited, deleted, reordered, truncated, rewritten or checkpoint_forged")
    detail: str
    entries: int
    checkpoints: int = Field(..., description="checkpoints whose MAC verified")
    last_checkpoint_seq: int
    unsealed_tail: int = Field(..., description="entries after the newest checkpoint: hash-linked, not yet MACed")
    anchored_seq: int | None = Field(None, description="where the copy of the chain's newest checkpoint kept outside "
                                     "its file says it reaches (entries cut below it show as truncated); None: no copy yet")
    anchored_in: str | None = Field(None, description="where that copy is kept: org_audit (a tenant chain's mirror) "
                                    "or key_store (the org chain's anchor)")


class OrgAuditEvent(BaseModel):
    seq: int
    at: float
    actor: str = Field(..., description="admin:<key name>, admin, or rotation")
    action: str = Field(..., examples=["tenant.erase"])
    outcome: str
    details: dict[str, Any] = Field(..., description="ids and counts (an erasure receipt: what was destroyed)")


class OrgAuditPage(BaseModel):
    events: list[OrgAuditEvent]
    next_since: int


class ReceiptSignature(BaseModel):
    key_id: str = Field(..., description="the signing key (a KMS key ARN, an HSM label, local:vN)")
    algorithm: str = Field(..., examples=["ECDSA_P256_SHA256"])
    value: str = Field(..., description="base64 of the DER ECDSA signature over the receipt's canonical JSON "
                       "(keys sorted, separators ',' and ':', UTF-8)")
    public_key_pem: str | None = Field(None, description="the key that checks it (also at GET /v1/erasure-receipts/keys)")


class ErasureReceipt(BaseModel):
    """What was destroyed when a tenant was erased, signed so that anyone holding the public key can check it."""

    receipt: dict[str, Any] = Field(..., description="type, tenant_id, deleted_at (ISO 8601), counts, key_ids")
    signature: ReceiptSignature
    org_audit_seq: int = Field(..., description="the org audit entry that holds it")


class SigningKeyView(BaseModel):
    key_id: str
    algorithm: str
    public_key_pem: str


class SigningKeys(BaseModel):
    keys: list[SigningKeyView] = Field(..., description="the current key first; older ones check older receipts")


# ---- keys and health ----------------------------------------------------------------------------------------
class RootKeyRotation(BaseModel):
    previous_root_id: str
    root_id: str
    rewrapped: int
    tenants: int


class KeyRotation(BaseModel):
    tenant_id: str
    version: int
    state: str = Field(..., description="running, done or failed")
    remaining: int | None
    total: int | None
    error: str | None = None


class KeyCache(BaseModel):
    hits: int
    misses: int


class KeyStatus(BaseModel):
    provider: str
    root_id: str
    tenant_count: int
    tenants: dict[str, dict[str, Any]]
    rotations: dict[str, KeyRotation]
    cache: KeyCache = Field(..., description="the unwrapped-key cache of the key service")


class MigrationStart(Body):
    """A tenant's gallery re-embedded with another served pack from its kept crops (tenancy/migration.py)."""

    to: str = Field(..., min_length=1, max_length=32, description="a pack name: `default` or one of settings `packs`")
    batch_size: int = Field(64, ge=1, le=1024, description="crops re-embedded per step (one commit each)")
    hold: bool = Field(False, description="build the shadow index, then wait: POST again with hold false to switch")
    pause_s: float = Field(0.0, ge=0, le=60, description="pause between batches, leaving the CPU to live traffic")


class MigrationStatus(BaseModel):
    tenant_id: str
    pack: str
    from_model: str
    to_model: str
    dim: int
    state: str = Field(..., description="running, ready (shadow complete, held before the switch), done or failed")
    hold: bool
    batch_size: int
    done: int | None = Field(None, description="faces with a vector of the new model")
    total: int | None = Field(None, description="faces of the tenant")
    crops_per_s: float | None = Field(None, description="re-embedding rate, pauses excluded")
    pause_s: float = 0.0
    error: str | None = None
    started_at: float
    updated_at: float


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    detector: dict[str, Any]
    embedder: dict[str, Any]
    keys: bool
    storage: dict[str, Any] = Field(default_factory=dict, description="the data disk: writable, free_bytes")
