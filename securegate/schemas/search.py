"""Search by image."""

from pydantic import BaseModel, Field

from securegate.schemas.base import Body, IMAGE


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
