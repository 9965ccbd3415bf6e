"""Faces as cameras see them, a small slice of benchmarks/degraded.py through the running application: a pushed
camera shows 60 px faces with motion blur in dim light (three looks at enrolled people, never their enrolment
photo, and two strangers); every enrolled person is named, nobody wrongly, and the strangers are unknown."""

from __future__ import annotations

import pytest

from benchmarks.degraded import enrol, run_camera
from streams import degradation


@pytest.fixture(scope="module")
def crowd(models_dir, faces_root) -> degradation.CrowdFaces:
    return degradation.crowd_faces(faces_root, models_dir)


def test_blurred_dim_60px_faces_are_named_and_strangers_are_not(http, app, data_dir, crowd):
    admin = (data_dir / "admin_token").read_text().strip()
    tenant = enrol(http, admin, crowd)
    picked = {"obama": 1, "kit_harington": 1, "biden": 2, degradation.STRANGER + "t1_2": 1,
              degradation.STRANGER + "lin_manuel_miranda": 1}  # identity -> which of its looks
    faces = [f for f in crowd.faces if f.identity in picked
             and [g for g in crowd.faces if g.identity == f.identity].index(f) + 1 == picked[f.identity]]
    condition = degradation.Condition(60, blur=True, dim=True)
    scene = degradation.crowd_scene(faces, condition.face_px)
    run = run_camera(http, tenant, condition.name, degradation.clip_jpegs(scene, crowd.cuts, condition), realtime=False)
    result = degradation.score(run["events"], scene, crowd.enrolled)
    assert (result["enrolled_shown"], result["strangers_shown"]) == (3, 2)
    assert result["wrong_names"] == 0, result["wrong"]
    assert result["recall"] == 1.0, result
    assert result["stranger_unknown_rate"] == 1.0, result
    for event in run["events"]:  # the thumbnail's source frame: the track's best face, inside the event
        assert event["first_offset_s"] <= event["best_frame_offset_s"] <= event["last_offset_s"], event
        assert 0 < event["best_frame_quality"] <= 1
