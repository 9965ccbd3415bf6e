"""`securegate eval`: metric functions on hand-made scores with known answers, and a real run on
../shared/faces/identities whose numbers are checked against an independent computation."""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
from PIL import Image

from evaluation import metrics as evaluation_metrics
from evaluation import run as evaluation_run
from evaluation.apply import ApplyError, apply_threshold
from evaluation.metrics import (
    eer,
    far_frr,
    far_upper_bound,
    group_frr,
    identification_accuracy,
    pair_minimum,
    pair_scores,
    threshold_at_far,
)
from evaluation.files import write_report
from evaluation.report import Evaluation, build_report, summary_markdown
from cli import main as cli
from vision.detector import FaceDetector
from vision.embedder import FaceEmbedder
from vision.packs import load_pack
from vision.runtime import onnx_providers

GROUPS = {"obama": "A", "biden": "A", "kit_harington": "B", "rose_leslie": "B", "alex_lacamoire": "B"}
ADMIN_TOKEN = "admin-secret-for-test"


# ============================================================================ metric functions
def test_far_frr_counts_scores_at_the_threshold_as_accepted():
    genuine = np.array([0.4, 0.5, 0.6, 0.7])
    impostor = np.array([0.1, 0.2, 0.5, 0.55])
    far, frr = far_frr(genuine, impostor, [0.0, 0.5, 0.55, 0.6, 1.0])
    np.testing.assert_allclose(far, [1.0, 0.5, 0.25, 0.0, 0.0])
    np.testing.assert_allclose(frr, [0.0, 0.25, 0.5, 0.5, 1.0])


def test_eer_perfectly_separated_is_zero_with_threshold_in_the_gap():
    genuine = np.array([0.6, 0.7, 0.9])
    impostor = np.array([-0.1, 0.0, 0.2, 0.3])
    value, threshold = eer(genuine, impostor)
    assert value == 0.0
    assert threshold == pytest.approx(0.45)  # midway between the best impostor and the worst genuine


def test_eer_with_a_known_overlap():
    # One impostor (0.55) above one genuine (0.5): on (0.5, 0.55] FAR = FRR = 1/4.
    genuine = np.array([0.5, 0.6, 0.7, 0.8])
    impostor = np.array([0.1, 0.2, 0.3, 0.55])
    value, threshold = eer(genuine, impostor)
    assert value == pytest.approx(0.25)
    assert threshold == pytest.approx(0.525)
    far, frr = far_frr(genuine, impostor, [threshold])
    assert far[0] == frr[0] == pytest.approx(0.25)


def test_eer_of_inverted_scores_is_total_failure():
    # Every impostor outscores every genuine pair: FAR and FRR meet only where both are 1 (t in (0.2, 0.8]).
    value, threshold = eer(np.array([0.1, 0.2]), np.array([0.8, 0.9]))
    assert value == 1.0 and 0.2 < threshold <= 0.8


def test_threshold_at_far_allows_exactly_the_target_share_of_impostors():
    rng = np.random.default_rng(1)
    impostor = rng.uniform(-0.3, 0.5, 1000)
    ft = threshold_at_far(impostor, 1e-2)
    assert ft.supported and ft.allowed_false_accepts == 10 and ft.impostor_pairs == 1000
    far, _ = far_frr(np.array([0.9]), impostor, [ft.threshold])
    assert far[0] <= 1e-2
    eleventh = np.sort(impostor)[::-1][10]
    assert eleventh < ft.threshold <= eleventh + 1e-4  # the lowest 4-decimal threshold that meets the target
    far_below, _ = far_frr(np.array([0.9]), impostor, [eleventh])
    assert far_below[0] > 1e-2


def test_threshold_at_far_is_unsupported_below_one_over_n():
    impostor = np.linspace(-0.2, 0.22, 87)
    ft = threshold_at_far(impostor, 1e-2)  # 1/87 > 1e-2: not measurable
    assert not ft.supported and ft.allowed_false_accepts == 0
    assert ft.min_measurable_far == pytest.approx(1 / 87)
    assert ft.threshold > impostor.max()  # informative only: above every impostor
    assert threshold_at_far(np.linspace(0, 1, 100), 1e-2).supported  # exactly 1/N = target is measurable


