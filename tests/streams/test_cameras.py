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
def test_file_stream_reports_each_appearance_once_per_cooldown(http, site, videos, scenes):
    tenant, persons = site
    stream = create_stream(http, tenant, name="door (file)", url=str(videos["door"]), cooldown_s=1.0)
    assert stream["source"] == "file" and stream["status"]["state"] in ("starting", "connecting", "connected", "running")
    wait_until(lambda: settled(http, tenant, stream["stream_id"]), 60, "the file to play")
    events = events_of(http, tenant, stream["stream_id"])
    seen = check_against_timeline(events, scenes["door"], cooldown_s=1.0)
    assert len(seen["obama"]) == 2  # left and came back: two appearances, two events
    assert all(e["person_id"] == persons[e["external_id"]] for e in events if e["kind"] == "person_seen")
    status = stream_status(http, tenant, stream["stream_id"])
    assert status["frames_processed"] > 0 and status["frames_read"] >= status["frames_processed"]
