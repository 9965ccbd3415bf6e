"""Stateless image operations: detect, embed, verify."""

from pydantic import BaseModel, Field, model_validator

from securegate.schemas.base import Body, IMAGE


# ---- stateless ----------------------------------------------------------------------------------------------
class ImageOptions(Body):
    """Detect's and embed's options: the JSON form's fields beside `image`, the raw image form's query parameters."""

    max_faces: int | None = Field(None, ge=1, le=1000, description="largest faces first; capped by the server limit")


class ImageRequest(ImageOptions):
    image: str = Field(..., description=IMAGE)


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
