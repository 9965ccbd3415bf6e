"""The TenantSupervisor's operations on a tenant's gallery, typed: one request type per TenantSupervisor method, and the answer
it gets. The caller says who it is (an API key, authenticated inside the operation, or a part of SecureGate
acting for a tenant); the TenantSupervisor answers with the tenant's id and model, so the Ingress can label its metrics
and pick the Embedder of the tenant's model next time (deployments/ingress.py).

Plain types: the Ingress and the camera workers unpickle them, so this module imports numpy and the tenant's
plain types only (tests/test_layering.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tenancy.tenant import Tenant, parse_api_key


# ------------------------------------------------------------------------------------------------ callers
@dataclass(frozen=True)
class ApiKeyCaller:
    """A client, by its API key: authenticated, and charged the request's rate-limit cost, inside the operation."""

    api_key: str = field(repr=False)

    @property
    def principal(self) -> str:
        """Who the audit names: the key's public id, never its secret."""
        return f"key:{parse_api_key(self.api_key)[0]}"


@dataclass(frozen=True)
class InternalCaller:
    """A part of SecureGate acting for a tenant it already knows (a camera worker; the Ingress finishing a request
    it authenticated): trusted, not rate limited, named `principal` in the audit."""

    tenant_id: str
    principal: str


Caller = ApiKeyCaller | InternalCaller


# ------------------------------------------------------------------------------------------------ requests
# eq=False: requests carry numpy arrays, which have no truth value to compare by.
@dataclass(frozen=True, eq=False)
class Search:
    """Every face of an image against the gallery: per vector, up to `top_k` persons at or above the threshold."""

    caller: Caller
    vectors: np.ndarray  # [n, dim] unit rows
    model: str  # the model id the vectors were embedded with ("name/dim"); refused unless it is the tenant's
    top_k: int = 1
    threshold: float | None = None  # None: the tenant's, then the deployment's, then the model's default


@dataclass(frozen=True, eq=False)
class VerifyPerson:
    """One probe against one enrolled person (their faces, or their centroid: the tenant's `match_on`)."""

    caller: Caller
    vector: np.ndarray  # [dim] unit vector
    model: str
    person_id: str
    threshold: float | None = None


@dataclass(frozen=True)
class CreatePerson:
    caller: Caller
    external_id: str | None = None
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GetPerson:
    caller: Caller
    person_id: str


@dataclass(frozen=True)
class ListPersons:
    caller: Caller
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class FindPerson:
    """The person holding an external id, found through the blind index (tenancy/personal.py), not by reading
    pages: answered as a page of that one person, or of none."""

    caller: Caller
    external_id: str


@dataclass(frozen=True, eq=False)
class CreatePersonWithFaces:
    """A person and all their faces in one durable commit, under the id the caller chose: a camera unknown promoted
    (streams/promotion.py), whose vectors passed the quality gates when the camera embedded them (no photo, no
    crop). Idempotent on the id: a person already made under it (a retried promotion) is answered as it stands."""

    caller: Caller
    person_id: str
    external_id: str | None
    metadata: dict
    vectors: np.ndarray  # [n, dim]
    model: str


@dataclass(frozen=True)
class DeletePerson:
    caller: Caller
    person_id: str


@dataclass(frozen=True, eq=False)
class FaceSample:
    """A detected face of a photo, embedded: what an enrolment stores (the crop only if the tenant keeps them)."""

    bbox: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    score: float
    crop: np.ndarray  # aligned BGR uint8 (the quality gates measure its sharpness)
    vector: np.ndarray  # [dim] unit vector


@dataclass(frozen=True, eq=False)
class EnrolFace:
    """A face becomes a reference of the person if it passes the tenant's quality gates."""

    caller: Caller
    person_id: str
    face: FaceSample
    model: str


@dataclass(frozen=True, eq=False)
class AddSamples:
    """Vectors that passed the quality gates when a camera embedded them become faces of the person (a promoted
    unknown); no photo, no crop."""

    caller: Caller
    person_id: str
    vectors: np.ndarray  # [n, dim]
    model: str


@dataclass(frozen=True)
class DeleteFace:
    caller: Caller
    person_id: str
    face_id: str


@dataclass(frozen=True, eq=False)
class AddRejections:
    """"Not this person": each vector becomes a sealed negative example of the person."""

    caller: Caller
    person_id: str
    vectors: np.ndarray  # [n, dim]
    model: str
    source: str  # "image" | "unknown"


