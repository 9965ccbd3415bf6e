"""Test media made from real photos: short videos of identity photos moving across a background, with the
ground-truth timeline of who is visible when.

Used by the tests (built at test time into a temporary directory, never committed) and by
`benchmarks/streams.py`. Each photo is cut to a square around its face (found with the pack's own SCRFD
detector) and pasted with a feathered edge; a face moves and scales along a straight path, may enter from
or leave through a frame edge, and two faces may be on screen at once. Videos are H.264 in MP4 (PyAV's
bundled libx264), the format RTSP servers and browsers take.

    scenes = default_scenes(faces_root)             # camera "door" and camera "hall"
    cuts = FaceCuts.from_photos(models_dir, [a.photo for s in scenes.values() for a in s.appearances])
    write_video(scenes["door"], cuts, tmp / "door.mp4")
    scenes["door"].visible_at(2.0)                  # {'obama'}
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

# A face counts as visible in the ground truth while at least this share of its cut is inside the frame.
VISIBLE_SHARE = 0.6


@dataclass(frozen=True)
class Appearance:
    """One person on screen from `start_s` to `end_s`, moving from `start` to `end` ((cx, cy) as fractions
    of the frame; values outside 0..1 are off-screen) while the cut's side grows from `size` to `end_size`
    pixels."""

    identity: str
    photo: Path
    start_s: float
    end_s: float
    start: tuple[float, float]
    end: tuple[float, float]
    size: int = 150
    end_size: int | None = None

    def placement(self, t: float) -> tuple[float, float, int] | None:
        """(cx, cy, side) in pixels-as-fractions at time t, None outside the appearance."""
        if not self.start_s <= t < self.end_s:
            return None
        a = (t - self.start_s) / (self.end_s - self.start_s)
        cx = self.start[0] + a * (self.end[0] - self.start[0])
        cy = self.start[1] + a * (self.end[1] - self.start[1])
        side = self.size + a * ((self.end_size or self.size) - self.size)
        return cx, cy, int(round(side))


@dataclass(frozen=True)
class Scene:
    """A camera's clip: what is on screen, frame size and rate."""

    name: str
    appearances: tuple[Appearance, ...]
    duration_s: float
    width: int = 640
    height: int = 360
    fps: int = 8

    def frame_times(self) -> list[float]:
        return [i / self.fps for i in range(int(round(self.duration_s * self.fps)))]

    def _share_inside(self, appearance: Appearance, t: float) -> float:
        placed = appearance.placement(t)
        if placed is None:
            return 0.0
        cx, cy, side = placed
        x0, y0 = cx * self.width - side / 2, cy * self.height - side / 2
        w = max(0.0, min(self.width, x0 + side) - max(0.0, x0))
        h = max(0.0, min(self.height, y0 + side) - max(0.0, y0))
        return (w * h) / float(side * side)

    def visible_at(self, t: float) -> set[str]:
        """Ground truth: identities whose face is (mostly) inside the frame at time t."""
        return {a.identity for a in self.appearances if self._share_inside(a, t) >= VISIBLE_SHARE}

    def timeline(self) -> list[dict]:
        """Ground truth as intervals: [{identity, start_s, end_s}] per continuous visible stretch, sampled at
        the clip's frame times."""
        out: list[dict] = []
        step = 1.0 / self.fps
        for appearance in self.appearances:
            current = None
            for t in self.frame_times():
                seen = self._share_inside(appearance, t) >= VISIBLE_SHARE
                if seen and current is None:
                    current = {"identity": appearance.identity, "start_s": round(t, 3), "end_s": round(t + step, 3)}
                elif seen:
                    current["end_s"] = round(t + step, 3)
                elif current is not None:
                    out.append(current)
                    current = None
            if current is not None:
                out.append(current)
        return sorted(out, key=lambda r: r["start_s"])

    def identities(self) -> set[str]:
        return {r["identity"] for r in self.timeline()}


@dataclass
class FaceCuts:
    """Square cuts of photos centred on their face (twice the face box), keyed by photo path."""

    cuts: dict[Path, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_photos(cls, models_dir: str | Path, photos: list[Path]) -> "FaceCuts":
        from vision.detector import FaceDetector
        from vision.packs import resolve_pack
        from vision.runtime import onnx_providers

        detector = FaceDetector(resolve_pack(str(models_dir), allow_download=False), onnx_providers(False), threads=1)
        out = cls()
        for photo in dict.fromkeys(Path(p) for p in photos):
            image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"cannot read {photo}")
            faces = detector.detect(image, max_faces=1)
            if not faces:
                raise ValueError(f"no face in {photo}")
            x1, y1, x2, y2 = faces[0].bbox
            cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1)
            padded = cv2.copyMakeBorder(image, *([int(half * 2)] * 4), cv2.BORDER_REFLECT)
            offset = int(half * 2)
            x0, y0 = int(cx - half) + offset, int(cy - half) + offset
            out.cuts[photo] = padded[y0 : y0 + int(2 * half), x0 : x0 + int(2 * half)].copy()
        return out


