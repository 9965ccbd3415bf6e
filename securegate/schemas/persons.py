"""A tenant's persons and faces: enrolment, corrections (rejections, merge, move) and bulk import."""

import json
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from securegate.schemas.base import Body, IMAGE, METADATA_MAX_BYTES, METADATA_MAX_DEPTH, check_json


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


class FaceEnrolOptions(Body):
    """Enrolment's options: the JSON form's fields beside `image`, the raw image form's query parameters."""

    face_index: int | None = Field(None, ge=0, le=1000, description="which face, when the image holds several (largest first)")


class FaceEnrol(FaceEnrolOptions):
    image: str = Field(..., description=IMAGE)


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