def test_threshold_at_far_with_ties_never_exceeds_the_target():
    impostor = np.array([0.3] * 5 + [0.1] * 95)
    ft = threshold_at_far(impostor, 0.02)  # 2 allowed, but 5 impostors tie at 0.3: all must be rejected
    far, _ = far_frr(np.array([1.0]), impostor, [ft.threshold])
    assert far[0] == 0.0 and 0.3 < ft.threshold <= 0.3001


def test_far_upper_bound_rule_of_three():
    assert far_upper_bound(0, 1000) == pytest.approx(1 - 0.05 ** (1 / 1000), rel=1e-6)
    assert far_upper_bound(0, 1000) == pytest.approx(3 / 1000, rel=0.01)
    assert far_upper_bound(10, 1000) > 10 / 1000


def test_pair_scores_forms_each_pair_once_and_splits_by_identity(monkeypatch):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(7, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.array(["a", "a", "b", "b", "b", "c", "a"])
    expect_gen, expect_imp = [], []
    for i, j in itertools.combinations(range(7), 2):
        (expect_gen if labels[i] == labels[j] else expect_imp).append(float(emb[i] @ emb[j]))
    for block in (2048, 3):  # also across row blocks
        monkeypatch.setattr(evaluation_metrics, "_BLOCK", block)
        ps = pair_scores(emb, labels)
        assert ps.genuine.size == 3 + 3 and ps.impostor.size == 21 - 6
        np.testing.assert_allclose(np.sort(ps.genuine), np.sort(expect_gen), atol=1e-6)
        np.testing.assert_allclose(np.sort(ps.impostor), np.sort(expect_imp), atol=1e-6)
        assert sorted(ps.genuine_label.tolist()) == ["a", "a", "a", "b", "b", "b"]


def test_identification_accuracy_known_ranks():
    gallery = np.eye(4, dtype=np.float32)
    gallery_labels = np.array(["p", "q", "r", "s"])
    probes = np.array([
        [0.9, 0.1, 0.0, 0.0],   # p: rank 1
        [0.5, 0.3, 0.4, 0.0],   # q: rank 3 (p 0.5, r 0.4, q 0.3)
        [0.1, 0.5, 0.0, 0.4],   # s: rank 2
        [0.4, 0.3, 0.2, 0.1],   # s: rank 4
    ], dtype=np.float32)
    acc = identification_accuracy(gallery, gallery_labels, probes, np.array(["p", "q", "s", "s"]), ks=(1, 2, 3, 4))
    assert acc == {1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}


def test_identification_scores_an_identity_by_its_best_gallery_image():
    gallery = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    acc = identification_accuracy(gallery, np.array(["a", "b", "a"]), np.array([[0.5, 0.85]], np.float32),
                                  np.array(["a"]), ks=(1,))
    assert acc == {1: 1.0}  # a's second image (0.98) beats b (0.85)


def test_group_frr_and_the_two_times_flag():
    genuine = np.array([0.9, 0.8, 0.7, 0.5,    0.9, 0.5, 0.4, 0.8,    0.3, 0.2, 0.4, 0.9])
    groups = np.array(["A"] * 4 + ["B"] * 4 + ["C"] * 4)
    out = group_frr(genuine, groups, threshold=0.6)
    g = out["groups"]
    assert (g["A"]["frr"], g["B"]["frr"], g["C"]["frr"]) == (0.25, 0.5, 0.75)
    assert out["best_group"] == "A"
    assert not g["A"]["flagged"]
    assert not g["B"]["flagged"]  # exactly 2x the best: not *more* than 2x
    assert g["C"]["flagged"] and g["C"]["ratio_to_best"] == pytest.approx(3.0)
    assert out["flagged"] == ["C"]


def test_group_frr_with_a_perfect_best_group_flags_any_false_reject():
    out = group_frr(np.array([0.9, 0.8, 0.9, 0.5]), np.array(["A", "A", "B", "B"]), threshold=0.6)
    assert out["groups"]["A"]["frr"] == 0.0 and out["groups"]["B"]["frr"] == 0.5
    assert out["flagged"] == ["B"] and out["groups"]["B"]["ratio_to_best"] is None


def _synthetic(noise_by_identity: dict[str, float], per_id: int = 4, dim: int = 32, seed: int = 0):
    """Unit embeddings around one random centre per identity; more noise = worse genuine scores."""
    rng = np.random.default_rng(seed)
    emb, labels, paths = [], [], []
    for ident, noise in noise_by_identity.items():
        centre = rng.normal(size=dim)
        for k in range(per_id):
            v = centre / np.linalg.norm(centre) + rng.normal(scale=noise, size=dim)
            emb.append(v / np.linalg.norm(v))
            labels.append(ident)
            paths.append(f"/data/{ident}/{ident}_{k}.jpg")
    return np.array(emb, np.float32), np.array(labels), paths


def test_groups_report_on_hand_made_embeddings_flags_the_worse_group():
    # Group "hard" identities are noisy: their genuine pairs fall below the threshold far more often.
    noise = {f"easy{i}": 0.05 for i in range(6)} | {f"hard{i}": 0.5 for i in range(6)}
    emb, labels, paths = _synthetic(noise, per_id=5)
    group_map = {"band": {ident: ("hard" if ident.startswith("hard") else "easy") for ident in noise}}
    ps = pair_scores(emb, labels)
    report = build_report(ps, emb, labels, paths, target_far=1e-2, group_map=group_map)
    res = report["groups"]["attributes"]["band"]
    t = report["groups"]["threshold"]
    assert report["chosen"]["source"] == "target_far" and t == report["chosen"]["threshold"]
    # Independent count per group at the chosen threshold.
    for name in ("easy", "hard"):
        scores = [float(emb[i] @ emb[j]) for i, j in itertools.combinations(range(len(labels)), 2)
                  if labels[i] == labels[j] and labels[i].startswith(name)]
        expect = sum(s < t for s in scores) / len(scores)
        assert res["groups"][name]["frr"] == pytest.approx(expect)
        assert res["groups"][name]["genuine_pairs"] == 6 * 10
    assert res["groups"]["hard"]["frr"] > 2 * res["groups"]["easy"]["frr"]
    assert res["flagged"] == ["hard"] and res["best_group"] == "easy"


def test_report_and_plots_when_targets_are_measurable(tmp_path):
    """Enough impostor pairs for FAR 1e-2 and 1e-3, overlapping scores: the plots and table still read."""
    emb, labels, paths = _synthetic({f"id{i}": 0.35 for i in range(40)}, per_id=3, dim=16, seed=3)
    ps = pair_scores(emb, labels)
    report = build_report(ps, emb, labels, paths, target_far=1e-3)
    report.update(counts={"identities": 40, "images": 120, "images_used": 120, "images_skipped": 0,
                          "genuine_pairs": int(ps.genuine.size), "impostor_pairs": int(ps.impostor.size)},
                  model={"name": "synthetic", "dim": 16, "detector": "none", "default_threshold": 0.5},
                  dataset={"dir": "/data", "skipped": []})
    rows = {r["target_far"]: r for r in report["target_far"]}
    assert ps.impostor.size == 7140 - 120  # C(120,2) - 40*C(3,2)
    assert rows[1e-2]["supported"] and rows[1e-3]["supported"] and not rows[1e-4]["supported"]
    for target in (1e-2, 1e-3):
        assert rows[target]["far"] <= target
        assert rows[target]["false_accepts"] <= rows[target]["allowed_false_accepts"]
    assert report["chosen"]["source"] == "target_far" and report["chosen"]["threshold"] == rows[1e-3]["threshold"]
    assert 0 < report["eer"]["eer"] < 0.5
    files = write_report(Evaluation(report, ps, emb, labels.tolist(), paths), tmp_path)
    for key in ("det", "histogram"):
        with Image.open(files[key]) as img:
            img.verify()
        with Image.open(files[key]) as img:
            assert img.size[0] > 0 and img.size[1] > 0
    assert "| 0.001 |" in files["md"].read_text()


def test_pair_minimum_follows_the_pairs_of_pair_scores():
    labels = np.array(["a", "a", "b", "c"])
    emb = np.eye(4, dtype=np.float32)
    emb[1] = emb[0]  # the one genuine pair scores 1, every impostor pair 0
    genuine_band, impostor_band = pair_minimum(np.array([2, 0, 1, 2]), labels)
    assert genuine_band.tolist() == [0]  # (a0, a1): min(2, 0)
    assert impostor_band.tolist() == [1, 2, 0, 0, 1]  # (0,2) (0,3) (1,2) (1,3) (2,3), pair_scores' order
    ps = pair_scores(emb, labels)
    assert ps.genuine.tolist() == [1.0] and ps.impostor.size == impostor_band.size


def test_quality_bands_put_a_pair_in_the_band_of_its_worse_face():
    emb, labels, paths = _synthetic({f"id{i}": 0.35 for i in range(6)}, per_id=3, dim=16, seed=5)
    quality = np.array([0.1, 0.45, 0.9] * 6)  # low, medium, high per identity
    ps = pair_scores(emb, labels)
    report = build_report(ps, emb, labels, paths, target_far=1e-2, quality=quality)
    bands = report["quality_bands"]["bands"]
    t = report["quality_bands"]["threshold"]
    assert [b["images"] for b in bands.values()] == [6, 6, 6]
    # Genuine pairs per identity: (low,med) and (low,high) are low, (med,high) is medium; none is high.
    assert [b["genuine_pairs"] for b in bands.values()] == [12, 6, 0] and bands["high"]["frr"] is None
    assert sum(b["impostor_pairs"] for b in bands.values()) == ps.impostor.size
    low = np.array([i for i in range(18) if quality[i] < 0.3])
    mask = np.isin(np.arange(18), low)
    direct = [float(emb[i] @ emb[j]) for i in range(18) for j in range(i + 1, 18)
              if labels[i] != labels[j] and (mask[i] or mask[j])]
    assert bands["low"]["impostor_pairs"] == len(direct)
    assert bands["low"]["far"] == pytest.approx(np.mean(np.array(direct) >= t))


def test_eval_reports_frr_per_quality_band_on_degraded_copies(faces_root, models_dir, tmp_path):
    """Every identity photo and a copy shrunk 6x and blurred, as a camera would give it: the copies are the
    low band, where one threshold rejects more genuine pairs than among good photos."""
    for person in sorted((faces_root / "identities").iterdir()):
        (tmp_path / person.name).mkdir()
        for path in sorted(person.iterdir()):
            image = cv2.imread(str(path))
            small = cv2.resize(image, (image.shape[1] // 6, image.shape[0] // 6), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(tmp_path / person.name / f"{path.stem}.png"), image)
            cv2.imwrite(str(tmp_path / person.name / f"{path.stem}_camera.png"), cv2.blur(small, (3, 1)))
    ev = evaluation_run.evaluate(tmp_path, models=str(models_dir))
    q = ev.report["quality_bands"]
    used = [p for p in ev.paths]
    copies = [p for p in used if p.endswith("_camera.png")]
    assert len(copies) >= 10
    assert sum(b["images"] for b in q["bands"].values()) == len(used)
    assert q["bands"]["low"]["images"] >= len(copies) // 2
    assert sum(b["genuine_pairs"] for b in q["bands"].values()) == ev.report["counts"]["genuine_pairs"]
    assert q["bands"]["low"]["frr"] > q["bands"]["high"]["frr"]
    assert "Quality bands at threshold" in summary_markdown(ev.report)


# ============================================================================ apply: recording server
class _Recorder(BaseHTTPRequestHandler):
    requests: list[dict] = []
    tenant_model = {"name": "mobilefacenet_arcface_w128", "dim": 128}

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        entry = {"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"),
                 "body": json.loads(raw) if raw else None}
        type(self).requests.append(entry)
        return entry

    def do_GET(self):  # noqa: N802
        entry = self._record()
        if entry["auth"] != f"Bearer {ADMIN_TOKEN}":
            return self._reply(403, {"error": {"code": "forbidden", "message": "not an admin token"}})
        self._reply(200, {"tenant_id": "t1", "name": "acme", "model": type(self).tenant_model, "settings": {},
                          "created_at": 0.0})

    def do_PATCH(self):  # noqa: N802
        entry = self._record()
        if entry["auth"] != f"Bearer {ADMIN_TOKEN}":
            return self._reply(403, {"error": {"code": "forbidden", "message": "not an admin token"}})
        self._reply(200, {"tenant_id": "t1", "name": "acme", "model": type(self).tenant_model,
                          "settings": entry["body"]["settings"], "created_at": 0.0})

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def admin_server():
    _Recorder.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder
    finally:
        server.shutdown()
        server.server_close()


def test_apply_refuses_a_tenant_bound_to_another_model(admin_server):
    url, recorder = admin_server
    before = len(recorder.requests)
    with mock.patch.object(recorder, "tenant_model", {"name": "glintr100", "dim": 512}):
        with pytest.raises(ApplyError, match="glintr100/512"):
            apply_threshold(url, "t1", 0.37, ADMIN_TOKEN, model={"name": "mobilefacenet_arcface_w128", "dim": 128})
    assert [r["method"] for r in recorder.requests[before:]] == ["GET"]  # read, then no write


def test_apply_reports_a_refused_token(admin_server):
    url, _ = admin_server
    with pytest.raises(ApplyError, match="HTTP 403"):
        apply_threshold(url, "t1", 0.4, "wrong-token")


def test_apply_without_a_token_fails_before_running_the_models(monkeypatch, capsys):
    monkeypatch.delenv("SECUREGATE_ADMIN_TOKEN", raising=False)
    monkeypatch.setattr(evaluation_run, "evaluate", lambda *a, **k: pytest.fail("evaluate ran without a token"))
    assert cli.main(["eval", "/nonexistent", "--apply", "t1"]) == 2
    assert "SECUREGATE_ADMIN_TOKEN" in capsys.readouterr().err


# ============================================================================ the real run
@pytest.fixture(scope="module")
def real_run(faces_root, models_dir, admin_server, tmp_path_factory):
    """`securegate eval` on ../shared/faces/identities with a groups CSV and --apply to the recording server
    (admin token from the environment, as an operator's shell would have it)."""
    out = tmp_path_factory.mktemp("eval-report")
    groups_csv = out.parent / "groups.csv"
    groups_csv.write_text("identity,group\n" + "".join(f"{k},{v}\n" for k, v in GROUPS.items()))
    url, recorder = admin_server
    before = len(recorder.requests)
    with mock.patch.dict(os.environ, {"SECUREGATE_ADMIN_TOKEN": ADMIN_TOKEN}):
        code = cli.main(["eval", str(faces_root / "identities"), "--out", str(out), "--models", str(models_dir),
                              "--groups", str(groups_csv), "--apply", "t1", "--url", url + "/", "--no-progress"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    return {"out": out, "report": report, "requests": recorder.requests[before:]}


@pytest.fixture(scope="module")
def direct(faces_root, models_dir):
    """Independent computation: OpenCV decode, FaceDetector, one face, FaceEmbedder one crop at a time."""
    pack = load_pack(models_dir)
    providers = onnx_providers(False)
    detector, embedder = FaceDetector(pack, providers), FaceEmbedder(pack, providers)
    vectors, labels, names = [], [], []
    for person in sorted((faces_root / "identities").iterdir()):
        for path in sorted(person.iterdir()):
            faces = detector.detect(cv2.imread(str(path)))
            assert len(faces) == 1, path
            vectors.append(embedder.embed([faces[0].crop])[0])
            labels.append(person.name)
            names.append(path.name)
    return np.array(vectors), labels, names


def _direct_pairs(vectors, labels):
    gen, imp = [], []
    for i, j in itertools.combinations(range(len(labels)), 2):
        (gen if labels[i] == labels[j] else imp).append(float(np.dot(vectors[i], vectors[j])))
    return gen, imp


def test_report_files_exist_and_pngs_open(real_run):
    out = real_run["out"]
    for name in ("report.json", "report.md", "det.png", "histogram.png"):
        assert (out / name).stat().st_size > 0, name
    for name in ("det.png", "histogram.png"):
        with Image.open(out / name) as img:
            img.verify()
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 300
    assert "EER" in (out / "report.md").read_text()


def test_counts_and_model(real_run, direct):
    r = real_run["report"]
    vectors, labels, _ = direct
    gen, imp = _direct_pairs(vectors, labels)
    assert r["counts"] == {"identities": 5, "images": 15, "images_used": 15, "images_skipped": 0,
                           "genuine_pairs": len(gen), "impostor_pairs": len(imp)}
    assert (len(gen), len(imp)) == (18, 87)
    assert r["dataset"]["skipped"] == []
    assert r["model"]["name"] == "mobilefacenet_arcface_w128" and r["model"]["dim"] == 128
    assert r["pipeline"]["embed_batch_size"] == 32


def test_numbers_agree_with_a_direct_computation(real_run, direct):
    r = real_run["report"]
    vectors, labels, names = direct
    gen, imp = _direct_pairs(vectors, labels)
    assert r["scores"]["genuine"]["min"] == pytest.approx(min(gen), abs=1e-4)
    assert r["scores"]["impostor"]["max"] == pytest.approx(max(imp), abs=1e-4)
    assert r["scores"]["genuine"]["mean"] == pytest.approx(np.mean(gen), abs=1e-4)
    # These photos separate perfectly: EER 0, its threshold midway in the gap.
    assert min(gen) > max(imp)
    assert r["eer"]["eer"] == 0.0
    assert r["eer"]["threshold"] == pytest.approx((min(gen) + max(imp)) / 2, abs=1e-4)
    # FAR/FRR on the grid, counted pair by pair (skip thresholds within rounding of a score).
    checked = 0
    for row in r["grid"]:
        t = row["threshold"]
        if min(abs(s - t) for s in gen + imp) < 1e-4:
            continue
        assert row["far"] == pytest.approx(sum(s >= t for s in imp) / len(imp)), t
        assert row["frr"] == pytest.approx(sum(s < t for s in gen) / len(gen)), t
        checked += 1
    assert checked >= 15
    mid = {row["threshold"]: row for row in r["grid"]}
    assert mid[0.0]["far"] > 0.3 and mid[0.0]["frr"] == 0 and mid[0.9]["frr"] > 0.8 and mid[0.9]["far"] == 0
    # Top-1: gallery = first file per identity by name, probes = the rest.
    gallery = {}
    for i, (lbl, name) in enumerate(zip(labels, names)):
        if lbl not in gallery or name < names[gallery[lbl]]:
            gallery[lbl] = i
    g_ids = list(gallery)
    probes = [i for i in range(len(labels)) if i not in gallery.values()]
    hits = sum(g_ids[int(np.argmax([vectors[p] @ vectors[gallery[g]] for g in g_ids]))] == labels[p] for p in probes)
    assert r["identification"]["probes"] == len(probes) == 10 and r["identification"]["gallery_size"] == 5
    assert r["identification"]["top1"] == pytest.approx(hits / len(probes))


def test_target_fars_are_unsupported_with_87_impostor_pairs(real_run):
    r = real_run["report"]
    rows = {row["target_far"]: row for row in r["target_far"]}
    assert set(rows) == {1e-2, 1e-3, 1e-4}
    for target, row in rows.items():
        assert row["supported"] is False and row["threshold"] is None
        assert row["min_measurable_far"] == pytest.approx(1 / 87)
        assert "1/87" in row["reason"]
        assert row["impostor_pairs_needed"] == math.ceil(1 / target)
    # So the chosen threshold falls back to the EER threshold.
    assert r["chosen"]["source"] == "eer" and r["chosen"]["threshold"] == pytest.approx(r["eer"]["threshold"])


def test_groups_from_csv_on_real_photos(real_run, direct):
    r = real_run["report"]
    vectors, labels, _ = direct
    res = r["groups"]["attributes"]["group"]
    t = r["groups"]["threshold"]
    assert t == r["chosen"]["threshold"]
    for name in ("A", "B"):
        scores = [float(vectors[i] @ vectors[j]) for i, j in itertools.combinations(range(len(labels)), 2)
                  if labels[i] == labels[j] and GROUPS[labels[i]] == name]
        info = res["groups"][name]
        assert info["genuine_pairs"] == len(scores)
        assert info["frr"] == pytest.approx(sum(s < t for s in scores) / len(scores))
        assert info["identities"] == sorted(k for k, v in GROUPS.items() if v == name)
    assert res["groups"]["A"]["genuine_pairs"] == 10 + 1  # obama C(5,2) + biden C(2,2)
    assert res["flagged"] == [] and res["unassigned_identities"] == []


def test_apply_patches_the_tenant_with_the_chosen_threshold(real_run):
    r, requests = real_run["report"], real_run["requests"]
    assert [q["method"] for q in requests] == ["GET", "PATCH"]
    patch = requests[-1]
    assert patch["path"] == "/v1/tenants/t1"
    assert patch["auth"] == f"Bearer {ADMIN_TOKEN}"
    assert patch["body"] == {"settings": {"default_threshold": r["chosen"]["threshold"]}}


def test_images_without_exactly_one_face_are_listed(faces_root, models_dir, tmp_path):
    """A two-face photo, a blank image, a corrupt file: listed with reasons, not silently dropped."""
    ids = faces_root / "identities"
    for person, files in {"kit_harington": ["kit_harington_1.jpg", "kit_harington_2.jpg"],
                          "biden": ["biden_1.jpg", "biden_2.jpg"]}.items():
        (tmp_path / person).mkdir()
        for f in files:
            shutil.copy(ids / person / f, tmp_path / person / f)
    shutil.copy(faces_root / "scenes" / "kit_with_rose.jpg", tmp_path / "kit_harington" / "kit_with_rose.jpg")
    Image.new("RGB", (320, 240), (128, 128, 128)).save(tmp_path / "biden" / "blank.png")
    (tmp_path / "biden" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "biden" / "notes.txt").write_text("not an image")

    ev = evaluation_run.evaluate(tmp_path, models=str(models_dir))
    skipped = {Path(s["path"]).name: s for s in ev.report["dataset"]["skipped"]}
    assert set(skipped) == {"kit_with_rose.jpg", "blank.png", "corrupt.jpg"}
    assert skipped["kit_with_rose.jpg"]["reason"] == "several_faces" and skipped["kit_with_rose.jpg"]["faces"] == 2
    assert skipped["blank.png"]["reason"] == "no_face" and skipped["blank.png"]["faces"] == 0
    assert skipped["corrupt.jpg"]["reason"] == "invalid_image"
    assert ev.report["dataset"]["ignored_files"] == [str(tmp_path / "biden" / "notes.txt")]
    c = ev.report["counts"]
    assert (c["images"], c["images_used"], c["images_skipped"]) == (7, 4, 3)
    assert (c["genuine_pairs"], c["impostor_pairs"]) == (2, 4)
