"""Faces as cameras see them: recall of enrolled people on crowd clips with faces of 40/60/80 px, motion blur,
dim light and sensor noise (each alone and together), through the deployed application.

    .venv/bin/python benchmarks/degraded.py                          # every condition (~12 min on 2 idle cores)
    .venv/bin/python benchmarks/degraded.py --sizes 60 --only blur+dim
    .venv/bin/python benchmarks/degraded.py --ablation               # also: what each part of the policy is worth

The clips (streams/degradation.py) walk 22 real faces through a 640x360 camera three at a time: 14 looks at
the 5 enrolled people (never their enrolment photo) and 8 strangers (insightface's t1.jpg group photo and two
of ../shared/faces). Each condition is one camera pushing its frames at 5 fps over HTTP
(POST /v1/streams/{id}/frames) into the shipped configuration (configs/local.yaml) with the model pack of
$SECUREGATE_MODELS (the development pack by default): stream worker → Detector → ByteTrack → Embedder →
tenant search at the tenant threshold → events. A frame also waits until the worker has finished the one
before, so none is dropped and recall does not depend on how busy the host is (`--realtime`: frames go at
the clip's pace only, and what the worker cannot keep up with is dropped, as from a real camera).

Per condition: recall (enrolled looks that got a person_seen event naming them), wrong names (person_seen
events naming someone not on screen: must be 0), enrolled looks that raised only unknown events or nothing,
the share of strangers that raised an unknown event, and frame→event latency (capture of a track's first
frame → its event written; it grows with the host's load). The baseline in the same run is each size's clean
clip: `vs_clean` = recall ÷ the clean recall. `--ablation` replays the same frames through the camera code in
this process (benchmarks/degraded_ablation.py: stand-ins for the deployments, the same models) with each part
of the identity policy switched off, and prints the similarity margins that decide whether a lower threshold
for templates would be safe. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streams import degradation  # noqa: E402

SHARED = Path(os.environ.get("SECUREGATE_SHARED", REPO.parent / "shared"))
CONFIG = REPO / "configs" / "local.yaml"
FPS = 5


def enrol(http: httpx.Client, admin: str, faces: degradation.CrowdFaces) -> dict:
    r = http.post("/v1/tenants", json={"name": "degraded"}, headers={"Authorization": f"Bearer {admin}"})
    r.raise_for_status()
    body = r.json()
    auth = {"Authorization": f"Bearer {body['api_key']}"}
    for identity, photo in faces.enrolment.items():
        r = http.post("/v1/persons", json={"external_id": identity}, headers=auth)
        r.raise_for_status()
        r = http.post(f"/v1/persons/{r.json()['person_id']}/faces",
                      json={"image": base64.b64encode(photo.read_bytes()).decode()}, headers=auth)
        r.raise_for_status()
    return {"tenant_id": body["tenant_id"], "auth": auth}


def stream_status(http: httpx.Client, auth: dict, stream_id: str) -> dict:
    """The worker's counters (0 while it is starting and has none yet)."""
    status = http.get(f"/v1/streams/{stream_id}", headers=auth).json()["status"]
    return {**status, **{k: status.get(k) or 0 for k in ("frames_processed", "frames_dropped", "tracks_active")}}


def run_camera(http: httpx.Client, tenant: dict, name: str, frames: list[tuple[float, bytes]], realtime: bool) -> dict:
    """One camera pushing `frames` at the clip's pace; returns its events once every track has ended. Unless
    `realtime`, a frame also waits until the worker has finished the one before (none dropped, so recall does
    not depend on how busy the host is; latency does)."""
    auth = tenant["auth"]
    r = http.post("/v1/streams", json={"name": name, "fps": FPS, "cooldown_s": 0}, headers=auth)
    r.raise_for_status()
    stream_id = r.json()["stream_id"]
    dropped = 0
    origin = time.time()
    started = time.monotonic()
    for n, (t, jpeg) in enumerate(frames):
        delay = started + t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        while not realtime and n and (s := stream_status(http, auth, stream_id))["frames_processed"] + s["frames_dropped"] < n:
            time.sleep(0.01)
        r = http.post(f"/v1/streams/{stream_id}/frames", params={"ts": origin + t}, content=jpeg,
                      headers={**auth, "Content-Type": "image/jpeg"})
        r.raise_for_status()
        dropped += r.json()["dropped"]
    behind_s = time.monotonic() - started - frames[-1][0]
    deadline = time.monotonic() + 60
    status = {}
    while time.monotonic() < deadline:
        status = stream_status(http, auth, stream_id)
        if status["frames_processed"] + status["frames_dropped"] >= len(frames) and status["tracks_active"] == 0:
            break
        time.sleep(0.25)
    events, since = [], 0
    while True:
        page = http.get("/v1/events", params={"since": since, "limit": 1000, "camera": stream_id}, headers=auth).json()
        events += page["events"]
        if not page["events"]:
            break
        since = page["next_since"]
    http.delete(f"/v1/streams/{stream_id}", headers=auth)
    return {"events": events, "frames": len(frames), "dropped": status.get("frames_dropped", dropped),
            "push_behind_s": round(max(0.0, behind_s), 2), "last_error": status.get("last_error")}


