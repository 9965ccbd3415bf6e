"""Faces across frames → one identity per track.

Tracking is ByteTrack from the maintained `trackers` package (Roboflow's successor of supervision's
tracker); nothing here associates boxes itself. Per track we keep what identity needs:

- which faces to embed: every face of an undecided track that can serve (a face turned past the tenant's
  `max_yaw` cannot), up to `max_embeddings`; none once decided. Crops are brightened to a common exposure
  first (vision.quality.normalise_exposure);
- a template: the mean of the track's unit vectors weighted by each face's quality (`pool_weight`), searched
  like a probe — many looks at one face, as template-based benchmarks (IJB-B/C) compare them;
- the votes: each embedded face's own best gallery match (or none). They guard the template: a track whose
  faces named two different people (it may have switched face mid-way) is decided by the majority of its
  votes, never by the template;
- the track's extent (first/last seen, frames), the best similarity for its identity, and its best face's
  frame (`best_offset_s`, by FaceQuality.score over every frame: where a thumbnail of the track comes from).

A track is a person when its template matches them at the tenant's threshold after `min_votes` faces and no
face named someone else, or when a strict majority of its votes names them; it is unknown only once it has
`max_embeddings` faces (or ends) without either; a track that ends with fewer than `min_votes` faces reports
nothing. A track that ends on a tie for the most votes is unknown (its
frames disagree: naming either person is a coin flip, and a wrong name is the failure that matters). The threshold is the tenant's for templates and faces alike:
a lower bar for templates was measured and not taken (docs/cameras-quality.md).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from tenancy.quality import report
from vision.quality import FaceQuality, measure, normalise_exposure

UNKNOWN = None  # the vote of an embedded face with no gallery match


def pool_weight(quality: FaceQuality) -> float:
    """A face's weight in its track's template: the recognizer's own confidence, its raw embedding length.
    benchmarks/degraded.py --ablation measures it against the detector score, sharpness and equal weights."""
    return float(quality.embedding_norm or 1.0)


@dataclass(frozen=True)
class Policy:
    """How a camera turns faces into identities. The defaults are the product's; benchmarks/degraded.py
    --ablation switches each part off to measure what it is worth."""

    pooled: bool = True  # search the track's template; False: each face votes, a strict majority decides
    exposure: bool = True  # brighten dim crops before embedding
    enrolment_gates: bool = False  # embed only faces that would pass the tenant's enrolment gates
    weight: str = "embedding_norm"  # pool weights: embedding_norm | det_score | sharpness | uniform
    min_votes: int = 2
    max_embeddings: int = 6


WEIGHTS = {
    "embedding_norm": pool_weight,
    "det_score": lambda q: q.det_score,
    "sharpness": lambda q: np.sqrt(q.sharpness),
    "uniform": lambda q: 1.0,
}
# Before issue 25: enrolment gates, two votes then better faces only, no template, no exposure correction.
PER_FRAME_VOTES = Policy(pooled=False, exposure=False, enrolment_gates=True, weight="uniform", max_embeddings=4)


@dataclass
class Track:
    track_id: int
    first_seen: float
    last_seen: float
    first_offset_s: float
    last_offset_s: float
    frames: int = 0
    embedded: int = 0
    best_score: float = -1.0  # the best face's FaceQuality.score, over every frame
    best_offset_s: float | None = None  # and its frame
    best_embedded: float = -1.0  # the best score among the faces embedded
    votes: list = field(default_factory=list)  # [(person_id or None, similarity, external_id)]
    vectors: list = field(default_factory=list)  # unit embeddings of the faces embedded
    weights: list = field(default_factory=list)  # their pool weights
    template_match: tuple | None = None  # the template's (person_id or None, similarity, external_id), once searched
    identity: tuple | None = None  # ("person", person_id, external_id) | ("unknown", None, None) once decided
    reported: bool = False
    event: int | None = None  # sequence number of the event this track reported into

    @property
    def best_similarity(self) -> float | None:
        if self.identity is None or self.identity[0] != "person":
            return None
        person = self.identity[1]
        found = [s for p, s, _ in self.votes if p == person]
        if self.template_match is not None and self.template_match[0] == person:
            found.append(self.template_match[1])
        return max(found) if found else None

    def template(self) -> np.ndarray:
        """The quality-weighted mean of the track's unit vectors, itself of unit length."""
        weights = np.asarray(self.weights, np.float32)[:, None]
        mean = (np.asarray(self.vectors, np.float32) * weights).sum(axis=0)
        return (mean / (np.linalg.norm(mean) or 1.0)).astype(np.float32)

    def decide(self, policy: Policy, final: bool = False) -> bool:
        """Set the identity (see the module's docstring). True when decided now."""
        if self.identity is not None or not self.votes:
            return False
        # Never one face's answer: a track that ends with fewer faces than `min_votes` reports nothing (faces
        # that can serve include the edge-of-frame fragments enrolment gates used to refuse). Per-frame votes
        # (before) named a one-vote track at its end.
        if len(self.votes) < policy.min_votes and (not final or policy.pooled):
            return False
        named = {p for p, _, _ in self.votes if p is not UNKNOWN}
        template = self.template_match
        if policy.pooled and template is not None and template[0] is not UNKNOWN and named <= {template[0]}:
            self.identity = ("person", template[0], template[2])
            return True
        (winner, n), *others = Counter(p for p, _, _ in self.votes).most_common()
        if not final and n * 2 <= len(self.votes):
            return False
        if others and others[0][1] == n:  # a tie for the most votes (at the end only): the frames disagree, name nobody
            winner = UNKNOWN
        if winner is UNKNOWN:
            # A template may still get there with more faces: unknown only once no more are coming.
            if policy.pooled and not final and len(self.votes) < policy.max_embeddings and len(named) <= 1:
                return False
            self.identity = ("unknown", None, None)
        else:
            external = next(e for p, _, e in self.votes if p == winner)
            self.identity = ("person", winner, external)
        return True

    @property
    def decided_by(self) -> str | None:
        """"template" when the track's template named the person, else "votes" (once decided)."""
        if self.identity is None:
            return None
        by_template = self.identity[0] == "person" and self.template_match is not None and self.template_match[0] == self.identity[1]
        return "template" if by_template else "votes"

    @property
    def votes_for(self) -> int:
        """Votes for the identity decided (for an unknown: the votes that matched nobody)."""
        named = self.identity[1] if self.identity is not None and self.identity[0] == "person" else UNKNOWN
        return sum(p == named for p, _, _ in self.votes)

    def unknown_vector(self) -> np.ndarray:
        return self.template()


