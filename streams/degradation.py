"""Faces as cameras see them: a crowd clip of enrolled people and strangers, degraded the way corridor and
CCTV cameras degrade faces, and the score of a camera's events against the clip's ground truth.

Used by `benchmarks/degraded.py` and tests/streams/test_degraded.py (built at run time, never committed).

    faces = crowd_faces(faces_root, models_dir)            # real photos: ../shared/faces and insightface's t1.jpg
    scene = crowd_scene(faces.faces, face_px=60)           # 3 faces on screen at a time, each ~3 s
    frames = clip_jpegs(scene, faces.cuts, Condition(60, blur=True, dim=True))
    score(events, scene, faces.enrolled)                   # recall, wrong names, unknown events...

A condition is a face size (the face box's width in frame pixels, as SCRFD measures it on the photo) and any
of: horizontal motion blur over `BLUR_SHARE` of the face width (a walking person at a 1/60 s shutter), light
at `LIGHT` of normal (pixel values scaled before JPEG, as an underexposed sensor gives them) and sensor noise
(Gaussian, sigma `NOISE_SIGMA` levels). Enrolment uses each identity's photo 1; the clip shows every other
photo of them (and their faces in the group photos of ../shared/faces/scenes), so no clip face is an
enrolment photo. Strangers are the six people of insightface's t1.jpg and two people of ../shared/faces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from streams.testmedia import Appearance, FaceCuts, Scene, render_frames

BLUR_SHARE = 0.12
LIGHT = 0.45
NOISE_SIGMA = 6.0
JPEG_QUALITY = 85
STRANGER = "stranger:"  # prefix of a stranger's identity in a scene

ENROLLED = ("obama", "biden", "kit_harington", "rose_leslie", "alex_lacamoire")
# Faces of multi-face photos, left to right (by box x), each an identity or None (not used). two_people.jpg
# and rgba_32bit.png are left out: they are near-copies of identity photos (cosine 0.97-0.999 with the dev pack).
GROUP_PHOTOS = {
    "scenes/obama_and_biden.jpg": ("biden", "obama", STRANGER + "obama_and_biden_3"),
    "scenes/kit_with_rose.jpg": ("rose_leslie", "kit_harington"),
    "scenes/lin_manuel_miranda.png": (STRANGER + "lin_manuel_miranda",),
}
T1_PEOPLE = 6


@dataclass(frozen=True)
class Condition:
    face_px: int
    blur: bool = False
    dim: bool = False
    noise: bool = False

    @property
    def name(self) -> str:
        parts = [p for p, on in (("blur", self.blur), ("dim", self.dim), ("noise", self.noise)) if on]
        return f"{self.face_px}px " + ("+".join(parts) or "clean")

    @property
    def blur_px(self) -> int:
        return max(2, round(self.face_px * BLUR_SHARE)) if self.blur else 0


def conditions(sizes=(40, 60, 80)) -> list[Condition]:
    """Each degradation alone and together, at every size."""
    kinds = [{}, {"blur": True}, {"dim": True}, {"noise": True}, {"blur": True, "dim": True},
             {"blur": True, "dim": True, "noise": True}]
    return [Condition(px, **kind) for px in sizes for kind in kinds]


def degrade(frame: np.ndarray, condition: Condition, rng: np.random.Generator) -> np.ndarray:
    out = frame.astype(np.float32)
    if condition.blur:
        length = condition.blur_px
        kernel = np.full((1, length), 1.0 / length, np.float32)
        out = cv2.filter2D(out, -1, kernel, borderType=cv2.BORDER_REFLECT)
    if condition.dim:
        out *= LIGHT
    if condition.noise:
        out += rng.normal(0.0, NOISE_SIGMA, out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class CrowdFace:
    """One face that can walk through a clip: its cut (key into FaceCuts) and how wide its face is in the cut."""

    identity: str  # an enrolled identity, or STRANGER + name
    key: Path
    width_share: float  # face box width / cut side

    @property
    def stranger(self) -> bool:
        return self.identity.startswith(STRANGER)


@dataclass
class CrowdFaces:
    faces: list[CrowdFace]
    cuts: FaceCuts
    enrolment: dict[str, Path]  # identity -> the photo it is enrolled with
    enrolled: tuple[str, ...] = ENROLLED
    skipped: list[str] = field(default_factory=list)


def group_photo() -> Path:
    """insightface's own group photo of six people (ships in the wheel)."""
    import insightface

    return Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"


def crowd_faces(faces_root: str | Path, models_dir: str | Path) -> CrowdFaces:
    """Cuts of every face the crowd clips use, found with the pack's own SCRFD at its default size."""
    from vision.detector import FaceDetector
    from vision.packs import resolve_pack
    from vision.runtime import onnx_providers

    root = Path(faces_root)
    detector = FaceDetector(resolve_pack(str(models_dir), allow_download=False), onnx_providers(False), threads=1)
    cuts, faces, enrolment = FaceCuts(), [], {}
    sources: list[tuple[Path, tuple[str | None, ...]]] = []
    for identity in ENROLLED:
        photos = sorted((root / "identities" / identity).glob(f"{identity}_*.*"))
        enrolment[identity] = photos[0]
        sources += [(p, (identity,)) for p in photos[1:]]
    sources += [(root / rel, labels) for rel, labels in GROUP_PHOTOS.items()]
    sources.append((group_photo(), tuple(f"{STRANGER}t1_{k + 1}" for k in range(T1_PEOPLE))))
    for photo, labels in sources:
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        found = sorted(detector.detect(image), key=lambda f: f.bbox[0])
        if len(found) != len(labels):
            raise ValueError(f"{photo}: {len(found)} faces found, {len(labels)} expected")
        for k, (face, identity) in enumerate(zip(found, labels)):
            key = Path(f"{photo}#{k}")
            cuts.cuts[key], share = _cut(image, face.bbox)
            faces.append(CrowdFace(identity, key, share))
    return CrowdFaces(faces, cuts, enrolment)


