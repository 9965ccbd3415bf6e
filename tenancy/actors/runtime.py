"""Where and how a shard actor runs in Ray: restarted or not, its placement, and Serve handles it can block on."""

from __future__ import annotations

import os

import ray


def reconstructed() -> bool:
    """True inside an actor that Ray restarted after a crash."""
    if not ray.is_initialized():
        return False
    try:
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # not inside an actor
        return False


def placement() -> dict:
    """Where this process runs in the cluster (for operators and placement tests)."""
    if not ray.is_initialized():
        return {"pid": os.getpid()}
    context = ray.get_runtime_context()
    return {"pid": os.getpid(), "node_id": context.get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}


def blocking_handle(handle):
    """A deployment handle this synchronous actor can call with `.result()`. Serve's throughput-optimised mode
    (RAY_SERVE_THROUGHPUT_OPTIMIZED=1, which `securegate serve` sets) runs a handle's router on the caller's
    event loop, and a sync actor has none: its handles get their own loop, as Serve's default does."""
    if not handle.is_initialized:
        handle._init(_run_router_in_separate_loop=True)
    return handle