def _background(width: int, height: int) -> np.ndarray:
    """A fixed textured backdrop (a gradient with mild noise) so the encoder has something real to code."""
    rng = np.random.default_rng(7)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([80 + 60 * xs / width, 90 + 40 * ys / height, 110 + 30 * (xs + ys) / (width + height)], -1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def _feather(side: int) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side]
    r = np.hypot((xx - side / 2) / (side / 2), (yy - side / 2) / (side / 2))
    return np.clip((1.0 - r) / 0.15, 0, 1)[..., None].astype(np.float32)


def render_frames(scene: Scene, cuts: FaceCuts) -> Iterator[tuple[float, np.ndarray]]:
    """(time_s, BGR frame) for every frame of the clip."""
    background = _background(scene.width, scene.height)
    for t in scene.frame_times():
        frame = background.astype(np.float32)
        for appearance in scene.appearances:
            placed = appearance.placement(t)
            if placed is None:
                continue
            cx, cy, side = placed
            sprite = cv2.resize(cuts.cuts[Path(appearance.photo)], (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
            alpha = _feather(side)
            x0, y0 = int(round(cx * scene.width - side / 2)), int(round(cy * scene.height - side / 2))
            fx0, fy0 = max(0, x0), max(0, y0)
            fx1, fy1 = min(scene.width, x0 + side), min(scene.height, y0 + side)
            if fx1 <= fx0 or fy1 <= fy0:
                continue
            sx0, sy0 = fx0 - x0, fy0 - y0
            sx1, sy1 = sx0 + (fx1 - fx0), sy0 + (fy1 - fy0)
            a = alpha[sy0:sy1, sx0:sx1]
            frame[fy0:fy1, fx0:fx1] = a * sprite[sy0:sy1, sx0:sx1] + (1 - a) * frame[fy0:fy1, fx0:fx1]
        yield t, frame.astype(np.uint8)


def write_video(scene: Scene, cuts: FaceCuts, path: str | Path, *, codec: str = "libx264") -> Path:
    """Encode the clip to `path` (MP4/H.264 by default; `codec="mjpeg"` with an .avi/.mkv path also works).
    A key frame every second so a client joining a live stream starts within a second."""
    import av

    path = Path(path)
    # faststart: the index (moov) goes first, so the clip also plays from an HTTP server without range requests
    with av.open(str(path), "w", options={"movflags": "faststart"} if path.suffix == ".mp4" else {}) as container:
        stream = container.add_stream(codec, rate=scene.fps)
        stream.width, stream.height = scene.width, scene.height
        stream.pix_fmt = "yuv420p" if codec == "libx264" else "yuvj420p"
        if codec == "libx264":
            stream.options = {"g": str(scene.fps), "bf": "0", "preset": "veryfast", "tune": "zerolatency", "crf": "20"}
        stream.codec_context.time_base = Fraction(1, scene.fps)
        for i, (_, frame) in enumerate(render_frames(scene, cuts)):
            video_frame = av.VideoFrame.from_ndarray(frame, format="bgr24")
            video_frame.pts = i
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def jpeg_frames(scene: Scene, cuts: FaceCuts, quality: int = 85) -> list[tuple[float, bytes]]:
    """(time_s, JPEG bytes) per frame: what an edge device pushing frames sends."""
    return [(t, cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
            for t, frame in render_frames(scene, cuts)]


# Who is enrolled in the tests and who is not: the strangers are real people the tenant never enrolled, the
# second one a face of the group photo that ships in insightface's wheel (`group_photo_faces`).
ENROLLED = ("obama", "biden", "kit_harington", "rose_leslie")
STRANGER = "alex_lacamoire"
SECOND_STRANGER = "t1_face1"
NEVER_SHOWN = "rose_leslie"


def photo(faces_root: str | Path, identity: str, n: int) -> Path:
    folder = Path(faces_root) / "identities" / identity
    return sorted(folder.glob(f"{identity}_{n}.*"))[0]


def enrolment_photos(faces_root: str | Path) -> dict[str, Path]:
    """The photo each enrolled identity is enrolled with: never one that appears in the videos."""
    return {identity: photo(faces_root, identity, 1) for identity in ENROLLED}


def default_scenes(faces_root: str | Path, fps: int = 8) -> dict[str, Scene]:
    """Two cameras. "door" (8 s): obama walks in from the left and grows (0–3 s), biden joins (1.5–4.5 s,
    two people at once), the stranger crosses (4.5–6.5 s), obama comes back (6.0–8.0 s). "hall" (6 s):
    kit_harington (0.3–2.8 s), then the stranger again, from another photo (3.2–5.6 s).
    rose_leslie is enrolled and never shown."""
    f = lambda identity, n: photo(faces_root, identity, n)  # noqa: E731
    door = Scene("door", (
        Appearance("obama", f("obama", 2), 0.0, 3.0, (-0.05, 0.45), (0.35, 0.5), 130, 170),
        Appearance("biden", f("biden", 2), 1.5, 4.5, (0.75, 0.5), (0.7, 0.45), 150, 150),
        Appearance(STRANGER, f(STRANGER, 1), 4.5, 6.5, (0.2, 0.5), (0.5, 0.55), 150, 160),
        Appearance("obama", f("obama", 3), 6.0, 8.0, (0.8, 0.5), (1.1, 0.5), 160, 140),
    ), duration_s=8.0, fps=fps)
    hall = Scene("hall", (
        Appearance("kit_harington", f("kit_harington", 2), 0.3, 2.8, (0.3, 0.5), (0.6, 0.5), 150, 150),
        Appearance(STRANGER, f(STRANGER, 2), 3.2, 5.6, (0.65, 0.5), (0.4, 0.45), 140, 170),
    ), duration_s=6.0, fps=fps)
    return {"door": door, "hall": hall}


def group_photo() -> Path:
    """insightface's own test image: a group photo of six people, none of them in ../shared/faces."""
    import insightface

    return Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"


def group_photo_faces(models_dir: str | Path, folder: str | Path) -> dict[str, Path]:
    """Each face of the group photo cut to a photo of its own (`t1_face<k>.png`, k from left to right), as a
    camera would frame that person alone: {name: path}."""
    from vision.detector import FaceDetector
    from vision.packs import resolve_pack
    from vision.runtime import onnx_providers

    detector = FaceDetector(resolve_pack(str(models_dir), allow_download=False), onnx_providers(False), threads=1)
    image = cv2.imread(str(group_photo()), cv2.IMREAD_COLOR)
    folder = Path(folder)
    out = {}
    for k, face in enumerate(sorted(detector.detect(image), key=lambda f: f.bbox[0])):
        x1, y1, x2, y2 = face.bbox
        cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1)
        padded = cv2.copyMakeBorder(image, *([int(half * 2)] * 4), cv2.BORDER_REFLECT)
        x0, y0 = int(cx - half) + int(half * 2), int(cy - half) + int(half * 2)
        path = out[f"t1_face{k}"] = folder / f"t1_face{k}.png"
        cv2.imwrite(str(path), padded[y0 : y0 + int(2 * half), x0 : x0 + int(2 * half)])
    return out


def strangers_scene(faces_root: str | Path, second_stranger: Path, fps: int = 5) -> Scene:
    """Camera "lobby" (6 s): two strangers at once, left and right (0.3–2.5 s and 0.5–2.7 s), then the first
    comes back from another photo (3.5–5.5 s): two unknown ids, the first one seen twice."""
    return Scene("lobby", (
        Appearance(STRANGER, photo(faces_root, STRANGER, 3), 0.3, 2.5, (0.25, 0.5), (0.35, 0.5), 150, 160),
        Appearance(SECOND_STRANGER, Path(second_stranger), 0.5, 2.7, (0.75, 0.5), (0.65, 0.5), 150, 160),
        Appearance(STRANGER, photo(faces_root, STRANGER, 1), 3.5, 5.5, (0.6, 0.5), (0.4, 0.5), 150, 160),
    ), duration_s=6.0, fps=fps)


def switching_scene(name: str, faces_root: str | Path, who: list[str], sizes: list[int]) -> Scene:
    """One face moving right a step per frame at 5 fps, frame k showing identity who[k] (photo 2) at side
    sizes[k]: ONE track whose frames show different people, for the per-track vote. The tracker confirms a
    track from its second frame, so frame 0's identity gets no vote; every voted frame is embedded until the
    track is decided (streams/tracking.py)."""
    step, x0 = 0.02, 0.3
    appearances = tuple(Appearance(identity, photo(faces_root, identity, 2), k * 0.2, (k + 1) * 0.2, (x0 + k * step, 0.5),
                                   (x0 + (k + 1) * step, 0.5), size, size)
                        for k, (identity, size) in enumerate(zip(who, sizes)))
    return Scene(name, appearances, duration_s=len(who) * 0.2, fps=5)
