"""Finding and stopping the processes a test started, by PID (never Ray's stop command: that would kill every
Ray process on the host, including clusters that are not ours). psutil (a Ray dependency) reads /proc."""

import shutil
import signal
from pathlib import Path

import psutil


def process_tree(marker: str) -> set[int]:
    """Processes whose command line contains `marker` (a temp dir of ours), and all their descendants
    (Ray's agents and workers rename themselves, e.g. `ray::TenantShard.search`)."""
    found: set[int] = set()
    me = psutil.Process().pid
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.info["pid"] != me and marker in " ".join(proc.info["cmdline"] or ()):
            found.add(proc.info["pid"])
            try:
                found |= {child.pid for child in proc.children(recursive=True)}
            except psutil.NoSuchProcess:
                pass
    return found


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent to reap it."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_pids(pids: set[int], sig: signal.Signals, wait_s: float) -> set[int]:
    """Send `sig` to each PID; return those still alive after `wait_s`."""
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.send_signal(sig)
            procs.append(proc)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=wait_s)
    return {p for p in pids if alive(p)}


def stop_pids(pids: set[int], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL whatever is still alive after `grace` seconds."""
    kill_pids(kill_pids(set(pids), signal.SIGTERM, grace), signal.SIGKILL, grace)


def stop_tree(marker: str, grace: float = 5.0) -> None:
    pids = process_tree(marker)
    left = kill_pids(pids, signal.SIGTERM, grace)
    left |= process_tree(marker) - pids  # anything started meanwhile
    kill_pids(left, signal.SIGKILL, grace)


def stop_cluster(base: str | Path, node_dirs: dict[str, Path], logs_to: Path | None = None) -> set[int]:
    """A test's own `ray start` cluster, every process of it under `base`, stopped by PID; then, when `logs_to` is
    given (the test failed), each node's session logs copied there as `<name>-logs` for the post-mortem, and
    `base` removed. Returns the PIDs that survived."""
    stop_tree(str(base))
    for name, node_dir in node_dirs.items() if logs_to is not None else ():
        try:
            shutil.copytree(Path(node_dir) / "session_latest" / "logs", logs_to / f"{name}-logs",
                            ignore_dangling_symlinks=True, dirs_exist_ok=True)
        except (OSError, shutil.Error):
            pass
    leftover = process_tree(str(base))
    shutil.rmtree(base, ignore_errors=True)
    return leftover
