"""SCRFD through insightface: image (BGR) -> faces with 5 landmarks and crops aligned by ``norm_crop``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vision.packs import ModelPack
from vision.runtime import session_options


@dataclass(frozen=True)
class DetectedFace:
    bbox: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]  # 5 points: eyes, nose, mouth corners
    score: float
    crop: np.ndarray | None  # aligned BGR uint8, recognizer_input_size square (None once embedded and not kept)
    vector: np.ndarray | None = None  # [dim] unit vector, when the Detector embedded the face (deployments/detector.py)

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.bbox
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)

    def summary(self) -> dict:
        return {
            "bbox": [round(v, 2) for v in self.bbox],
            "landmarks": [[round(x, 2), round(y, 2)] for x, y in self.landmarks],
            "score": round(self.score, 4),
        }


def fitted_input_size(width: int, height: int, side: int) -> tuple[int, int]:
    """(w, h) of the SCRFD input for an image: the long side at `side` (det_size), the short side its share rounded
    up to SCRFD's largest stride (32). insightface pads an image into a det_size square; the padding is compute
    spent on no pixels (a 4:3 photo: 25 % of the square). Same faces: benchmarks/pipeline.py, docs/benchmarks.md."""
    stride = 32
    if width >= height:
        return side, min(side, max(stride, -(-side * height // width // stride) * stride))
    return min(side, max(stride, -(-side * width // height // stride) * stride)), side


class FaceDetector:
    """SCRFD through insightface: image (BGR) → faces with 5 landmarks and aligned crops."""

    def __init__(
        self,
        pack: ModelPack,
        providers: list[str],
        det_size: int = 640,
        det_thresh: float = 0.5,
        threads: int | None = None,
        fit_aspect: bool = True,
    ) -> None:
        from insightface.model_zoo import get_model

        self.pack = pack
        # Fitted sizes vary per image: one dynamic-shape session serves them all (insightface would build an
        # exact-shape session per size). On the square it keeps insightface's own session, bit for bit.
        self._model = get_model(str(pack.detector_path), providers=providers, sess_options=session_options(threads),
                                static_shape_sessions=not fit_aspect)
        # ctx_id 0 keeps the providers we chose; insightface's ctx_id<0 would force CPU.
        self._model.prepare(0, input_size=(det_size, det_size), det_thresh=det_thresh)
        self.det_size = det_size
        # A model with dynamic height and width runs each image at its own aspect ratio (see _input_size);
        # a model exported at a fixed size gets that size.
        self._fits_aspect = fit_aspect and getattr(self._model, "static_input_size", None) is None
        self.providers = list(self._model.session.get_providers())

    def _input_size(self, width: int, height: int) -> tuple[int, int]:
        return fitted_input_size(width, height, self.det_size)

    def set_threshold(self, det_thresh: float) -> None:
        self._model.det_thresh = float(det_thresh)

    def detect(self, image_bgr: np.ndarray, max_faces: int = 0, *, crops: bool = True) -> list[DetectedFace]:
        """`crops=False`: boxes and landmarks only (a camera worker aligns the faces from its full frame: `enlarged`)."""
        from insightface.utils.face_align import norm_crop

        # SCRFD fits the long side to its input square and truncates the short side, which becomes 0 px
        # from an aspect ratio of side:1 on (cv2.resize then asserts). A strip under a pixel high holds no
        # face, so such an image gets the normal no-face answer without running the model.
        height, width = image_bgr.shape[:2]
        side = min(min(size) for size in (getattr(self._model, "input_sizes", None) or [self._model.input_size]))
        if min(height, width) * side <= max(height, width):
            return []
        input_size = self._input_size(width, height) if self._fits_aspect else None
        boxes, kps = self._model.detect(image_bgr, input_size=input_size, max_num=max_faces)
        size = self.pack.recognizer_input_size
        faces = []
        for box, points in zip(boxes, kps):
            crop = norm_crop(image_bgr, landmark=points, image_size=size) if crops else None
            faces.append(
                DetectedFace(
                    bbox=tuple(float(v) for v in box[:4]),
                    landmarks=tuple((float(x), float(y)) for x, y in points),
                    score=float(box[4]),
                    crop=crop,
                )
            )
        return faces


def shrunk(image_bgr: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """The image with its long side at `side`, resized as insightface resizes it for SCRFD, and the factor from
    the image to it: a camera frame travels to the Detector at its input size (a quarter of a 640x360 frame's
    bytes at 320) and SCRFD sees the same pixels. An image already that small, or one whose shrunk size
    insightface would derive again a pixel differently (its float ratio truncated: 212 → 211 px), is returned
    as it is (factor 1): the faces are then exactly the full image's."""
    import cv2

    height, width = image_bgr.shape[:2]
    if max(height, width) <= side:
        return image_bgr, 1.0
    size = _scrfd_resize(width, height, side)[1]
    if any(_scrfd_resize(*size, side, fit) != _scrfd_resize(width, height, side, fit) for fit in (True, False)):
        return image_bgr, 1.0
    return cv2.resize(image_bgr, size), size[1] / height


def _scrfd_resize(width: int, height: int, side: int, fit: bool = True) -> tuple[tuple[int, int], tuple[int, int]]:
    """SCRFD's input (w, h) for an image, fitted (`fitted_input_size`) or the det_size square, and the (w, h)
    insightface resizes the image to inside it (RetinaFace/SCRFD `_detect_candidates`, its own float arithmetic)."""
    input_w, input_h = fitted_input_size(width, height, side) if fit else (side, side)
    im_ratio, model_ratio = float(height) / width, float(input_h) / input_w
    if im_ratio > model_ratio:
        return (input_w, input_h), (int(input_h / im_ratio), input_h)
    return (input_w, input_h), (input_w, int(input_w * im_ratio))


def enlarged(faces: list[DetectedFace], scale: float, image_bgr: np.ndarray, crop_size: int) -> list[DetectedFace]:
    """Faces found on `shrunk(image_bgr)` back at the image's coordinates, each aligned from the full image (the
    crop a detection on the full image would give: SCRFD's landmarks are mapped back the same way)."""
    from insightface.utils.face_align import norm_crop

    out = []
    for face in faces:
        points = np.asarray(face.landmarks, np.float32) / scale
        out.append(DetectedFace(bbox=tuple(v / scale for v in face.bbox),
                                landmarks=tuple((float(x), float(y)) for x, y in points), score=face.score,
                                crop=norm_crop(image_bgr, landmark=points, image_size=crop_size)))
    return out
