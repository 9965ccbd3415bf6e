"""Search by image."""

from pydantic import BaseModel, Field

from securegate.schemas.base import Body, IMAGE


class SearchOptions(Body):
    """Search's options: the JSON form's fields beside `image`, the raw image form's query parameters."""

    threshold: float | None = Field(None, ge=-1, le=1)
    top_k: int = Field(1, ge=1, le=100)
    max_faces: int | None = Field(None, ge=1, le=1000)


class SearchRequest(SearchOptions):
    image: str = Field(..., description=IMAGE)


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
