"""Camera sources: frames in, sampled at the stream's rate, dropped (never queued without bound) when the
pipeline falls behind.

- `FrameQueue`: a bounded queue of the freshest frames. When it is full the *oldest* frame is dropped and
  counted: a recognition pipeline wants the newest picture, not a backlog.
- `StreamReader`: a thread that decodes a URL with PyAV (FFmpeg): RTSP (over TCP), MJPEG over HTTP
  (multipart/x-mixed-replace, FFmpeg's `mpjpeg` demuxer), and video files or HTTP(S) video URLs. It keeps
  one frame per 1/fps of stream time, paces files at their own speed (a file plays like a camera), and
  reconnects a lost camera with exponential backoff. Its `status()` is what the API shows.
- `redact_url`: credentials in a URL (user info, and query parameters that look like secrets) replaced
  by `***`: every log line and API answer goes through it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

log = logging.getLogger(__name__)

SECRET_PARAMS = re.compile(r"(pass|pwd|token|secret|key|auth|sig|credential)", re.I)
SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "file")


def redact_url(url: str) -> str:
    """The URL with its password (and user), and secret-looking query values, replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        query = urlencode([(k, "***" if SECRET_PARAMS.search(k) else v) for k, v in parse_qsl(query, keep_blank_values=True)],
                          safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, url: str) -> str:
    """An error message with any copy of the URL (FFmpeg messages often repeat it) redacted."""
    text = text.replace(url, redact_url(url))
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)


