"""How well a detected face can serve recognition, from what the models give for free.

Signals of one face (`FaceQuality`): the detector's score, the face box's shorter side, sharpness (variance of
the Laplacian of the aligned crop, once its exposure is normalised), brightness (mean luma of the crop's face
region), a yaw proxy from the 5 landmarks, and the recognizer's unnormalised embedding norm (ArcFace-family
models give low-quality faces shorter vectors). Enrolment gates them (tenancy/quality.py); cameras weight a
track's frames by them and pick its best frame (streams/tracking.py). docs/cameras-quality.md: what each is worth.

`normalise_exposure` brightens a dim crop to `EXPOSURE_TARGET` before it is embedded. Underexposure scales the
encoded values by about one factor (for a power-law camera response, (k·L)^(1/γ) = k^(1/γ)·L^(1/γ)), so one gain
undoes most of it; what it cannot undo is the detail JPEG quantised away in the dark.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

# Measured on the enrolment photos of ../shared/faces (aligned crops' face region: mean luma 103-159).
EXPOSURE_TARGET = 110.0
MAX_GAIN = 3.0  # past this the crop is mostly amplified noise
# The face region of an ArcFace-aligned crop (eyes at ~0.46 of the height, mouth at ~0.82), as shares of its side.
_FACE_ROWS, _FACE_COLS = (0.25, 0.95), (0.2, 0.8)


@dataclass(frozen=True)
class FaceQuality:
    det_score: float
    face_px: float  # shorter side of the face box, in image pixels
    sharpness: float  # variance of the Laplacian of the exposure-normalised aligned crop (grey)
    brightness: float  # mean luma of the aligned crop's face region, before normalisation (0-255)
    yaw: float  # nose offset from the eyes' midline / eye distance: 0 frontal, ~1 profile
    embedding_norm: float | None = None  # the recognizer's raw vector length, once embedded

    def score(self) -> float:
        """0..1, for ranking faces: the detector's confidence, scaled down for small, blurred and turned faces."""
        return float(np.clip(self.det_score, 0, 1) * min(1.0, self.face_px / 112) * min(1.0, self.sharpness / 100)
                     * max(0.0, 1 - self.yaw))

    def with_norm(self, norm: float) -> "FaceQuality":
        return replace(self, embedding_norm=float(norm))

    def as_dict(self) -> dict:
        out = {"face_px": round(self.face_px, 1), "sharpness": round(self.sharpness, 1), "yaw": round(self.yaw, 3),
               "det_score": round(self.det_score, 4), "brightness": round(self.brightness, 1)}
        if self.embedding_norm is not None:
            out["embedding_norm"] = round(self.embedding_norm, 3)
        return out


# `securegate eval` reports FAR/FRR per band of FaceQuality.score (a pair is in the band of its worse face).
QUALITY_BANDS = (("low", 0.0), ("medium", 0.3), ("high", 0.6))  # (name, lowest score)


def band(score: float) -> int:
    """Index into QUALITY_BANDS."""
    return max(i for i, (_, lowest) in enumerate(QUALITY_BANDS) if score >= lowest or i == 0)


def brightness(crop: np.ndarray) -> float:
    size = crop.shape[0]
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    rows = slice(int(_FACE_ROWS[0] * size), int(_FACE_ROWS[1] * size))
    cols = slice(int(_FACE_COLS[0] * size), int(_FACE_COLS[1] * size))
    return float(grey[rows, cols].mean())


def exposure_gain(level: float) -> float:
    """The gain that brings a face region of mean luma `level` to EXPOSURE_TARGET; 1 for one already there."""
    return float(np.clip(EXPOSURE_TARGET / max(level, 1.0), 1.0, MAX_GAIN))


def normalise_exposure(crop: np.ndarray, level: float | None = None) -> np.ndarray:
    """The crop brightened to EXPOSURE_TARGET (never darkened); `level` is its brightness if known."""
    gain = exposure_gain(brightness(crop) if level is None else level)
    if gain == 1.0:
        return crop
    return cv2.convertScaleAbs(crop, alpha=gain)


def yaw_proxy(landmarks) -> float:
    pts = np.asarray(landmarks, np.float64)
    left_eye, right_eye, nose = pts[0], pts[1], pts[2]
    eye_distance = float(np.linalg.norm(right_eye - left_eye)) or 1.0
    # A frontal nose sits on the eyes' midline; its horizontal offset over eye distance grows with yaw.
    return abs(float(nose[0] - (left_eye[0] + right_eye[0]) / 2)) / eye_distance


def measure(bbox, landmarks, crop: np.ndarray, det_score: float) -> FaceQuality:
    x1, y1, x2, y2 = bbox
    level = brightness(crop)
    grey = cv2.cvtColor(normalise_exposure(crop, level), cv2.COLOR_BGR2GRAY)
    return FaceQuality(det_score=float(det_score), face_px=float(min(x2 - x1, y2 - y1)),
                       sharpness=float(cv2.Laplacian(grey, cv2.CV_64F).var()), brightness=level,
                       yaw=yaw_proxy(landmarks))
