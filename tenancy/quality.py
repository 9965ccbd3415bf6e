"""Enrolment quality gates: is this face good enough to become someone's reference?

Cheap measures from what detection already gives (vision/quality.py): face size, sharpness of the aligned
crop, its exposure, a yaw proxy from the 5 landmarks, and the detector's score. Each failed gate is a reason
the client can act on.
`enrolment_face` is the gate enrolment goes through: which face of a picture, and is it good enough.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from securegate import errors
from vision.quality import FaceQuality, measure


@dataclass(frozen=True)
class QualityReport:
    score: float  # 0..1, a summary for ranking a person's faces; gates decide acceptance
    reasons: list[dict]  # one per failed gate: {"gate", "value", "limit"}
    measures: dict

    @property
    def passed(self) -> bool:
        return not self.reasons


def assess(bbox, landmarks, crop: np.ndarray, det_score: float, gates) -> QualityReport:
    """`gates` has min_face_px, min_sharpness, max_yaw, min_det_score, min_brightness (tenancy.tenant.QualityGates)."""
    return report(measure(bbox, landmarks, crop, det_score), gates)


def report(quality: FaceQuality, gates) -> QualityReport:
    measures = quality.as_dict()
    reasons = []
    if quality.face_px < gates.min_face_px:
        reasons.append({"gate": "face_size", "value": measures["face_px"], "limit": gates.min_face_px})
    if quality.sharpness < gates.min_sharpness:
        reasons.append({"gate": "blur", "value": measures["sharpness"], "limit": gates.min_sharpness})
    if quality.yaw > gates.max_yaw:
        reasons.append({"gate": "pose", "value": measures["yaw"], "limit": gates.max_yaw})
    if quality.det_score < gates.min_det_score:
        reasons.append({"gate": "det_score", "value": measures["det_score"], "limit": gates.min_det_score})
    if quality.brightness < gates.min_brightness:
        reasons.append({"gate": "exposure", "value": measures["brightness"], "limit": gates.min_brightness})
    return QualityReport(round(quality.score(), 4), reasons, measures)


def chosen_face(faces: Sequence, face_index: int | None):
    """The face of a picture a request means: `face_index` picks one of several faces, else the picture must
    hold one. Refuses with multiple_faces or invalid_request (index out of range)."""
    if face_index is None and len(faces) > 1:
        raise errors.MultipleFaces(f"the image holds {len(faces)} faces; pick one with face_index",
                                   faces=[f.summary()["bbox"] for f in faces])
    if face_index is not None and face_index >= len(faces):
        raise errors.InvalidRequest(f"face_index {face_index} is out of range: {len(faces)} face(s) found")
    return faces[face_index or 0]


def enrolment_face(faces: Sequence, face_index: int | None, gates):
    """The face of a picture to enrol (`chosen_face`) and its report; refuses with low_quality (the failed gates
    as reasons). `faces` are vision.detector.DetectedFace."""
    face = chosen_face(faces, face_index)
    report = assess(face.bbox, face.landmarks, face.crop, face.score, gates)
    if not report.passed:
        raise errors.LowQuality("the face is not good enough to enrol", reasons=report.reasons)
    return face, report