def source_kind(url: str) -> str:
    """rtsp | http (MJPEG or a video URL: FFmpeg probes which) | file."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("rtsp", "rtsps"):
        return "rtsp"
    if scheme in ("http", "https"):
        return "http"
    if scheme in ("", "file"):
        return "file"
    raise ValueError(f"unsupported stream URL scheme {scheme!r}: use one of {', '.join(SCHEMES)}")


def file_path(url: str) -> Path:
    parts = urlsplit(url)
    return Path(parts.path if parts.scheme == "file" else url)


@dataclass(frozen=True, slots=True)
class Frame:
    """A sampled frame: BGR pixels, capture time (epoch s) and position in the stream (s since it started)."""

    image: np.ndarray
    captured_at: float
    offset_s: float


class FrameQueue:
    """Bounded, freshest-first: `put` never blocks; when full it drops the oldest frame and counts it."""

    def __init__(self, capacity: int = 2) -> None:
        self._frames: deque[Frame] = deque()
        self.capacity = max(1, capacity)
        self._ready = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, frame: Frame) -> None:
        with self._ready:
            if len(self._frames) >= self.capacity:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self._ready.notify()

    def get(self, timeout: float) -> Frame | None:
        with self._ready:
            if not self._frames and not self.closed:
                self._ready.wait(timeout)
            return self._frames.popleft() if self._frames else None

    def close(self) -> None:
        with self._ready:
            self.closed = True
            self._ready.notify_all()

    def __len__(self) -> int:
        return len(self._frames)


class Backoff:
    """Reconnect delays: 0.5 s doubling up to `max_s`; reset after a connection delivered frames."""

    def __init__(self, first_s: float = 0.5, max_s: float = 10.0) -> None:
        self.first_s, self.max_s = first_s, max_s
        self.next_s = first_s

    def delay(self) -> float:
        current = self.next_s
        self.next_s = min(self.max_s, self.next_s * 2)
        return current

    def reset(self) -> None:
        self.next_s = self.first_s


class StreamReader:
    """Decodes `url` in a thread into `queue`, sampled at `fps`. States: connecting, connected,
    reconnecting, ended (a file without `loop` reached its end), stopped."""

    def __init__(self, url: str, queue: FrameQueue, fps: float, *, loop: bool = False, realtime: bool = True,
                 open_timeout_s: float = 5.0, read_timeout_s: float = 5.0, backoff: Backoff | None = None) -> None:
        self.url, self.queue, self.fps = url, queue, float(fps)
        self.kind = source_kind(url)
        self.loop, self.realtime = loop, realtime
        self.timeouts = (open_timeout_s, read_timeout_s)
        self.backoff = backoff or Backoff()
        self.state = "connecting"
        self.frames_read = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self.last_frame_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-reader {redact_url(url)}", daemon=True)
        self._offset_base = 0.0  # stream position carried over reconnects and file loops
        self._recording = self.kind == "file"  # known once connected (see _read_once)

    def start(self) -> "StreamReader":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.queue.close()
        self._thread.join(timeout)
        self.state = "stopped"

    def status(self) -> dict:
        return {"state": self.state, "frames_read": self.frames_read, "reconnects": self.reconnects,
                "last_error": self.last_error, "last_frame_at": self.last_frame_at}

    # ---- the thread -------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            delivered = 0
            try:
                delivered = self._read_once()
                if self._stop.is_set():
                    break
                if self._recording and not self.loop:
                    self.state = "ended"
                    return
                if self._recording:
                    continue  # loop the recording
                self.last_error = "stream ended"
            except Exception as exc:  # any decode / network failure: reconnect with backoff
                self.last_error = redact_text(f"{type(exc).__name__}: {exc}", self.url)
                log.warning("stream %s: %s", redact_url(self.url), self.last_error)
            if delivered:
                self.backoff.reset()
            self.state = "reconnecting"
            self.reconnects += 1
            self._stop.wait(self.backoff.delay())

    def _open(self):
        import av

        # Small probe: a live source should deliver its first frame in well under a second, not after
        # FFmpeg's default 5 s of analysis. (`fflags nobuffer` would be lower still, but it loses an MP4's
        # first GOP.)
        options = {"analyzeduration": "500000", "probesize": "500000"}
        if self.kind == "rtsp":
            options["rtsp_transport"] = "tcp"
        if self.kind == "http":
            options["reconnect"] = "0"
        return av.open(self.url if self.kind != "file" else str(file_path(self.url)), options=options, timeout=self.timeouts)

    def _read_once(self) -> int:
        """One connection: decode until the stream ends, fails or we are stopped. Returns frames delivered."""
        delivered = 0
        with self._open() as container:
            stream = container.streams.video[0]
            # One decoding thread per camera: a 640x360 H.264 frame decodes in ~1-2 ms, and FFmpeg's frame
            # threads (AUTO) gave every camera a pool as large as the host's cores, 16+ threads for 8 cameras on 2.
            stream.codec_context.thread_count = 1
            self.state = "connected"
            interval = 1.0 / self.fps if self.fps > 0 else 0.0
            first_pts: float | None = None
            next_due = 0.0
            started = time.monotonic()
            last_position = 0.0
            # Multipart JPEG carries no timestamps (FFmpeg would invent 25 fps): arrival time is the clock.
            arrival_clock = container.format.name == "mpjpeg"
            # A recording (a file, or an HTTP(S) video with a duration) plays at its own speed like a camera,
            # ends, and may loop; live sources (RTSP, MJPEG) are paced by the camera itself.
            self._recording = self.kind == "file" or (self.kind == "http" and not arrival_clock and container.duration is not None)
            for frame in container.decode(stream):
                if self._stop.is_set():
                    break
                if arrival_clock:
                    position = time.monotonic() - started
                else:
                    position = float(frame.time) if frame.time is not None else last_position + interval
                if first_pts is None:
                    first_pts = position
                position -= first_pts
                last_position = position
                if position + 1e-6 < next_due:
                    continue  # sampling: one frame per 1/fps of stream time
                next_due = position + interval if position - next_due > interval else next_due + interval
                if self._recording and self.realtime:
                    wait = started + position - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        break
                now = time.time()
                self.queue.put(Frame(frame.to_ndarray(format="bgr24"), now, self._offset_base + position))
                self.frames_read += 1
                self.last_frame_at = now
                delivered += 1
            self._offset_base += last_position + interval
        return delivered