def _cut(image: np.ndarray, bbox) -> tuple[np.ndarray, float]:
    """A square twice the face box's longer side, centred on it (mirrored past the photo's edges)."""
    x1, y1, x2, y2 = bbox
    half = max(x2 - x1, y2 - y1)
    pad = int(half * 2) + 2
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    x0, y0 = int((x1 + x2) / 2 - half) + pad, int((y1 + y2) / 2 - half) + pad
    cut = padded[y0 : y0 + int(2 * half), x0 : x0 + int(2 * half)].copy()
    return cut, (x2 - x1) / cut.shape[1]


def crowd_scene(faces: list[CrowdFace], face_px: int, *, lanes: int = 3, each_s: float = 3.0, stagger_s: float = 1.2,
                fps: int = 5, width: int = 640, height: int = 360, name: str = "crowd") -> Scene:
    """Every face once, strangers spread among the enrolled: the i-th enters lane i % lanes at i * stagger_s and
    drifts across half the lane's width for each_s (with the defaults 3 faces are on screen at once, and a lane
    is empty for 0.6 s before its next face)."""
    enrolled = [f for f in faces if not f.stranger]
    strangers = [f for f in faces if f.stranger]
    # Strangers spread evenly among the enrolled: each group's faces at (k + 0.5) / len(group) of the clip.
    spread = [((k + 0.5) / len(group), g, k) for g, group in enumerate((enrolled, strangers)) for k in range(len(group))]
    order = [(enrolled, strangers)[g][k] for _, g, k in sorted(spread)]
    appearances = []
    for i, face in enumerate(order):
        lane = i % lanes
        left, right = (lane + 0.25) / lanes, (lane + 0.75) / lanes
        y = 0.42 if lane % 2 == 0 else 0.6
        start, end = (left, y), (right, y)
        if lane % 2:
            start, end = end, start
        side = int(round(face_px / face.width_share))
        appearances.append(Appearance(face.identity, face.key, i * stagger_s, i * stagger_s + each_s, start, end, side, side))
    duration = len(order) * stagger_s + each_s + 2.0  # a quiet tail: the last tracks end inside the clip
    return Scene(name, tuple(appearances), duration, width, height, fps)


def clip_jpegs(scene: Scene, cuts: FaceCuts, condition: Condition, seed: int = 0) -> list[tuple[float, bytes]]:
    """(time_s, JPEG) per frame: the scene under the condition, as a camera pushing frames sends it."""
    rng = np.random.default_rng(seed)
    out = []
    for t, frame in render_frames(scene, cuts):
        degraded = degrade(frame, condition, rng)
        out.append((t, cv2.imencode(".jpg", degraded, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()))
    return out


# ---- scoring ----------------------------------------------------------------------------------------------
ATTRIBUTION_SLACK_S = 0.5  # an event's span may start/end this much outside the appearance it belongs to


def score(events: list[dict], scene: Scene, enrolled: tuple[str, ...] = ENROLLED) -> dict:
    """The camera's events against the scene. A person_seen event is right when that person is on screen
    during it, and a wrong name otherwise; unknown_seen events go to the overlapping appearance that entered
    nearest to the event's start. Per appearance: recognised (a right event), unknown (only unknown events),
    or missed (no event)."""
    shown = [(i, a) for i, a in enumerate(scene.appearances)]
    outcome: dict[int, set[str]] = {i: set() for i, _ in shown}
    wrong: list[dict] = []

    def overlapping(event: dict) -> list[tuple[int, Appearance]]:
        lo, hi = event["first_offset_s"] - ATTRIBUTION_SLACK_S, event["last_offset_s"] + ATTRIBUTION_SLACK_S
        return [(i, a) for i, a in shown if a.start_s <= hi and lo <= a.end_s]

    for event in events:
        candidates = overlapping(event)
        if event["kind"] == "person_seen":
            named = [(i, a) for i, a in candidates if a.identity == event["external_id"]]
            if named:
                for i, _ in named:
                    outcome[i].add("recognised")
            else:
                wrong.append({"named": event["external_id"], "on_screen": sorted({a.identity for _, a in candidates}),
                              "first_offset_s": event["first_offset_s"]})
        elif candidates:
            i, _ = min(candidates, key=lambda c: abs(c[1].start_s - event["first_offset_s"]))
            outcome[i].add("unknown")
    people = [i for i, a in shown if a.identity in enrolled]
    strangers = [i for i, a in shown if a.identity.startswith(STRANGER)]
    recognised = [i for i in people if "recognised" in outcome[i]]
    latencies = [e["latency_s"] for e in events if e.get("latency_s") is not None]
    return {
        "enrolled_shown": len(people),
        "recognised": len(recognised),
        "recall": round(len(recognised) / len(people), 4) if people else None,
        "wrong_names": len(wrong),
        "wrong": wrong,
        "enrolled_unknown": sum(1 for i in people if outcome[i] == {"unknown"}),
        "enrolled_missed": sum(1 for i in people if not outcome[i]),
        "strangers_shown": len(strangers),
        "stranger_unknown_rate": round(sum(1 for i in strangers if "unknown" in outcome[i]) / len(strangers), 4) if strangers else None,
        "events": len(events),
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
        "latency_p95_s": round(float(np.percentile(latencies, 95)), 3) if latencies else None,
        "missed_identities": sorted(scene.appearances[i].identity for i in people if i not in recognised),
    }
