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
        """(w, h) of the SCRFD input for an image: the long side at det_size, the short side its share rounded up
        to SCRFD's largest stride (32). insightface pads an image into a det_size square; the padding is compute
        spent on no pixels (a 4:3 photo: 25 % of the square). Same faces: benchmarks/pipeline.py, docs/benchmarks.md."""
        stride, side = 32, self.det_size
        if width >= height:
            return side, min(side, max(stride, -(-side * height // width // stride) * stride))
        return min(side, max(stride, -(-side * width // height // stride) * stride)), side

    def set_threshold(self, det_thresh: float) -> None:
        self._model.det_thresh = float(det_thresh)

    def detect(self, image_bgr: np.ndarray, max_faces: int = 0) -> list[DetectedFace]:
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
            crop = norm_crop(image_bgr, landmark=points, image_size=size)
            faces.append(
                DetectedFace(
                    bbox=tuple(float(v) for v in box[:4]),
                    landmarks=tuple((float(x), float(y)) for x, y in points),
                    score=float(box[4]),
                    crop=crop,
                )
            )
        return faces