def table(rows: list[dict]) -> str:
    head = (f"{'condition':<22} {'recall':>6} {'vs_clean':>8} {'wrong':>5} {'unk(enr)':>8} {'missed':>6} "
            f"{'strangers→unk':>13} {'p50 s':>6} {'p95 s':>6} {'dropped':>7}")
    lines = [head]
    for r in rows:
        lines.append(f"{r['condition']:<22} {r['recall']:>6} {r['vs_clean']!s:>8} {r['wrong_names']:>5} {r['enrolled_unknown']:>8} "
                     f"{r['enrolled_missed']:>6} {r['stranger_unknown_rate']:>13} {r['latency_p50_s']!s:>6} "
                     f"{r['latency_p95_s']!s:>6} {r['dropped']:>7}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=os.environ.get("SECUREGATE_MODELS", str(SHARED / "models")))
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 60, 80])
    parser.add_argument("--only", nargs="+", help="conditions by name without the size: clean blur dim noise blur+dim blur+dim+noise")
    parser.add_argument("--realtime", action="store_true", help="push at the clip's pace only, dropping what the worker "
                        "cannot keep up with (default: a frame also waits for the one before)")
    parser.add_argument("--ablation", action="store_true", help="also replay the clips in-process with each quality signal on/off")
    parser.add_argument("--no-service", action="store_true", help="skip the deployed run (with --ablation)")
    ns = parser.parse_args()

    from benchmarks.deployed_app import deployed

    faces = degradation.crowd_faces(SHARED / "faces", ns.models)
    conditions = [c for c in degradation.conditions(ns.sizes) if not ns.only or c.name.split(" ", 1)[1] in ns.only]
    clips = {}
    for condition in conditions:
        scene = degradation.crowd_scene(faces.faces, condition.face_px, fps=FPS)
        clips[condition] = (scene, degradation.clip_jpegs(scene, faces.cuts, condition))
    host = {"cpus": os.cpu_count(), "load_1m_at_start": round(os.getloadavg()[0], 2),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "models": Path(ns.models).name}
    print(f"host: {host['cpus']} CPUs, load {host['load_1m_at_start']} at start; models {ns.models}; "
          f"{len(faces.faces)} faces per clip ({sum(not f.stranger for f in faces.faces)} looks at enrolled people, "
          f"{sum(f.stranger for f in faces.faces)} strangers), {FPS} fps pushed "
          f"{'in real time' if ns.realtime else 'at the clip pace, each frame once the one before is done'}", flush=True)
    rows: list[dict] = []
    if not ns.no_service:
        with deployed(ns.config, Path(ns.models), prefix="sg-degraded-") as (base, admin):
            with httpx.Client(base_url=base, timeout=120) as http:
                tenant = enrol(http, admin, faces)
                clean: dict[int, float] = {}
                for condition, (scene, frames) in clips.items():
                    run = run_camera(http, tenant, condition.name, frames, ns.realtime)
                    result = degradation.score(run["events"], scene, faces.enrolled)
                    if condition.name.endswith("clean"):
                        clean[condition.face_px] = result["recall"]
                    base_recall = clean.get(condition.face_px)
                    row = {"condition": condition.name, "face_px": condition.face_px, "blur_px": condition.blur_px,
                           "dim": condition.dim, "noise": condition.noise, **result,
                           "vs_clean": round(result["recall"] / base_recall, 3) if base_recall else None,
                           "dropped": run["dropped"], "push_behind_s": run["push_behind_s"], "last_error": run["last_error"]}
                    rows.append(row)
                    print(table([row]).splitlines()[1], f" missed: {', '.join(result['missed_identities']) or '-'}"
                          + (f"  WRONG: {result['wrong']}" if result["wrong"] else ""), flush=True)
        print(table(rows))
    ablation = None
    if ns.ablation:
        from benchmarks.degraded_ablation import ablate

        ablation = ablate(ns.models, faces, clips)
    goal = next((r for r in rows if r["face_px"] == 60 and r["blur_px"] and r["dim"] and not r["noise"]), None)
    result = {"benchmark": "degraded", **host, "load_1m_at_end": round(os.getloadavg()[0], 2),
              "goal_60px_blur_dim_recall": goal["recall"] if goal else None,
              "wrong_names": sum(r["wrong_names"] for r in rows),
              "conditions": [{k: v for k, v in r.items() if k not in ("wrong",)} for r in rows],
              "ablation": ablation}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
