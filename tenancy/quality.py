"""Enrolment quality gates: is this face good enough to become someone's reference?

Cheap measures from what detection already gives: face size, sharpness of the aligned crop, a yaw proxy
from the 5 landmarks, and the detector's score. Each failed gate is a reason the client can act on.
`enrolment_face` is the gate enrolment goes through: which face of a picture, and is it good enough.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from securegate import errors


@dataclass(frozen=True)
class QualityReport:
    score: float  # 0..1, a summary for ranking a person's faces; gates decide acceptance
    reasons: list[dict]  # one per failed gate: {"gate", "value", "limit"}
    measures: dict

    @property
    def passed(self) -> bool:
        return not self.reasons


def assess(bbox, landmarks, crop: np.ndarray, det_score: float, gates) -> QualityReport:
    """`gates` has min_face_px, min_sharpness, max_yaw, min_det_score (tenancy.tenant.QualityGates)."""
    x1, y1, x2, y2 = bbox
    face_px = float(min(x2 - x1, y2 - y1))
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    sharpness = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    pts = np.asarray(landmarks, np.float64)
    left_eye, right_eye, nose = pts[0], pts[1], pts[2]
    eye_distance = float(np.linalg.norm(right_eye - left_eye)) or 1.0
    # A frontal nose sits on the eyes' midline; its horizontal offset over eye distance grows with yaw.
    yaw = abs(float(nose[0] - (left_eye[0] + right_eye[0]) / 2)) / eye_distance
    measures = {"face_px": round(face_px, 1), "sharpness": round(sharpness, 1), "yaw": round(yaw, 3),
                "det_score": round(float(det_score), 4)}
    reasons = []
    if face_px < gates.min_face_px:
        reasons.append({"gate": "face_size", "value": measures["face_px"], "limit": gates.min_face_px})
    if sharpness < gates.min_sharpness:
        reasons.append({"gate": "blur", "value": measures["sharpness"], "limit": gates.min_sharpness})
    if yaw > gates.max_yaw:
        reasons.append({"gate": "pose", "value": measures["yaw"], "limit": gates.max_yaw})
    if det_score < gates.min_det_score:
        reasons.append({"gate": "det_score", "value": measures["det_score"], "limit": gates.min_det_score})
    score = float(np.clip(det_score, 0, 1) * min(1.0, face_px / 112) * min(1.0, sharpness / 100) * max(0.0, 1 - yaw))
    return QualityReport(round(score, 4), reasons, measures)


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
