"""No decrypted crop or vector reaches disk through Ray's object store (issue 23 §7).

A model migration re-embeds a tenant's kept crops. Ray puts any message over `max_direct_call_object_size`
(100 KiB) into the object store, and the store spills to disk: a batch of decrypted crops (or of the vectors
computed from them) passed between the TenantSupervisor, the Embedder and the shard actor lands in spill files in clear.

tests/spill_driver.py runs a migration of 240 kept crops on its own Ray cluster (a subprocess: the session's
cluster cannot be restarted with another object store) with a small object store that spills every primary
copy it holds (spilling threshold 0), the tenant's shard actor slowed down with Ray's own testing delay (a
stand-in for a busy actor: a message for it waits in the store long enough to be spilled), and scans every
spilled file for the crops' pixels and the new vectors. Before the fix the batch's 240 vectors (123 KB, one
message to the actor) were found there. The driver also spills a marker object of its own and looks for it:
a scan that cannot see spilled objects fails here instead of passing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cli.serve import SERVE_ENVIRONMENT
from tests.conftest import REPO


def test_a_migration_spills_no_crop_or_vector_in_clear(models_dir, identity_photos, tmp_path):
    photos = [str(p) for who in sorted(identity_photos) for p in identity_photos[who][:2]]
    # Neither this session's cluster address nor its Serve settings: the driver starts Ray as `securegate serve`
    # does (cli.serve.start_ray sets them after its own Serve import, so its handles work outside an event loop).
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and k not in SERVE_ENVIRONMENT}
    run = subprocess.run(
        [sys.executable, str(REPO / "tests" / "spill_driver.py"), "--spill-dir", str(tmp_path / "spill"),
         "--data-dir", str(tmp_path / "data"), "--models", str(models_dir), "--photos", *photos],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=480)
    lines = [line for line in run.stdout.splitlines() if line.startswith("SGRESULT ")]
    assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-5000:]
    result = json.loads(lines[-1].split(" ", 1)[1])
    assert result["model"] == "mfn_spill/128", result  # the migration ran to its switch
    assert result["marker_found"] and result["spill_files"] > 0, result  # the scan sees what Ray spills
    assert result["crops"] == result["vectors"] == 240, result
    assert result["crops_found"] == [] and result["vectors_found"] == [], result
