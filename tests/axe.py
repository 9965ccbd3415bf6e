"""axe-core for the console's browser tests: the npm registry's package, fetched once with `npm pack` into the
test-only folder .venv/axe-core/<version>/ (never into console/, which is what the server serves), and run
in the page through WebDriver (DevTools evaluation: the console's CSP does not apply to it)."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

VERSION = "4.10.3"
HOME = Path(__file__).resolve().parents[1] / ".venv" / "axe-core" / VERSION
SCRIPT = HOME / "axe.min.js"
BLOCKING = ("serious", "critical")  # the impacts a page may not have


def axe_source() -> str:
    if not SCRIPT.is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is missing: `make system-deps` installs it (axe-core comes from the npm registry)", pytrace=False)
        HOME.mkdir(parents=True, exist_ok=True)
        packed = subprocess.run([npm, "pack", f"axe-core@{VERSION}", "--silent"], cwd=HOME, check=True,
                                capture_output=True, text=True, timeout=300).stdout.strip().splitlines()[-1]
        with tarfile.open(HOME / packed) as tar:
            for name in ("axe.min.js", "LICENSE"):
                member = tar.getmember(f"package/{name}")
                (HOME / name).write_bytes(tar.extractfile(member).read())
        (HOME / packed).unlink()
    return SCRIPT.read_text()


def violations(driver, source: str) -> list[dict]:
    """The page's serious and critical axe violations (rule id, impact, the first few offending nodes)."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(source)
    found = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        axe.run(document, { resultTypes: ["violations"] })
           .then((r) => done(r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                                                        nodes: v.nodes.slice(0, 3).map((n) => n.html) }))))
           .catch((e) => done([{ id: "axe-error", impact: "critical", help: String(e), nodes: [] }]));""")
    return [v for v in found if v["impact"] in BLOCKING]
