"""The generated camera clips: decodable H.264 at the scene's rate, and the ground truth matches what the
real detector sees in them."""

from __future__ import annotations

import av

from vision.detector import FaceDetector

from vision.packs import resolve_pack

from vision.runtime import onnx_providers
from streams import testmedia


def test_clips_decode_and_ground_truth_matches_detections(videos, scenes, models_dir):
    detector = FaceDetector(resolve_pack(str(models_dir), allow_download=False), onnx_providers(False), det_size=320, threads=1)
    for name, path in videos.items():
        scene = scenes[name]
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert (stream.width, stream.height) == (scene.width, scene.height)
            frames = [(float(f.time), f.to_ndarray(format="bgr24")) for f in container.decode(stream)]
        assert len(frames) == len(scene.frame_times())
        agree = sum(len(detector.detect(image)) == len(scene.visible_at(t)) for t, image in frames)
        # Faces half out of the frame are where ground truth and detector may differ by one.
        assert agree >= 0.85 * len(frames), (name, agree, len(frames))


def test_scenes_cover_the_issue_cases(scenes):
    door, hall = scenes["door"], scenes["hall"]
    assert any(len(door.visible_at(t)) == 2 for t in door.frame_times())  # two people at once
    assert testmedia.STRANGER in door.identities() and testmedia.STRANGER in hall.identities()
    assert testmedia.STRANGER not in testmedia.ENROLLED
    assert testmedia.NEVER_SHOWN in testmedia.ENROLLED
    assert all(testmedia.NEVER_SHOWN not in s.identities() for s in scenes.values())
    obama = [r for r in door.timeline() if r["identity"] == "obama"]
    assert len(obama) == 2 and obama[1]["start_s"] - obama[0]["end_s"] >= 2.5  # leaves and comes back
    # the stranger's two appearances come from two different photos
    photos = {a.photo for s in scenes.values() for a in s.appearances if a.identity == testmedia.STRANGER}
    assert len(photos) == 2