@dataclass(frozen=True)
class RejectFace:
    """A rejection made of an enrolled face of another person of the tenant (its vector never leaves the actors)."""

    caller: Caller
    person_id: str
    face_id: str


@dataclass(frozen=True)
class ListRejections:
    caller: Caller
    person_id: str


@dataclass(frozen=True)
class DeleteRejection:
    caller: Caller
    person_id: str
    rejection_id: str


@dataclass(frozen=True)
class MergePersons:
    caller: Caller
    person_id: str
    merged_person_id: str


@dataclass(frozen=True)
class MoveFace:
    caller: Caller
    person_id: str
    face_id: str
    to_person_id: str


@dataclass(frozen=True)
class FindImported:
    """Bulk import's first half: which (external id, photo SHA-256) were imported before. Answers the tenant too:
    the Ingress gates the photos with its quality settings."""

    caller: Caller
    photos: list[tuple[str, bytes]]


@dataclass(frozen=True, eq=False)
class ImportFaces:
    """Bulk import's second half: persons found or created by external id, faces stored, in one durable commit.
    `items`: {external_id, metadata, digest, vector, det_score, quality, crop?} (tenancy/bulk_import.py)."""

    caller: Caller
    items: list[dict]
    model: str
    # The call's rate-limit token was spent by its first half (FindImported).
    rate_cost = 0.0


@dataclass(frozen=True)
class AuditEvents:
    caller: Caller
    since: int = 0
    limit: int = 100


@dataclass(frozen=True)
class VerifyAudit:
    caller: Caller


# ------------------------------------------------------------------------------------------------ answers
@dataclass(frozen=True, slots=True)
class Match:
    """A person found for a probe (similarity rounded to 6 places, after any merge across shards)."""

    person_id: str
    external_id: str | None
    face_id: str | None  # None when matched on the person's centroid
    similarity: float


@dataclass(frozen=True)
class Answer:
    """What every answer carries: whose gallery answered, and the model its vectors are of."""

    tenant_id: str
    model: str


@dataclass(frozen=True)
class SearchAnswer(Answer):
    faces: list[list[Match]]  # per probe vector, best first
    threshold: float


@dataclass(frozen=True)
class Verification(Answer):
    similarity: float
    match: bool
    threshold: float
    best_face_similarity: float
    centroid_similarity: float
    best_rejection_similarity: float | None
    rejected: bool


@dataclass(frozen=True)
class Done(Answer):
    """A deletion's answer: nothing but who answered."""


@dataclass(frozen=True)
class PersonCreated(Answer):
    person_id: str


@dataclass(frozen=True)
class PersonWithFacesCreated(Answer):
    person_id: str
    external_id: str | None
    faces: int
    created: bool  # False: a person was already made under the id (a retried promotion); nothing was added


@dataclass(frozen=True)
class FaceView:
    face_id: str
    created_at: float
    quality: float | None


@dataclass(frozen=True)
class PersonView(Answer):
    person_id: str
    external_id: str | None
    metadata: dict
    created_at: float
    faces: list[FaceView]


@dataclass(frozen=True)
class PersonSummary:
    person_id: str
    external_id: str | None
    metadata: dict
    created_at: float


@dataclass(frozen=True)
class PersonPage(Answer):
    persons: list[PersonSummary]
    next_cursor: str | None


@dataclass(frozen=True)
class FaceEnrolled(Answer):
    face_id: str
    quality: float


@dataclass(frozen=True)
class FacesAdded(Answer):
    face_ids: list[str]


@dataclass(frozen=True)
class RejectionsAdded(Answer):
    person_id: str
    rejection_ids: list[str]


@dataclass(frozen=True)
class RejectionList(Answer):
    person_id: str
    rejections: list[dict]  # {rejection_id, source, created_at}


@dataclass(frozen=True)
class PersonsMerged(Answer):
    person_id: str
    merged_person_id: str
    faces_moved: int
    rejections_moved: int
    external_id: str | None  # of `person_id`, for relinking camera events


@dataclass(frozen=True)
class FaceMoved(Answer):
    face_id: str
    person_id: str


@dataclass(frozen=True)
class ImportedFound(Answer):
    tenant: Tenant
    found: list[dict | None]  # per photo: {person_id, face_id} it was imported as, or None


@dataclass(frozen=True)
class FacesImported(Answer):
    results: list[dict]  # per item: {status, person_id, face_id, quality, created_person}


@dataclass(frozen=True)
class AuditPage(Answer):
    events: list[dict]


@dataclass(frozen=True)
class AuditVerification(Answer):
    result: dict  # tenancy.chain.VerifyResult.to_dict()
