"""Finding and stopping the processes a test started, by PID (never Ray's stop command: that would kill every
Ray process on the host, including clusters that are not ours)."""

import os
import signal
import time


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, command line) for every process we can read."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        out[int(entry)] = (ppid, cmdline)
    return out


def process_tree(marker: str) -> set[int]:
    """Processes whose command line contains `marker` (a temp dir of ours), and all their descendants
    (Ray's agents and workers rename themselves, e.g. `ray::TenantIndex.search`)."""
    procs = _processes()
    found = {pid for pid, (_, cmd) in procs.items() if marker in cmd and pid != os.getpid()}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in procs.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return found


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_pids(pids: set[int], sig: signal.Signals, wait_s: float) -> set[int]:
    """Send `sig` to each PID; return those still alive after `wait_s`."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return {p for p in pids if alive(p)}


def stop_pids(pids: set[int], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL whatever is still alive after `grace` seconds."""
    kill_pids(kill_pids(set(pids), signal.SIGTERM, grace), signal.SIGKILL, grace)


def stop_tree(marker: str, grace: float = 5.0) -> None:
    pids = process_tree(marker)
    left = kill_pids(pids, signal.SIGTERM, grace)
    left |= process_tree(marker) - pids  # anything started meanwhile
    kill_pids(left, signal.SIGKILL, grace)
