"""Sources without the application: URL redaction, the bounded frame queue, and the PyAV reader on a real
clip (sampling at the stream's rate, drops counted when nobody keeps up)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from streams.sources import Backoff, Frame, FrameQueue, StreamReader, redact_text, redact_url, source_kind


@pytest.mark.parametrize("url, redacted", [
    ("rtsp://admin:hunter2@10.0.0.7:554/stream1", "rtsp://***@10.0.0.7:554/stream1"),
    ("rtsp://admin@cam/x", "rtsp://***@cam/x"),
    ("http://cam.local/video.mjpg?token=abc&res=hd", "http://cam.local/video.mjpg?token=***&res=hd"),
    ("https://u:p@h/v.mp4?X-Amz-Signature=zz&password=q", "https://***@h/v.mp4?X-Amz-Signature=***&password=***"),
    ("/srv/videos/door.mp4", "/srv/videos/door.mp4"),
])
def test_credentials_are_redacted(url, redacted):
    assert redact_url(url) == redacted
    assert "hunter2" not in redact_text(f"Server returned 401 for '{url}'", url)


def test_source_kinds():
    assert [source_kind(u) for u in ("rtsp://h/x", "http://h/x.mjpg", "https://h/v.mp4", "/a/b.mp4", "file:///a/b.mp4")] == \
        ["rtsp", "http", "http", "file", "file"]
    with pytest.raises(ValueError):
        source_kind("ftp://h/x")


def test_queue_keeps_the_freshest_frames_and_counts_drops():
    queue = FrameQueue(2)
    for i in range(5):
        queue.put(Frame(np.zeros((1, 1, 3), np.uint8), float(i), float(i)))
    assert len(queue) == 2 and queue.dropped == 3
    assert [queue.get(0).offset_s, queue.get(0).offset_s, queue.get(0)] == [3.0, 4.0, None]


def test_backoff_doubles_to_a_ceiling_and_resets():
    backoff = Backoff(0.5, 4.0)
    assert [backoff.delay() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.delay() == 0.5


def test_reader_samples_at_the_stream_rate_and_drops_what_nobody_takes(videos, scenes):
    scene = scenes["hall"]
    queue = FrameQueue(2)
    reader = StreamReader(str(videos["hall"]), queue, fps=4, realtime=False).start()
    deadline = time.monotonic() + 20
    while reader.state != "ended" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reader.state == "ended"
    assert reader.frames_read == pytest.approx(scene.duration_s * 4, abs=1)  # 8 fps clip sampled at 4 fps
    assert len(queue) == 2 and queue.dropped == reader.frames_read - 2  # bounded: the rest was dropped
    offsets = [queue.get(0).offset_s for _ in range(2)]
    assert offsets[1] - offsets[0] == pytest.approx(0.25, abs=0.01)


def test_reader_paces_a_file_like_a_camera(videos):
    queue = FrameQueue(100)
    started = time.monotonic()
    reader = StreamReader(str(videos["hall"]), queue, fps=5).start()
    while reader.state != "ended" and time.monotonic() - started < 20:
        time.sleep(0.05)
    assert time.monotonic() - started >= 5.0  # a 6 s clip plays in about 6 s, not as fast as it decodes


def test_a_source_that_is_not_there_reconnects_with_an_error():
    queue = FrameQueue(2)
    reader = StreamReader("rtsp://user:pw@127.0.0.1:9/none", queue, fps=5, open_timeout_s=1, read_timeout_s=1).start()
    try:
        deadline = time.monotonic() + 10
        while reader.reconnects < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.state == "reconnecting" and reader.reconnects >= 2
        assert reader.last_error and "pw" not in reader.last_error
    finally:
        reader.stop()
    assert reader.state == "stopped"


def test_an_http_video_url_plays_like_a_file(videos):
    """An MP4 behind a plain HTTP server (stdlib, 127.0.0.1): paced at its own speed, sampled, and it ends."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(videos["hall"].parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        queue = FrameQueue(100)
        started = time.monotonic()
        reader = StreamReader(f"http://127.0.0.1:{server.server_address[1]}/{videos['hall'].name}", queue, fps=4).start()
        while reader.state != "ended" and time.monotonic() - started < 20:
            time.sleep(0.05)
        assert reader.state == "ended" and time.monotonic() - started >= 5.0
        assert reader.frames_read == pytest.approx(24, abs=1) and queue.dropped == 0
    finally:
        server.shutdown()
