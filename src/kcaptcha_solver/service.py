"""The HTTP solving service: a FastAPI app around one shared :class:`~kcaptcha_solver.solver.Solver`.

Built for the public internet: an upload is counted while it streams in and
refused with 413 past ``max_bytes`` (never read whole first), non-images and
decompression bombs get 400 with a JSON error, and inference runs in the
threadpool so the event loop keeps answering. Nothing here imports torch.
"""

from __future__ import annotations

import logging
import os
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from . import __version__
from .errors import InputError
from .modelfile import AUTO
from .solver import Solver, shipped_models

log = logging.getLogger(__name__)
MAX_BYTES = 2 * 1024 * 1024
MULTIPART_SLACK = 16 * 1024  # room for multipart boundaries and part headers on top of the file itself


class SolveResponse(BaseModel):
    text: str
    confidence: list[float]
    alternatives: list[list[tuple[str, float]]]
    model: str
    ms: float
    resized: bool
    box: list[int] | None  # x, y, width, height of what was read in the input; null: the whole input
    kind: str  # "image", or "audio" (Gnuboard's mp3 captcha; model is then its voice set)
    warning: str | None  # why the answer may be wrong (a model forced on an image not its own); null: none
    score: float  # the model's probability of the whole answer (4 places); 1.0 for audio, read exactly
    sure: bool  # score reaches the model's calibrated threshold; false: worth a second look


class ErrorResponse(BaseModel):
    error: str


class _Refused(Exception):
    """A request the service answers with ``status`` and a JSON error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_SOLVE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
                       "required": ["file"]},
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "audio/mpeg": {"schema": {"type": "string", "format": "binary"}},  # Gnuboard's spoken captcha
    },
}


def create_app(solver: Solver | None = None, *, max_bytes: int = MAX_BYTES) -> FastAPI:
    """The app; ``solver`` defaults to ``Solver()`` ("auto"). Tests pass their own."""
    solver = solver or Solver()
    started = time.time()
    app = FastAPI(
        title="kcaptcha-solver", version=__version__,
        description="Read KCAPTCHA (Gnuboard 5 captcha) images and Gnuboard's mp3 captchas. POST one to /solve.",
    )
    error = {"model": ErrorResponse}

    @app.exception_handler(_Refused)
    async def _refused(_: Request, exc: _Refused) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)  # a bug: keep its traceback
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, status_code=500)

    @app.post(
        "/solve", response_model=SolveResponse, openapi_extra={"requestBody": _SOLVE_BODY},
        responses={400: error, 413: error},
        summary="Read one captcha: multipart field 'file', or the raw image or audio/mpeg file as the body",
    )
    async def solve(request: Request) -> JSONResponse:
        multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
        body = await _read_limited(request, max_bytes + (MULTIPART_SLACK if multipart else 0))
        data = await _multipart_file(request, body) if multipart else body
        if len(data) > max_bytes:
            raise _Refused(413, f"image is larger than {max_bytes:,} bytes")
        try:
            result = await run_in_threadpool(solver.solve, data)
        except InputError as exc:
            raise _Refused(400, str(exc)) from exc
        if result.warning:
            log.warning("POST /solve read %r with a warning: %s", result.text, result.warning)
        return JSONResponse(result.to_dict())

    @app.get("/health", summary="Liveness: the loaded model and uptime")
    async def health() -> dict:
        return {"status": "ok", "model": solver.name, "uptime_s": round(time.time() - started, 1)}

    @app.get("/models", summary="The shipped models and the one this service uses")
    async def models() -> dict:
        public = [_public(info.to_dict()) for info in shipped_models().values()]
        return {"model": solver.name, "loaded": [_public(i.to_dict()) for i in solver.models.values()],
                "shipped": public}

    return app


def _public(info: dict) -> dict:
    """Model info without the server's file path."""
    return {k: v for k, v in info.items() if k != "path"}


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, or 413 as soon as the declared length or the bytes received pass ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _Refused(400, "invalid Content-Length")
        if int(declared) > limit:
            raise _Refused(413, f"body of {int(declared):,} bytes is over the {limit:,} byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _Refused(413, f"body is over the {limit:,} byte limit")
    if not body:
        raise _Refused(400, "empty body: send the image as multipart field 'file' or as the raw body")
    return bytes(body)


async def _multipart_file(request: Request, body: bytes) -> bytes:
    """The bytes of multipart field ``file`` from an already size-checked body."""
    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        async with Request(request.scope, replay).form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise _Refused(400, "multipart body has no file field named 'file'")
            return await upload.read()
    except HTTPException as exc:  # Starlette's answer to malformed multipart data
        raise _Refused(400, f"malformed multipart body: {exc.detail}") from exc


def serve(
    model: str | os.PathLike[str] = AUTO, *, host: str = "127.0.0.1", port: int = 8000,
    max_bytes: int = MAX_BYTES, max_connections: int = 128,
) -> None:
    """Run the service with uvicorn until interrupted (what ``kcaptcha serve`` does)."""
    import uvicorn

    app = create_app(Solver(model), max_bytes=max_bytes)
    # limit_concurrency answers 503 past max_connections, which bounds the memory held by uploads.
    uvicorn.run(app, host=host, port=port, limit_concurrency=max_connections, timeout_keep_alive=5)
