"""Cameras end to end through the running application: a camera registered over HTTP produces the right
events on the test clips (built from the real photos) through a video file, RTSP (GStreamer's RTSP
server), MJPEG over HTTP and pushed frames. Events are checked against each clip's ground-truth timeline.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from streams import testmedia
from streams.service import signature
from tests.docs_snippets import doc_snippet
from tests.conftest import free_port
from tests.streams.mjpeg_server import MjpegServer

RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
TOLERANCE_S = 1.0  # event offsets vs the timeline: sampling (5 fps), voting (2 faces) and edge-of-frame faces


@pytest.fixture(scope="module")
def admin(app, data_dir, http):
    http.get("/v1/readyz")
    return {"Authorization": f"Bearer {(data_dir / 'admin_token').read_text().strip()}"}


def new_tenant(http, admin, name: str) -> dict:
    r = http.post("/v1/tenants", json={"name": name}, headers=admin)
    assert r.status_code == 201, r.text
    body = r.json()
    return {"id": body["tenant_id"], "auth": {"Authorization": f"Bearer {body['api_key']}"}}


def enrol_everyone(http, tenant, faces_root) -> dict[str, str]:
    """The enrolled identities, each from a photo that is not in the clips: {identity: person_id}."""
    persons = {}
    for identity, photo in testmedia.enrolment_photos(faces_root).items():
        r = http.post("/v1/persons", json={"external_id": identity}, headers=tenant["auth"])
        assert r.status_code == 201, r.text
        persons[identity] = r.json()["person_id"]
        r = http.post(f"/v1/persons/{persons[identity]}/faces", json={"image": base64.b64encode(photo.read_bytes()).decode()},
                      headers=tenant["auth"])
        assert r.status_code == 201, r.text
    return persons


@pytest.fixture(scope="module")
def media(data_dir, videos) -> dict[str, Path]:
    """The clips where file sources may be read from: the server's {data_dir}/media."""
    folder = data_dir / "media"
    folder.mkdir(exist_ok=True)
    return {name: Path(shutil.copy(path, folder / path.name)) for name, path in videos.items()}


@pytest.fixture(scope="module")
def site(http, admin, faces_root):
    tenant = new_tenant(http, admin, "cameras")
    return tenant, enrol_everyone(http, tenant, faces_root)


def create_stream(http, tenant, **body) -> dict:
    r = http.post("/v1/streams", json={"fps": 5, **body}, headers=tenant["auth"])
    assert r.status_code == 201, r.text
    return r.json()


