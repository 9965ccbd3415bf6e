"""The README's quickstart, run as a newcomer runs it: its curl block executed by bash against the running app
(the Python client block is executed by tests/test_client.py)."""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.docs_snippets import doc_snippet


def test_quickstart_curl_block_finds_the_enrolled_person(app, data_dir, http, identity_photos, tmp_path):
    """Tenant, person, enrolment, search: the last line the block prints is the enrolled person's external id."""
    http.get("/v1/readyz").raise_for_status()  # the admin token is written by the first start
    script = doc_snippet("quickstart-curl", lang="bash")
    for i, photo in enumerate(identity_photos["biden"][:2], start=1):
        shutil.copy(photo, tmp_path / f"alice_{i}.jpg")
    env = {**os.environ, "SG": app[1], "SECUREGATE_ADMIN_TOKEN": (data_dir / "admin_token").read_text().strip()}
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "alice", run.stdout
