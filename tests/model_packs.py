"""Model packs laid out as InsightFace ships them, built in temp dirs for tests.

The real detector and recognizer from ../shared/models are copied in under the production file names;
the models we do not ship (glintr100 at 512-d, the landmark and attribute models) are small synthetic ONNX
graphs with the production input/output signatures: they route and run, their outputs mean nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
from onnx import TensorProto, helper, numpy_helper
import numpy as np

# file name -> (input side, output width) of the InsightFace models we do not ship, as published.
LANDMARK_AND_ATTRIBUTE = {
    "1k3d68.onnx": (192, 3309),  # 68 3-D landmarks
    "2d106det.onnx": (192, 212),  # 106 2-D landmarks
    "genderage.onnx": (96, 3),  # gender (2) + age (1)
}

PACKS = {
    # pack: (detector file, recognizer file)
    "antelopev2": ("scrfd_10g_bnkps.onnx", "glintr100.onnx"),
    "buffalo_l": ("det_10g.onnx", "w600k_r50.onnx"),
    "buffalo_s": ("det_500m.onnx", "w600k_mbf.onnx"),
}


def synthetic_standin_model(path: Path, side: int, width: int) -> Path:
    """Stand-in ONNX graph (not a trained model): [N,3,side,side] -> global average pool -> [N,3] x W ->
    [N,width], with a dynamic batch dimension like the published files."""
    rng = np.random.default_rng(width)
    weights = numpy_helper.from_array(rng.standard_normal((3, width)).astype(np.float32), "W")
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "W"], ["fc1"]),
        ],
        f"synthetic_standin_{path.stem}",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["None", 3, side, side])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["None", width])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def build_pack(target: Path, pack: str, shared_models: Path, *, recognizer: bool = True) -> Path:
    """`target` filled as `pack` ships: the real shared detector (and, for buffalo, the real shared
    MobileFaceNet) copied under the production names; glintr100 (512-d) and the landmark and attribute
    models as synthetic stand-ins. recognizer=False leaves the recognizer out."""
    target.mkdir(parents=True, exist_ok=True)
    detector, recognizer_file = PACKS[pack]
    shutil.copyfile(shared_models / "scrfd_2.5g_bnkps.onnx", target / detector)
    if recognizer and recognizer_file == "glintr100.onnx":
        synthetic_standin_model(target / recognizer_file, 112, 512)
    elif recognizer:
        shutil.copyfile(shared_models / "mobilefacenet_arcface_w128.onnx", target / recognizer_file)
    for name, (side, width) in LANDMARK_AND_ATTRIBUTE.items():
        synthetic_standin_model(target / name, side, width)
    return target


def renamed_pack(target: Path, shared_models: Path, recognizer_name: str) -> Path:
    """The shared detector and the batch-1 copy of the shared recognizer, linked under a new recognizer name:
    the same weights as the development pack, served as another model (model id `<recognizer_name>/128`)."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "scrfd_2.5g_bnkps.onnx").symlink_to(shared_models / "scrfd_2.5g_bnkps.onnx")
    (target / f"{recognizer_name}.onnx").symlink_to(shared_models / "mobilefacenet_arcface_w128_batch1.onnx")
    return target


def rotated_pack(target: Path, shared_models: Path, recognizer_name: str, dim: int = 96, seed: int = 7) -> Path:
    """A genuinely different recognizer built from the shared one: its 128-d output multiplied by a fixed random
    128 x `dim` matrix with orthonormal columns (a projection onto a random `dim`-d subspace, then rotated). Its
    vectors live in another space of another dimension: an old vector cannot even be compared with its probes,
    while same-person photos still score close (cosines of the projected vectors)."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "scrfd_2.5g_bnkps.onnx").symlink_to(shared_models / "scrfd_2.5g_bnkps.onnx")
    model = onnx.load(str(shared_models / "mobilefacenet_arcface_w128.onnx"))
    graph = model.graph
    old_output = graph.output[0]
    width = old_output.type.tensor_type.shape.dim[1].dim_value
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((width, dim)))
    graph.initializer.append(numpy_helper.from_array(q.astype(np.float32), "securegate_rotation"))
    graph.node.append(helper.make_node("MatMul", [old_output.name, "securegate_rotation"], ["rotated"]))
    batch = old_output.type.tensor_type.shape.dim[0]
    new_output = helper.make_tensor_value_info("rotated", TensorProto.FLOAT, [batch.dim_param or batch.dim_value or "N", dim])
    graph.output.remove(old_output)
    graph.output.append(new_output)
    onnx.checker.check_model(model)
    onnx.save(model, str(target / f"{recognizer_name}.onnx"))
    return target
