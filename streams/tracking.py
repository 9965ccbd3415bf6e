"""Faces across frames → one identity per track.

Tracking is ByteTrack from the maintained `trackers` package (Roboflow's successor of supervision's
tracker); nothing here associates boxes itself. Per track we keep what identity needs:

- which faces to embed: a face that passes the quality gates (tenancy/quality.py, the enrolment gates)
  is embedded while the track has fewer than `min_votes` embeddings, and afterwards only when it beats the
  best quality embedded so far, up to `max_embeddings` per track;
- the votes: each embedded face's best gallery match (or none), and the identity is the strict majority
  of the votes once `min_votes` are in (or the plurality when the track ends), never one frame's answer; a
  track that ends on a tie for the most votes is reported as unknown (its frames disagree: naming either
  person is a coin flip, and a wrong name is the failure that matters);
- the track's extent (first/last seen, frames) and the best similarity for its identity.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from tenancy.quality import assess

UNKNOWN = None  # the vote of an embedded face with no gallery match


@dataclass
class Track:
    track_id: int
    first_seen: float
    last_seen: float
    first_offset_s: float
    last_offset_s: float
    frames: int = 0
    embedded: int = 0
    best_quality: float = -1.0
    votes: list = field(default_factory=list)  # [(person_id or None, similarity, external_id)]
    vectors: list = field(default_factory=list)  # embeddings of the faces embedded (for re-identification)
    identity: tuple | None = None  # ("person", person_id, external_id) | ("unknown", None, None) once decided
    reported: bool = False
    event: int | None = None  # sequence number of the event this track reported into

    @property
    def best_similarity(self) -> float | None:
        if self.identity is None or self.identity[0] != "person":
            return None
        return max(s for p, s, _ in self.votes if p == self.identity[1])

    def decide(self, min_votes: int, final: bool = False) -> bool:
        """Set the identity from the votes: a strict majority once `min_votes` are in, or the plurality at the
        end of the track. True when decided now."""
        if self.identity is not None or not self.votes or (len(self.votes) < min_votes and not final):
            return False
        (winner, n), *others = Counter(p for p, _, _ in self.votes).most_common()
        if not final and n * 2 <= len(self.votes):
            return False
        if others and others[0][1] == n:  # a tie for the most votes (at the end only): the frames disagree, name nobody
            winner = UNKNOWN
        if winner is UNKNOWN:
            self.identity = ("unknown", None, None)
        else:
            external = next(e for p, _, e in self.votes if p == winner)
            self.identity = ("person", winner, external)
        return True

    @property
    def votes_for(self) -> int:
        """Votes for the identity decided (for an unknown: the votes that matched nobody)."""
        named = self.identity[1] if self.identity is not None and self.identity[0] == "person" else UNKNOWN
        return sum(p == named for p, _, _ in self.votes)

    def unknown_vector(self) -> np.ndarray:
        mean = np.mean(np.asarray(self.vectors, np.float32), axis=0)
        return (mean / (np.linalg.norm(mean) or 1.0)).astype(np.float32)


@dataclass(frozen=True)
class ToEmbed:
    track_id: int
    face: object  # vision.detector.DetectedFace
    quality: float


class FaceTracks:
    """ByteTrack over detected faces, plus the per-track identity bookkeeping above."""

    def __init__(self, fps: float, gates, *, min_votes: int = 2, max_embeddings: int = 4, lost_after_s: float = 1.5) -> None:
        from trackers import ByteTrackTracker

        self.gates, self.min_votes, self.max_embeddings, self.lost_after_s = gates, min_votes, max_embeddings, lost_after_s
        self._tracker = ByteTrackTracker(lost_track_buffer=max(1, int(round(fps * lost_after_s))), frame_rate=float(fps),
                                         track_activation_threshold=0.5, minimum_consecutive_frames=1,
                                         high_conf_det_threshold=0.5)
        self.tracks: dict[int, Track] = {}

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
            if track.embedded >= self.max_embeddings:
                continue
            report = assess(face.bbox, face.landmarks, face.crop, face.score, self.gates)
            if not report.passed:
                continue
            if track.embedded < self.min_votes or report.score > track.best_quality:
                track.embedded += 1
                track.best_quality = max(track.best_quality, report.score)
                wanted.append(ToEmbed(int(track_id), face, report.score))
        return wanted

    def vote(self, track_id: int, vector: np.ndarray, match: dict | None) -> None:
        """One embedded face's answer: its top gallery match at or above the threshold, or None."""
        track = self.tracks.get(track_id)
        if track is None:
            return
        track.vectors.append(np.asarray(vector, np.float32))
        if match is None:
            track.votes.append((UNKNOWN, None, None))
        else:
            track.votes.append((match["person_id"], float(match["similarity"]), match.get("external_id")))
        track.decide(self.min_votes)

    def decided(self) -> list[Track]:
        """Tracks whose identity is decided and not reported yet."""
        return [t for t in self.tracks.values() if t.identity is not None and not t.reported]

    def ended(self, offset_s: float) -> list[Track]:
        """Tracks not seen for `lost_after_s` of stream time: removed, decided by plurality if still open."""
        gone = [t for t in self.tracks.values() if offset_s - t.last_offset_s > self.lost_after_s]
        for track in gone:
            del self.tracks[track.track_id]
            track.decide(self.min_votes, final=True)
        return gone

    def close_all(self) -> list[Track]:
        return self.ended(float("inf"))