@dataclass(frozen=True)
class ToEmbed:
    track_id: int
    crop: np.ndarray  # aligned, exposure-normalised (per the policy)
    quality: FaceQuality
    offset_s: float


class FaceTracks:
    """ByteTrack over detected faces, plus the per-track identity bookkeeping above."""

    def __init__(self, fps: float, gates, *, policy: Policy = Policy(), lost_after_s: float = 1.5) -> None:
        from trackers import ByteTrackTracker

        self.gates, self.policy, self.lost_after_s = gates, policy, lost_after_s
        self._weight = WEIGHTS[policy.weight]
        self._tracker = ByteTrackTracker(lost_track_buffer=max(1, int(round(fps * lost_after_s))), frame_rate=float(fps),
                                         track_activation_threshold=0.5, minimum_consecutive_frames=1,
                                         high_conf_det_threshold=0.5)
        self.tracks: dict[int, Track] = {}

    def _usable(self, quality: FaceQuality) -> bool:
        if self.policy.enrolment_gates:
            return report(quality, self.gates).passed
        return quality.yaw <= self.gates.max_yaw

    def observe(self, faces: list, captured_at: float, offset_s: float) -> list[ToEmbed]:
        """Track this frame's faces; returns the faces worth embedding."""
        import supervision as sv

        if faces:
            detections = sv.Detections(xyxy=np.array([f.bbox for f in faces], np.float32),
                                       confidence=np.array([f.score for f in faces], np.float32),
                                       data={"face": np.arange(len(faces))})
        else:
            detections = sv.Detections.empty()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tracked = self._tracker.update(detections, timestamp=offset_s)
        wanted = []
        if len(tracked) == 0:
            return wanted
        for track_id, index in zip(tracked.tracker_id, tracked.data["face"]):
            if track_id < 0:
                continue
            face = faces[int(index)]
            track = self.tracks.get(int(track_id))
            if track is None:
                track = self.tracks[int(track_id)] = Track(int(track_id), captured_at, captured_at, offset_s, offset_s)
            track.last_seen, track.last_offset_s = captured_at, offset_s
            track.frames += 1
            quality = measure(face.bbox, face.landmarks, face.crop, face.score)
            rating = quality.score()
            if rating > track.best_score:
                track.best_score, track.best_offset_s = rating, offset_s
            if track.embedded >= self.policy.max_embeddings or not self._usable(quality):
                continue
            if self._wants(track, rating):
                track.embedded += 1
                track.best_embedded = max(track.best_embedded, rating)
                crop = normalise_exposure(face.crop, quality.brightness) if self.policy.exposure else face.crop
                wanted.append(ToEmbed(int(track_id), crop, quality, offset_s))
        return wanted

    def _wants(self, track: Track, rating: float) -> bool:
        if self.policy.pooled:  # every usable face until decided (the template needs them); none after
            return track.identity is None
        # Per-frame votes: two faces, then only better ones.
        return track.embedded < self.policy.min_votes or rating > track.best_embedded

    def embedded(self, wanted: list[ToEmbed], vectors: np.ndarray, norms: np.ndarray | None = None) -> list[Track]:
        """The embeddings of `wanted` (unit vectors, raw norms): added to their tracks. Returns the tracks whose
        template changed (to be searched with the faces)."""
        touched: dict[int, Track] = {}
        for i, (item, vector) in enumerate(zip(wanted, vectors)):
            track = self.tracks.get(item.track_id)
            if track is None:
                continue
            quality = item.quality if norms is None else item.quality.with_norm(float(norms[i]))
            track.vectors.append(np.asarray(vector, np.float32))
            track.weights.append(self._weight(quality))
            touched[track.track_id] = track
        return list(touched.values()) if self.policy.pooled else []

    def answered(self, wanted: list[ToEmbed], matches: list, templates: list[Track], template_matches: list) -> None:
        """Search answers: each face's top gallery match at or above the threshold (or None), and each searched
        template's. Decides what can be decided."""
        for item, match in zip(wanted, matches):
            track = self.tracks.get(item.track_id)
            if track is not None:
                track.votes.append(_vote(match))
        for track, match in zip(templates, template_matches):
            track.template_match = _vote(match)
        for track in {self.tracks[w.track_id].track_id: self.tracks[w.track_id] for w in wanted if w.track_id in self.tracks}.values():
            track.decide(self.policy)

    def decided(self) -> list[Track]:
        """Tracks whose identity is decided and not reported yet."""
        return [t for t in self.tracks.values() if t.identity is not None and not t.reported]

    def ended(self, offset_s: float) -> list[Track]:
        """Tracks not seen for `lost_after_s` of stream time: removed, decided by plurality if still open."""
        gone = [t for t in self.tracks.values() if offset_s - t.last_offset_s > self.lost_after_s]
        for track in gone:
            del self.tracks[track.track_id]
            track.decide(self.policy, final=True)
        return gone

    def close_all(self) -> list[Track]:
        return self.ended(float("inf"))


def _vote(match: dict | None) -> tuple:
    if match is None:
        return (UNKNOWN, None, None)
    return (match["person_id"], float(match["similarity"]), match.get("external_id"))
