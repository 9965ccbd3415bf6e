"""ONNX Runtime set-up shared by the models: execution providers and session options."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def onnx_providers(use_gpu: bool) -> list[str]:
    """CUDA first when this process was given a GPU and ONNX Runtime has the CUDA EP, else CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if use_gpu and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if use_gpu:
        log.warning("a GPU was assigned but ONNX Runtime has no CUDA EP (install the [gpu] extra); using CPU")
    return ["CPUExecutionProvider"]


def session_options(threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    # ORT's pool threads busy-wait between ops by default; in a Serve replica that steals the CPU the
    # replica needs to take in the next batch's requests (measured in benchmarks/embed.py).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts
