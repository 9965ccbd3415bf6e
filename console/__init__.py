"""The web console: plain HTML, ES modules and CSS, served by the ingress at /console (no build step).

`FILES` maps each file's path under /console/ to where it lies; nothing outside it is ever served.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
FILES: dict[str, Path] = {
    path.relative_to(ROOT).as_posix(): path
    for path in sorted(ROOT.rglob("*"))
    if path.is_file() and path.suffix in MEDIA_TYPES
}