def wait_until(predicate, timeout_s: float, what: str, step: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def events_of(http, tenant, camera: str | None = None, **params) -> list[dict]:
    r = http.get("/v1/events", params={"limit": 1000, **({"camera": camera} if camera else {}), **params}, headers=tenant["auth"])
    assert r.status_code == 200, r.text
    return r.json()["events"]


def stream_status(http, tenant, stream_id) -> dict:
    r = http.get(f"/v1/streams/{stream_id}", headers=tenant["auth"])
    assert r.status_code == 200, r.text
    return r.json()["status"]


def settled(http, tenant, stream_id, states=("ended",)) -> dict | None:
    status = stream_status(http, tenant, stream_id)
    return status if status["state"] in states and status["tracks_active"] == 0 else None


def check_against_timeline(events: list[dict], scene: testmedia.Scene, cooldown_s: float) -> dict[str, list[dict]]:
    """Every enrolled person on screen gets one event per appearance (appearances further apart than the
    cooldown), each within the appearance; the stranger is unknown; nobody else appears."""
    by_identity: dict[str, list[dict]] = {}
    for event in events:
        who = event["external_id"] if event["kind"] == "person_seen" else testmedia.STRANGER
        by_identity.setdefault(who, []).append(event)
    shown = scene.identities()
    assert set(by_identity) == shown, (set(by_identity), shown)
    assert testmedia.NEVER_SHOWN not in by_identity
    for identity, seen in by_identity.items():
        appearances = [r for r in scene.timeline() if r["identity"] == identity]
        merged: list[dict] = []  # appearances closer than the cooldown count as one
        for r in appearances:
            if merged and r["start_s"] - merged[-1]["end_s"] <= cooldown_s:
                merged[-1] = {**merged[-1], "end_s": r["end_s"]}
            else:
                merged.append(dict(r))
        assert len(seen) == len(merged), (identity, [(e["first_offset_s"], e["last_offset_s"]) for e in seen], merged)
        for event, appearance in zip(sorted(seen, key=lambda e: e["first_offset_s"]), merged):
            assert appearance["start_s"] - TOLERANCE_S <= event["first_offset_s"] <= appearance["end_s"], (identity, event, appearance)
            assert event["last_offset_s"] <= appearance["end_s"] + TOLERANCE_S, (identity, event, appearance)
            assert event["track_length"] >= 2
            if event["kind"] == "person_seen":
                assert event["best_similarity"] >= 0.37
    return by_identity


# ---------------------------------------------------------------------------------------------- sources
def test_file_stream_reports_each_appearance_once_per_cooldown(http, site, media, videos, scenes):
    tenant, persons = site
    # A file source reads from the server's media directories only.
    r = http.post("/v1/streams", json={"name": "x", "url": str(videos["door"])}, headers=tenant["auth"])
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    stream = create_stream(http, tenant, name="door (file)", url=str(media["door"]), cooldown_s=2.0)
    assert stream["source"] == "file" and stream["status"]["state"] in ("starting", "connecting", "connected", "running")
    wait_until(lambda: settled(http, tenant, stream["stream_id"]), 60, "the file to play")
    events = events_of(http, tenant, stream["stream_id"])
    seen = check_against_timeline(events, scenes["door"], cooldown_s=2.0)
    assert len(seen["obama"]) == 2  # left and came back: two appearances, two events
    assert all(e["person_id"] == persons[e["external_id"]] for e in events if e["kind"] == "person_seen")
    status = stream_status(http, tenant, stream["stream_id"])
    assert status["frames_processed"] > 0 and status["frames_read"] >= status["frames_processed"]


class RtspServer:
    """GStreamer's RTSP server (system python3 + Debian packages) serving one clip at rtsp://…/<mount>."""

    def __init__(self, clip: Path, mount: str, user: str = "camera", password: str = "s3cret-pw", port: int | None = None) -> None:
        self.clip, self.mount, self.user, self.password = clip, mount, user, password
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> "RtspServer":
        assert Path(SYSTEM_PYTHON).exists() and shutil.which("gst-inspect-1.0") or True
        self.process = subprocess.Popen([SYSTEM_PYTHON, str(RTSP_SERVER), str(self.port), str(self.clip), f"/{self.mount}",
                                         self.user, self.password], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.process.stdout.readline().strip()
        assert line == "READY", f"RTSP server did not start: {line} {self.process.stdout.read() if self.process.poll() is not None else ''}"
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    @property
    def url(self) -> str:
        return f"rtsp://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.mount}"


@pytest.mark.rtsp
def test_rtsp_and_mjpeg_cameras_and_one_anonymous_id_for_the_stranger(http, site, live_videos, live_jpegs, scenes, ray_cluster):
    """Two cameras at once: "door" over RTSP (with credentials), "hall" as MJPEG over HTTP (token in the
    query). The stranger walks past both: one anonymous id, the same as in the file test (another visit)."""
    tenant, _ = site
    rtsp = RtspServer(live_videos["door"], "door").start()
    try:
        with MjpegServer({"hall": live_jpegs["hall"]}, scenes["hall"].fps, token="tok-123") as mjpeg:
            door = create_stream(http, tenant, name="door (rtsp)", url=rtsp.url, cooldown_s=2.0)
            hall = create_stream(http, tenant, name="hall (mjpeg)", url=mjpeg.url("hall"), cooldown_s=2.0)
            # Credentials never come back: not in the answer, not in the listing.
            assert door["url"] == f"rtsp://***@127.0.0.1:{rtsp.port}/door" and door["source"] == "rtsp"
            assert hall["url"].endswith("/hall.mjpg?token=***") and hall["source"] == "http"
            listing = http.get("/v1/streams", headers=tenant["auth"]).text
            assert rtsp.password not in listing and "tok-123" not in listing
            # Live sources do not end: wait for the events of the whole clip (the servers play an empty tail after it).
            expected = {"door": len(scenes["door"].timeline()), "hall": len(scenes["hall"].timeline())}

            def complete():
                got = {name: events_of(http, tenant, s["stream_id"]) for name, s in (("door", door), ("hall", hall))}
                return got if all(len(got[n]) >= expected[n] and stream_status(http, tenant, s["stream_id"])["tracks_active"] == 0
                                  for n, s in (("door", door), ("hall", hall))) else None

            got = wait_until(complete, 60, "the events of both clips", step=0.5)
            for s in (door, hall):
                r = http.patch(f"/v1/streams/{s['stream_id']}", json={"enabled": False}, headers=tenant["auth"])
                assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["status"]["state"] == "disabled", r.text
            check_against_timeline(events_of(http, tenant, door["stream_id"]), scenes["door"], cooldown_s=2.0)
            check_against_timeline(events_of(http, tenant, hall["stream_id"]), scenes["hall"], cooldown_s=2.0)
    finally:
        rtsp.stop()
    unknown_ids = {e["unknown_id"] for e in events_of(http, tenant, kind="unknown_seen")}
    assert len(unknown_ids) == 1, unknown_ids  # file test, RTSP door and MJPEG hall: one stranger
    unknowns = http.get("/v1/unknowns", headers=tenant["auth"]).json()["unknowns"]
    assert [u["unknown_id"] for u in unknowns] == list(unknown_ids)
    # Nothing in the worker or router logs holds the credentials.
    logs = Path(ray_cluster._private.worker.global_worker.node.get_session_dir_path()) / "logs"
    for path in logs.glob("*"):
        if path.is_file():
            text = path.read_text(errors="ignore")
            assert rtsp.password not in text and "tok-123" not in text, path


@pytest.mark.rtsp
def test_rtsp_camera_cut_mid_stream_reconnects(http, site, videos):
    tenant, _ = site
    rtsp = RtspServer(videos["hall"], "hall").start()
    stream = create_stream(http, tenant, name="hall (rtsp, cut)", url=rtsp.url, cooldown_s=60)
    sid = stream["stream_id"]
    try:
        wait_until(lambda: stream_status(http, tenant, sid)["frames_read"] >= 5, 30, "frames over RTSP")
        rtsp.stop()  # the camera goes away mid-stream
        down = wait_until(lambda: (s := stream_status(http, tenant, sid))["state"] == "reconnecting" and s, 30, "reconnecting")
        assert down["last_error"] and rtsp.password not in down["last_error"]
        read_before = stream_status(http, tenant, sid)["frames_read"]
        rtsp = RtspServer(videos["hall"], "hall", port=rtsp.port).start()  # back on the same address
        up = wait_until(lambda: (s := stream_status(http, tenant, sid))["state"] == "connected" and s["frames_read"] > read_before + 3 and s,
                        30, "the stream to reconnect")
        assert up["reconnects"] >= 1
    finally:
        rtsp.stop()
        assert http.delete(f"/v1/streams/{sid}", headers=tenant["auth"]).status_code == 204
    assert http.get(f"/v1/streams/{sid}", headers=tenant["auth"]).status_code == 404


def test_pushed_frames_produce_the_timeline_events(http, site, scenes, face_cuts):
    tenant, _ = site
    stream = create_stream(http, tenant, name="hall (pushed)", cooldown_s=2.0)
    assert stream["url"] is None and stream["source"] == "push"
    scene = scenes["hall"]
    origin = time.time()
    started = time.monotonic()
    for t, jpeg in testmedia.jpeg_frames(scene, face_cuts)[:: max(1, scene.fps // 5)]:  # a 5 fps edge device
        delay = started + t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        r = http.post(f"/v1/streams/{stream['stream_id']}/frames", params={"ts": origin + t}, content=jpeg,
                      headers={**tenant["auth"], "Content-Type": "image/jpeg"})
        assert r.status_code == 202, r.text
    wait_until(lambda: stream_status(http, tenant, stream["stream_id"])["tracks_active"] == 0, 20, "tracks to end")
    check_against_timeline(events_of(http, tenant, stream["stream_id"]), scene, cooldown_s=2.0)
    # Bad input: not an image → 400; a burst faster than the pipeline → frames dropped, never queued without bound.
    r = http.post(f"/v1/streams/{stream['stream_id']}/frames", content=b"not a jpeg", headers={**tenant["auth"], "Content-Type": "image/jpeg"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_image"
    burst = testmedia.jpeg_frames(scene, face_cuts)[10:40]
    for _, jpeg in burst:
        assert http.post(f"/v1/streams/{stream['stream_id']}/frames", content=jpeg,
                         headers={**tenant["auth"], "Content-Type": "image/jpeg"}).status_code == 202
    status = stream_status(http, tenant, stream["stream_id"])
    assert status["frames_dropped"] > 0
    assert status["frames_read"] - status["frames_dropped"] - status["frames_processed"] <= 2 + 1  # queue of 2 (+1 in hand)
    r = http.post(f"/v1/streams/{stream['stream_id']}/frames", content=burst[0][1], headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 401
    # A PATCH restarts the camera's worker with the new settings; it takes frames again right away.
    r = http.patch(f"/v1/streams/{stream['stream_id']}", json={"fps": 4, "name": "hall (pushed, 4 fps)"}, headers=tenant["auth"])
    assert r.status_code == 200 and r.json()["fps"] == 4 and r.json()["name"] == "hall (pushed, 4 fps)", r.text
    r = http.post(f"/v1/streams/{stream['stream_id']}/frames", content=burst[0][1], headers={**tenant["auth"], "Content-Type": "image/jpeg"})
    assert r.status_code == 202, r.text
    assert http.patch(f"/v1/streams/{stream['stream_id']}", json={"fps": 0}, headers=tenant["auth"]).status_code == 400


class WebhookReceiver:
    """A real HTTP endpoint on 127.0.0.1 that fails its first `fail_first` deliveries with a 500."""

    def __init__(self, fail_first: int = 1) -> None:
        self.received: list[tuple[dict, bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"


def test_sse_webhooks_attendance_promotion_and_deletion(http, admin, faces_root, media, scenes, app, ray_cluster):
    """A fresh tenant watches the "hall" clip from a file: the events arrive over SSE and signed webhooks
    (one retried after a 500, one dead-lettered), attendance shows first-in/last-out, the stranger is
    promoted to a person, deleting a person deletes their events, deleting the tenant stops its cameras."""
    tenant = new_tenant(http, admin, "cameras-lifecycle")
    persons = enrol_everyone(http, tenant, faces_root)
    receiver = WebhookReceiver(fail_first=1)
    hook = http.post("/v1/webhooks", json={"url": receiver.url}, headers=tenant["auth"]).json()
    dead = http.post("/v1/webhooks", json={"url": f"http://127.0.0.1:{free_port()}/nobody", "max_attempts": 2},
                     headers=tenant["auth"]).json()
    for bad in ("ftp://example.com/hook", "/etc/hook", "rtsp://h/x"):
        r = http.post("/v1/webhooks", json={"url": bad}, headers=tenant["auth"])
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", (bad, r.text)

    sse_events: list[dict] = []

    def listen():
        with httpx.Client(base_url=app[1], timeout=60) as client:
            with client.stream("GET", "/v1/events/stream", headers=tenant["auth"]) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        sse_events.append(json.loads(line[6:]))
                        if len(sse_events) >= 2:
                            return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    stream = create_stream(http, tenant, name="hall (file)", url=str(media["hall"]), cooldown_s=60)
    wait_until(lambda: settled(http, tenant, stream["stream_id"]), 60, "the file to play")
    events = events_of(http, tenant)
    check_against_timeline(events, scenes["hall"], cooldown_s=60)
    listener.join(20)
    assert [e["seq"] for e in sse_events] == [e["seq"] for e in events]

    # webhooks: the first delivery got a 500 and was retried; each body is signed with the webhook's secret
    wait_until(lambda: len(receiver.received) >= len(events), 20, "webhook deliveries")
    for headers, body in receiver.received:
        assert headers["X-SecureGate-Signature"] == "sha256=" + signature(hook["secret"], body)
    assert sorted(json.loads(b)["event"]["seq"] for _, b in receiver.received) == sorted(e["seq"] for e in events)
    deliveries = http.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", headers=tenant["auth"]).json()["deliveries"]
    assert {d["state"] for d in deliveries} == {"delivered"} and max(d["attempts"] for d in deliveries) == 2
    dead_letters = wait_until(lambda: (d := http.get(f"/v1/webhooks/{dead['webhook_id']}/deliveries", params={"state": "dead"},
                                                      headers=tenant["auth"]).json()["deliveries"]) and len(d) == len(events) and d,
                              20, "dead letters")
    assert all(d["attempts"] == 2 and d["last_error"] for d in dead_letters)

    # attendance: first in / last out of the day
    today = time.strftime("%Y-%m-%d", time.gmtime())
    rows = http.get("/v1/attendance", params={"date": today}, headers=tenant["auth"]).json()["persons"]
    assert [r["external_id"] for r in rows] == ["kit_harington"]
    assert rows[0]["first_in"] < rows[0]["last_out"] and rows[0]["first_camera"] == stream["stream_id"]
    assert http.get("/v1/attendance", params={"date": "yesterday"}, headers=tenant["auth"]).status_code == 400

    # the stranger becomes a person; their camera samples make them searchable
    (unknown,) = http.get("/v1/unknowns", headers=tenant["auth"]).json()["unknowns"]
    # "not this person" from an anonymous id: each of its kept camera samples becomes a rejection of kit, and the
    # stranger's photo is then closer to kit's rejections than to kit's faces
    r = http.post(f"/v1/persons/{persons['kit_harington']}/rejections", json={"unknown_id": unknown["unknown_id"]},
                  headers=tenant["auth"])
    assert r.status_code == 201 and len(r.json()["rejection_ids"]) == unknown["samples"], r.text
    stranger = base64.b64encode(testmedia.photo(faces_root, testmedia.STRANGER, 3).read_bytes()).decode()
    verdict = http.post("/v1/verify", json={"image": stranger, "person_id": persons["kit_harington"]}, headers=tenant["auth"]).json()
    assert verdict["rejected"] is True and verdict["match"] is False, verdict
    r = http.post(f"/v1/unknowns/{unknown['unknown_id']}/promote", json={"external_id": "visitor-1"}, headers=tenant["auth"])
    assert r.status_code == 201, r.text
    promoted = r.json()
    assert promoted["faces"] >= 1 and promoted["events"] == 1
    photo = testmedia.photo(faces_root, testmedia.STRANGER, 3)
    found = http.post("/v1/search", json={"image": base64.b64encode(photo.read_bytes()).decode()}, headers=tenant["auth"]).json()
    assert found["faces"][0]["matches"][0]["external_id"] == "visitor-1"
    assert http.get("/v1/unknowns", headers=tenant["auth"]).json()["unknowns"] == []
    assert events_of(http, tenant, person="visitor-1")[0]["person_id"] == promoted["person_id"]

    # deleting a person deletes their events
    assert events_of(http, tenant, person=persons["kit_harington"])
    assert http.delete(f"/v1/persons/{persons['kit_harington']}", headers=tenant["auth"]).status_code == 204
    assert events_of(http, tenant, person=persons["kit_harington"]) == []
    assert events_of(http, tenant, person="kit_harington") == []

    # deleting the tenant stops its cameras first, then its files go (events.db with them)
    live = create_stream(http, tenant, name="looping", url=f"file://{media['hall']}", loop=True)
    worker = f"stream:{tenant['id']}:{live['stream_id']}"
    assert worker in {a["name"] for a in ray_cluster.util.list_named_actors(all_namespaces=True)}
    assert http.delete(f"/v1/tenants/{tenant['id']}", headers=admin).status_code == 204
    wait_until(lambda: worker not in {a["name"] for a in ray_cluster.util.list_named_actors(all_namespaces=True)}, 10, "the worker to stop")


def test_readme_camera_example_runs(app, site, media, data_dir, monkeypatch):
    import contextlib
    import io

    snippet = doc_snippet("cameras-example")
    tenant, _ = site
    monkeypatch.setenv("SECUREGATE_URL", app[1])
    monkeypatch.setenv("SECUREGATE_API_KEY", tenant["auth"]["Authorization"][7:])
    monkeypatch.setenv("SECUREGATE_DATA_DIR", str(data_dir))
    assert media["door"] == data_dir / "media" / "door.mp4"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "docs/cameras.md", "exec"), {"__name__": "__docs__"})
    lines = out.getvalue().splitlines()
    assert {line for line in lines if line.startswith("person_seen")} == {"person_seen obama", "person_seen biden"}, lines
    assert len([line for line in lines if line.startswith("unknown_seen unk_")]) == 1, lines


def test_a_crashed_stream_worker_is_restarted_and_resumes(http, site, media, ray_cluster):
    tenant, _ = site
    stream = create_stream(http, tenant, name="looping door", url=str(media["door"]), loop=True, cooldown_s=60)
    sid = stream["stream_id"]
    try:
        wait_until(lambda: stream_status(http, tenant, sid)["frames_processed"] >= 5, 30, "frames processed")
        worker = ray_cluster.get_actor(f"stream:{tenant['id']}:{sid}", namespace="securegate")
        pid = ray_cluster.get(worker.__ray_call__.remote(lambda self: __import__("os").getpid()))
        ray_cluster.kill(worker, no_restart=False)  # a crash: Ray restarts it
        resumed = wait_until(lambda: (s := stream_status(http, tenant, sid))["state"] == "connected" and s["frames_processed"] >= 3 and s,
                             60, "the restarted worker to resume")
        assert ray_cluster.get(worker.__ray_call__.remote(lambda self: __import__("os").getpid())) != pid
        assert resumed["frames_read"] >= resumed["frames_processed"]
    finally:
        assert http.delete(f"/v1/streams/{sid}", headers=tenant["auth"]).status_code == 204


def test_content_key_rotation_keeps_the_camera_records_readable(http, admin, site, data_dir):
    """The rotation retires the old key version once the faces are re-encrypted; events.db is re-sealed
    under the new version before that, so every event, stream and unknown still opens."""
    import sqlite3

    tenant, _ = site
    before = events_of(http, tenant)
    streams_before = http.get("/v1/streams", headers=tenant["auth"]).json()["streams"]
    assert before and streams_before
    r = http.post(f"/v1/tenants/{tenant['id']}/keys/rotate", headers=admin)
    assert r.status_code == 202, r.text
    version = r.json()["version"]
    wait_until(lambda: http.get("/v1/admin/keys/status", headers=admin).json()["rotations"][tenant["id"]]["state"] == "done",
               30, "the rotation to finish")
    with sqlite3.connect(f"file:{data_dir / 'tenants' / tenant['id'] / 'events.db'}?mode=ro", uri=True) as db:
        versions = {v for (v,) in db.execute("SELECT key_version FROM events UNION SELECT key_version FROM streams"
                                             " UNION SELECT key_version FROM unknowns")}
    assert versions == {version}
    after = events_of(http, tenant)
    assert [(e["seq"], e.get("person_id"), e.get("unknown_id")) for e in after] == \
        [(e["seq"], e.get("person_id"), e.get("unknown_id")) for e in before]
    assert [s["stream_id"] for s in http.get("/v1/streams", headers=tenant["auth"]).json()["streams"]] == \
        [s["stream_id"] for s in streams_before]
