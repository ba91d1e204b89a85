"""The dashboard: one static page at `/` and its files under `/static/`, read from web/static/.

The page holds no data and no secret: its script reads everything from the read API under
/api/v1 with the browser's credentials (same-origin Basic) or a token typed into the page, so
the shell itself is served without authentication (a token user could not load it otherwise).
See docs/dashboard.md.

Only the files that are in web/static/ when the process starts are served, looked up by name
in a table (no path from the request ever reaches the file system), each with a fixed media type.
Everything the page needs ships in that directory: no CDN, so the page works offline.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

__all__ = ["STATIC_DIR", "router", "static_files"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX = "index.html"

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

# The page asks for fresh data itself every 2 s; its files change only with a deploy, so the
# browser revalidates them (cheap 200s on a local file) rather than keeping a stale script.
CACHE_CONTROL = "no-cache"
# The page loads nothing from anywhere else: a policy that says so keeps a CDN link from creeping
# in unnoticed (the browser test would fail on the blocked load) and blunts injected markup.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'self'"
)


def static_files(directory: Path = STATIC_DIR) -> dict[str, tuple[bytes, str]]:
    """Every servable file of `directory` (name -> (content, media type)), read once."""
    files = {}
    for path in sorted(directory.iterdir()):
        media_type = MEDIA_TYPES.get(path.suffix)
        if path.is_file() and media_type is not None:
            files[path.name] = (path.read_bytes(), media_type)
    return files


def _response(content: bytes, media_type: str) -> Response:
    return Response(
        content,
        media_type=media_type,
        headers={
            "Cache-Control": CACHE_CONTROL,
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
        },
    )


def _not_found(message: str) -> Response:
    # the API's refusal shape (web/app.py), without needing the app's handlers
    return JSONResponse({"error": message}, status_code=404)


def build_router(files: dict[str, tuple[bytes, str]]) -> APIRouter:
    """The routes of `/` and `/static/{name}` over `files` (tests pass their own table)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def index() -> Response:
        if INDEX not in files:
            return _not_found("the dashboard is not installed")
        return _response(*files[INDEX])

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in files:
            return _not_found(f"no static file {name!r}")
        return _response(*files[name])

    return router


router = build_router(static_files())
