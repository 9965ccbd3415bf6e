"""HTTP for the web console: its files at /console/, each answer with a strict Content-Security-Policy.

Static files only, so these routes call no collaborator of the Ingress.
"""

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

import console
from securegate import errors

router = APIRouter(tags=["console"], include_in_schema=False)

# No inline script or style anywhere in the console; images and media may be blob:/data: URLs of the
# user's own photos and camera; the API is the same origin.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "media-src 'self' blob:; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate (ETag) so an upgraded server never mixes old and new modules
}


@router.get("/console", include_in_schema=False)
async def http_console_root() -> RedirectResponse:
    # Relative, so the console's relative URLs resolve under whatever prefix the app is served at.
    return RedirectResponse("console/", status_code=308, headers=HEADERS)


@router.get("/console/{path:path}", include_in_schema=False)
async def http_console_file(path: str) -> FileResponse:
    name = path or "index.html"
    file = console.FILES.get(name)
    if file is None:
        raise errors.NotFound(f"no console file {name!r}")
    return FileResponse(file, media_type=console.MEDIA_TYPES[file.suffix], headers=HEADERS)
