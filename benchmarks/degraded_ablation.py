"""`benchmarks/degraded.py --ablation`: what each part of the camera's identity policy is worth, on the same
clips, through the real camera code (streams.worker.StreamWorker, streams.tracking, vision.quality) run in this
process with stand-ins for its Ray handles: the Detector and Embedder are the same models as deployed
(vision.detector at the streams det_size, vision.embedder), the tenant search is an exact cosine top-1 over the
enrolment vectors at the pack's threshold, and the StreamSupervisor keeps the sightings in a list. Detections and
embeddings are cached, so each variant costs its tracking and decisions only.

Each variant is one streams.tracking.Policy; per condition it reports recall, wrong names and unknown events
for strangers as the deployed run does (no latency: nothing here waits like a camera).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib

import cv2
import numpy as np

from streams import degradation
from streams.sources import Frame
from streams.tracking import PER_FRAME_VOTES, Policy
from streams.worker import StreamWorker

VARIANTS = {
    "per-frame votes (before)": PER_FRAME_VOTES,
    "+ exposure": dataclasses.replace(PER_FRAME_VOTES, exposure=True),
    "+ camera gate": dataclasses.replace(PER_FRAME_VOTES, exposure=True, enrolment_gates=False),
    "template, uniform": Policy(weight="uniform"),
    "template, det_score": Policy(weight="det_score"),
    "template, sharpness": Policy(weight="sharpness"),
    "template, embedding_norm (shipped)": Policy(),
    "shipped without exposure": Policy(exposure=False),
    "shipped with enrolment gates": Policy(enrolment_gates=True),
    "shipped, 4 faces": Policy(max_embeddings=4),
    "shipped, 10 faces": Policy(max_embeddings=10),
}


class _Method:
    """Stands in for a Ray handle's method: `.remote(...)` runs `fn` here."""

    def __init__(self, fn) -> None:
        self.fn = fn

    async def remote(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def _key(array: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(array).data, digest_size=16).digest()


class LocalCamera:
    """The deployments a StreamWorker calls, in this process (see the module's docstring)."""

    def __init__(self, models: str, enrolment: dict) -> None:
        from securegate.settings import Settings
        from tenancy.quality import enrolment_face
        from tenancy.tenant import QualityGates
        from vision.detector import FaceDetector
        from vision.embedder import FaceEmbedder
        from vision.packs import resolve_pack
        from vision.runtime import onnx_providers

        settings = Settings.from_args({"models": models})
        pack = resolve_pack(settings.models, allow_download=False)
        providers = onnx_providers(False)
        self.frame_detector = FaceDetector(pack, providers, det_size=settings.streams.det_size, det_thresh=settings.detector.det_thresh,
                                           fit_aspect=settings.detector.fit_aspect)
        photo_detector = FaceDetector(pack, providers, det_size=settings.detector.det_size, det_thresh=settings.detector.det_thresh)
        self.embedder = FaceEmbedder(pack, providers)
        self.threshold = pack.default_threshold
        self.gates = QualityGates()
        self.ids = list(enrolment)
        crops = [enrolment_face(photo_detector.detect(cv2.imread(str(enrolment[i]))), None, self.gates)[0].crop for i in self.ids]
        self.gallery = self.embedder.embed(crops)
        self._faces: dict[bytes, list] = {}
        self._vectors: dict[bytes, tuple[np.ndarray, float]] = {}
        self.events: dict[int, dict] = {}
        self.now = 0.0  # stream offset of the frame being processed
        self.crops_embedded = 0  # by the worker (what the Embedder would compute), cached or not

    # Detector / Embedder / TenantSupervisor / StreamSupervisor, as the worker calls them
    def detect_frame(self, frame: np.ndarray, max_faces=None) -> list:
        key = _key(frame)
        if key not in self._faces:
            self._faces[key] = self.frame_detector.detect(frame)
        return self._faces[key]

    def embed_with_norms(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.crops_embedded += len(crops)
        missing = [c for c in crops if _key(c) not in self._vectors]
        if missing:
            vectors, norms = self.embedder.embed_with_norms(missing)
            for crop, vector, norm in zip(missing, vectors, norms):
                self._vectors[_key(crop)] = (vector, float(norm))
        found = [self._vectors[_key(c)] for c in crops]
        return np.stack([v for v, _ in found]), np.array([n for _, n in found], np.float32)

    def call(self, tenant, method: str, queries: np.ndarray, top_k: int, threshold: float, match_on: str, **_) -> list:
        sims = np.asarray(queries, np.float32) @ self.gallery.T
        out = []
        for row in sims:
            best = int(np.argmax(row))
            out.append([{"person_id": self.ids[best], "external_id": self.ids[best], "similarity": float(row[best])}]
                       if row[best] >= threshold else [])
        return out

    def record_sighting(self, tenant_id, stream_id, kind: str, sighting: dict) -> int:
        seq = len(self.events) + 1
        self.events[seq] = {"kind": "person_seen" if kind == "person" else "unknown_seen",
                            "external_id": sighting.get("external_id"), "first_offset_s": sighting["first_offset_s"],
                            "last_offset_s": sighting["last_offset_s"],
                            # stream time from the track's first frame to its decision: the latency a camera
                            # adds by waiting for faces, whatever the host's speed
                            "decision_s": round(self.now - sighting["first_offset_s"], 3)}
        return seq

    def close_sighting(self, tenant_id, stream_id, seq, final: dict) -> None:
        if seq in self.events:
            self.events[seq]["last_offset_s"] = final["last_offset_s"]

    async def run(self, frames: list[tuple[float, np.ndarray]], policy: Policy, fps: int) -> list[dict]:
        self.events = {}
        handle = lambda *names: type("Handle", (), {n: _Method(getattr(self, n)) for n in names})()  # noqa: E731
        worker = StreamWorker("ablation", "camera", handle("record_sighting", "close_sighting"),
                              handle("detect_frame"), handle("embed_with_norms"), handle("call"))

        def clock_following():  # this camera's clock reads each frame's time while it is processed
            for t, image in frames:
                self.now = t
                yield Frame(image, t, t)
            self.now = frames[-1][0]

        await worker.replay({"fps": fps, "gates": self.gates, "threshold": self.threshold, "match_on": "faces", "tenant": None,
                             "policy": policy, "url": None}, clock_following())
        return list(self.events.values())


def ablate(models: str, faces: degradation.CrowdFaces, clips: dict, variants: dict = VARIANTS, fps: int = 5) -> dict:
    """{variant: {condition: score}} and a printed table of recall (wrong names in brackets when any)."""
    camera = LocalCamera(models, faces.enrolment)
    decoded = {c: [(t, cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)) for t, jpeg in frames]
               for c, (_, frames) in clips.items()}
    out: dict[str, dict] = {}
    names = [c.name for c in clips]
    print("\nablation (in-process camera code, stand-in deployments): recall [wrong names] / strangers→unknown")
    print("(crops/clip: faces embedded per clip; decide p50: stream seconds from a track's first frame to its event, "
          "person/unknown)")
    print(f"{'variant':<36} {'crops/clip':>10} {'decide p50':>11} " + " ".join(f"{n:>16}" for n in names))
    for label, policy in variants.items():
        row = {}
        camera.crops_embedded = 0
        delays: dict[str, list[float]] = {"person_seen": [], "unknown_seen": []}
        for condition, (scene, _) in clips.items():
            events = asyncio.run(camera.run(decoded[condition], policy, fps))
            row[condition.name] = degradation.score(events, scene, faces.enrolled)
            for event in events:
                delays[event["kind"]].append(event["decision_s"])
        out[label] = {n: {k: r[k] for k in ("recall", "wrong_names", "stranger_unknown_rate", "enrolled_unknown", "enrolled_missed")}
                      for n, r in row.items()}
        out[label]["crops_embedded_per_clip"] = round(camera.crops_embedded / len(clips), 1)
        out[label]["decision_p50_s"] = {k: round(float(np.median(v)), 2) if v else None for k, v in delays.items()}
        cells = [f"{r['recall']:.2f}" + (f"[{r['wrong_names']}]" if r["wrong_names"] else "") + f"/{r['stranger_unknown_rate']:.2f}"
                 for r in row.values()]
        decide = "/".join(str(v) for v in out[label]["decision_p50_s"].values())
        print(f"{label:<36} {out[label]['crops_embedded_per_clip']:>10} {decide:>11} " + " ".join(f"{c:>16}" for c in cells),
              flush=True)
    spread = margins(camera, clips, decoded)
    print("\nsimilarity margins (oracle tracks): genuine face p5 / template min  vs  impostor face max / template max")
    for name, m in spread.items():
        if name == "spearman_with_genuine_similarity":
            print("signal vs genuine similarity (Spearman, every enrolled look's faces):", m)
            continue
        print(f"{name:<22} {m['genuine_face_p5']!s:>6} / {m['genuine_template_min']!s:<6}  vs  {m['impostor_face_max']!s:>6} / "
              f"{m['impostor_template_max']!s:<6}  ({m['faces']} faces, {m['looks']} looks)")
    return {"variants": out, "margins": spread}


def margins(camera: LocalCamera, clips: dict, decoded: dict) -> dict:
    """Is a lower threshold for templates safe? Per condition, with ground truth (each detected face is given
    to the appearance whose placement it sits on, an oracle track): the similarity of every face and of
    every look's template to its own enrolment vector (genuine) and the best similarity of strangers' faces
    and templates to anyone (impostor). Templates are the shipped pool: unit vectors weighted by raw norm."""
    from scipy.stats import spearmanr

    from vision.quality import measure, normalise_exposure

    out = {}
    signals: list[tuple[float, ...]] = []  # per genuine face: its signals and its similarity to its enrolment
    for condition, (scene, _) in clips.items():
        looks: dict[int, list[tuple[np.ndarray, float]]] = {}
        for t, image in decoded[condition]:
            for face in camera.detect_frame(image):
                cx, cy = (face.bbox[0] + face.bbox[2]) / 2, (face.bbox[1] + face.bbox[3]) / 2
                for i, a in enumerate(scene.appearances):
                    placed = a.placement(t)
                    if placed and abs(placed[0] * scene.width - cx) < placed[2] / 4 and abs(placed[1] * scene.height - cy) < placed[2] / 4:
                        vector, norm = camera.embed_with_norms(normalise_exposure(face.crop)[None])
                        looks.setdefault(i, []).append((vector[0], float(norm[0])))
                        if a.identity in camera.ids:
                            q = measure(face.bbox, face.landmarks, face.crop, face.score)
                            signals.append((q.det_score, q.face_px, q.sharpness, q.brightness, float(norm[0]), q.score(),
                                            float(vector[0] @ camera.gallery[camera.ids.index(a.identity)])))
                        break
        genuine_face, genuine_template, impostor_face, impostor_template = [], [], [], []
        for i, faces in looks.items():
            identity = scene.appearances[i].identity
            vectors = np.stack([v for v, _ in faces])
            template = (vectors * np.array([n for _, n in faces])[:, None]).sum(0)
            template /= np.linalg.norm(template)
            sims, template_sims = vectors @ camera.gallery.T, camera.gallery @ template
            if identity in camera.ids:
                j = camera.ids.index(identity)
                genuine_face += sims[:, j].tolist()
                genuine_template.append(float(template_sims[j]))
                others = np.delete(np.arange(len(camera.ids)), j)
                impostor_face += sims[:, others].max(1).tolist()
                impostor_template.append(float(template_sims[others].max()))
            else:
                impostor_face += sims.max(1).tolist()
                impostor_template.append(float(template_sims.max()))
        q = lambda values, p: round(float(np.percentile(values, p)), 3) if values else None  # noqa: E731
        out[condition.name] = {"genuine_face_p5": q(genuine_face, 5), "genuine_template_min": q(genuine_template, 0),
                               "impostor_face_max": q(impostor_face, 100), "impostor_template_max": q(impostor_template, 100),
                               "faces": len(genuine_face) + len(impostor_face), "looks": len(looks)}
    table = np.array(signals)
    names = ("det_score", "face_px", "sharpness", "brightness", "embedding_norm", "quality_score")
    out["spearman_with_genuine_similarity"] = {n: round(float(spearmanr(table[:, k], table[:, -1]).statistic), 3)
                                               for k, n in enumerate(names)} if len(table) > 2 else {}
    return out
