"""Camera test media, built once per session from the real photos into a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams import testmedia


@pytest.fixture(scope="session")
def scenes(faces_root) -> dict[str, testmedia.Scene]:
    return testmedia.default_scenes(faces_root)


@pytest.fixture(scope="session")
def face_cuts(models_dir, faces_root, scenes) -> testmedia.FaceCuts:
    photos = [a.photo for s in scenes.values() for a in s.appearances]
    return testmedia.FaceCuts.from_photos(models_dir, photos)


@pytest.fixture(scope="session")
def videos(tmp_path_factory, scenes, face_cuts) -> dict[str, Path]:
    """camera name -> MP4 (H.264) of its scene."""
    folder = tmp_path_factory.mktemp("camera-media")
    return {name: testmedia.write_video(scene, face_cuts, folder / f"{name}.mp4") for name, scene in scenes.items()}


LIVE_TAIL_S = 10.0


@pytest.fixture(scope="session")
def live_videos(tmp_path_factory, scenes, face_cuts) -> dict[str, Path]:
    """The clips followed by LIVE_TAIL_S of empty scene: what the live servers (RTSP, MJPEG) play, so a test
    sees one play of the clip before the source ends and reconnects (which replays it)."""
    import dataclasses

    folder = tmp_path_factory.mktemp("camera-media-live")
    return {name: testmedia.write_video(dataclasses.replace(scene, duration_s=scene.duration_s + LIVE_TAIL_S), face_cuts,
                                        folder / f"{name}.mp4") for name, scene in scenes.items()}


@pytest.fixture(scope="session")
def live_jpegs(scenes, face_cuts) -> dict[str, list]:
    import dataclasses

    return {name: testmedia.jpeg_frames(dataclasses.replace(scene, duration_s=scene.duration_s + LIVE_TAIL_S), face_cuts)
            for name, scene in scenes.items()}


@pytest.fixture(scope="session")
def lobby(tmp_path_factory, models_dir, faces_root) -> tuple[testmedia.Scene, testmedia.FaceCuts]:
    """The two strangers' scene (one of them a face of insightface's group photo) and its face cuts."""
    second = testmedia.group_photo_faces(models_dir, tmp_path_factory.mktemp("group-photo"))[testmedia.SECOND_STRANGER]
    scene = testmedia.strangers_scene(faces_root, second)
    return scene, testmedia.FaceCuts.from_photos(models_dir, [a.photo for a in scene.appearances])
