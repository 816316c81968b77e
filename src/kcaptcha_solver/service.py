"""The HTTP solving service: a FastAPI app around one shared :class:`~kcaptcha_solver.solver.Solver`.

Built for the public internet. What protects what (README, "The HTTP service on the open internet"):

- a connection must deliver complete request headers within ``header_timeout`` of opening, or of its
  previous response, or it is closed (:class:`DeadlineProtocol`, under uvicorn's own keep-alive timeout);
- a request body must arrive whole within ``body_timeout`` (408), and is counted while it streams in
  (413 past ``max_bytes``, one number for raw and multipart bodies, never read whole first);
- at most ``max_uploads`` bodies are held at once (503 past that, the body read and dropped), and at
  most ``solve_threads`` images are decoded at once, which bounds memory; malloc keeps two arenas, and
  freed memory goes back to the system when the service goes idle after a burst;
- idle sockets leave at the header deadline, so they cannot fill ``max_connections`` (a cap that
  counts them, as uvicorn's ``limit_concurrency`` did: at 128 they turned every request into 503);
- SIGTERM stops accepting, lets requests finish for ``graceful_timeout`` seconds, cuts the rest, exit 0.

Every answer other than a solve is ``{"error": "..."}``, 404 and 405 included. Nothing here imports torch.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import html
import json
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from . import __version__
from .errors import ConfigError, InputError, KcaptchaError
from .modelfile import AUTO
from .solver import Result, Solver, shipped_models

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``kcaptcha serve`` sets; the defaults are the command's."""

    model: str = AUTO  # each input read by the shipped model that fits it
    host: str = "127.0.0.1"
    port: int = 8080  # not 8000, which `kcaptcha web` uses: both can run side by side
    workers: int = 1
    max_bytes: int = 2 * 1024 * 1024  # largest request body, raw or multipart (captchas are ~2-10 KB)
    # A connection that has not sent whole request headers this long after opening (or after its
    # previous response) is closed: idle and slowloris sockets go, a real client needs milliseconds.
    header_timeout: float = 5.0
    body_timeout: float = 10.0  # the whole body must arrive within this (2 MiB at 1.6 Mbit/s)
    keep_alive: float = 5.0  # uvicorn's idle time between requests on one connection
    max_uploads: int = 64  # request bodies held at once per process; 503 above (bounds memory)
    solve_threads: int = 2  # images decoded and solved at once per process
    max_connections: int = 2048  # open connections per process before new requests get 503
    graceful_timeout: float = 10.0  # after SIGTERM, in-flight requests get this long before being cut
    cors_origin: str | None = None  # an origin allowed to call the API from a browser page; off by default

    def __post_init__(self) -> None:
        counts = ("workers", "max_bytes", "max_uploads", "solve_threads", "max_connections")
        spans = ("header_timeout", "body_timeout", "keep_alive", "graceful_timeout")
        bad = [f"{name}={getattr(self, name)}" for name in counts + spans if getattr(self, name) <= 0]
        if bad:
            raise ConfigError(f"serve settings must be positive: {', '.join(bad)}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is not in 0-65535")


class SolveResponse(BaseModel):
    text: str
    confidence: list[float]
    alternatives: list[list[tuple[str, float]]]
    model: str
    ms: float
    resized: bool
    box: list[int] | None  # x, y, width, height of the captcha found in the input; null: a bare captcha, read whole
    kind: str  # "image", or "audio" (Gnuboard's mp3 captcha; model is then its voice set)
    warning: str | None  # why the answer may be wrong (a model forced on an image not its own, or the general model
    # reading another string); null: none
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
# A body refused with 413 or 503 is left to uvicorn, which reads and drops it until the header
# deadline; closing at once would reset the connection under the unread bytes, and the client would
# often lose the answer. A body too slow to arrive (408) is not worth waiting for: that one closes.
_CLOSE = {408}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if status in _CLOSE:
        headers["connection"] = "close"
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(solver: Solver | None = None, settings: ServeSettings | None = None) -> FastAPI:
    """The app; ``solver`` defaults to ``Solver(settings.model)``. Tests pass their own."""
    s = settings or ServeSettings()
    solver = solver or Solver(s.model)
    started = time.time()
    app = FastAPI(
        title="kcaptcha-solver", version=__version__, docs_url=None, redoc_url=None,
        description="Read KCAPTCHA (Gnuboard 5 captcha) images and Gnuboard's mp3 captchas. POST one to /solve.",
    )
    if s.cors_origin:
        app.add_middleware(_Cors, allow_origins=[s.cors_origin], allow_methods=["GET", "HEAD", "POST"],
                           allow_headers=["content-type"], max_age=600)
    error = {"model": ErrorResponse}
    solving = asyncio.Semaphore(s.solve_threads)
    held = _Uploads(s.max_uploads)

    @app.exception_handler(_Refused)
    async def _refused(_: Request, exc: _Refused) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> Response:
        client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        log.warning("%s disconnected during %s %s before its body was complete; request dropped",
                    client, request.method, request.url.path)
        return Response(status_code=499)  # never sent: the connection is gone

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)  # a bug: keep its traceback
        return _error(500, f"internal error ({type(exc).__name__})")

    @app.post(
        "/solve", response_model=SolveResponse, openapi_extra={"requestBody": _SOLVE_BODY},
        responses={400: error, 408: error, 413: error, 503: error},
        summary="Read one captcha: multipart field 'file', or the raw image or audio/mpeg file as the body",
    )
    async def solve(request: Request) -> JSONResponse:
        if not held.take():
            # Read and drop the body first (within the limits): a client still sending when the
            # connection closes would be reset, and lose this answer.
            await _read_upload(request, s.max_bytes, s.body_timeout, keep=False)
            return _error(503, f"busy: {s.max_uploads} uploads in progress, retry shortly", {"retry-after": "1"})
        data = b""
        try:
            data = await _read_upload(request, s.max_bytes, s.body_timeout)
            async with solving:
                result = await run_in_threadpool(_solve, solver, data)
            if isinstance(result, InputError):
                raise _Refused(400, str(result))
            if result.warning:
                log.warning("POST /solve read %r with a warning: %s", result.text, result.warning)
        finally:
            held.give(len(data))
        return JSONResponse(result.to_dict())

    @app.get("/health", summary="Liveness: the loaded model and uptime")
    async def health() -> dict:
        return {"status": "ok", "model": solver.name, "uptime_s": round(time.time() - started, 1)}

    @app.get("/models", summary="The shipped models and the one this service uses")
    async def models() -> dict:
        return {"model": solver.name, "loaded": [_public(i.to_dict()) for i in solver.models.values()],
                "shipped": list(_shipped())}

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(_docs_page(app.openapi(), s.max_bytes))

    app.add_middleware(_HeadAsGet)
    return app


class _Cors(CORSMiddleware):
    """Starlette's CORS, with its refusal of a preflight in the service's JSON error shape."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
        return _error(response.status_code, response.body.decode(), headers)


class _HeadAsGet:
    """HEAD is answered as GET (the server sends the headers only), so it works wherever GET does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)


class _Uploads:
    """Counts the request bodies held; once the last is done after a burst, freed memory goes back."""

    TRIM_AFTER = 8 * 1024 * 1024  # bytes of uploads since the last trim; captchas alone rarely reach it

    def __init__(self, limit: int) -> None:
        self.limit, self.count, self.since_trim = limit, 0, 0
        self.trim: asyncio.TimerHandle | None = None

    def take(self) -> bool:
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def give(self, size: int) -> None:
        self.count -= 1
        self.since_trim += size
        if self.count == 0 and self.since_trim >= self.TRIM_AFTER and self.trim is None:
            self.trim = asyncio.get_running_loop().call_later(1.0, self._trim)

    def _trim(self) -> None:
        self.trim = None
        if self.count == 0:
            self.since_trim = 0
            _release_memory()


def _solve(solver: Solver, data: bytes) -> Result | InputError:
    """``solver.solve(data)``, run in a worker thread, with an input it cannot read returned, not raised.

    Raised, the error would reach the event loop through an asyncio future: the future holds the error,
    whose traceback holds the awaiting frames, which hold the future and the upload. That cycle kept
    every refused upload (a 1.9 MB picture with no captcha in it) until the garbage collector ran, after
    the idle trim: 10 s after a burst of 80, RSS stayed 130 % above idle (benchmarks/service_faults.py).
    """
    try:
        return solver.solve(data)
    except InputError as exc:
        return exc.with_traceback(None)


@lru_cache(maxsize=1)
def _shipped() -> tuple[dict, ...]:
    """The shipped models' public info, read once: reading it opens an onnxruntime session per model."""
    return tuple(_public(info.to_dict()) for info in shipped_models().values())


def _public(info: dict) -> dict:
    """Model info without the server's file path."""
    return {k: v for k, v in info.items() if k != "path"}


async def _read_upload(request: Request, limit: int, timeout: float, keep: bool = True) -> bytes:
    """The image bytes of a raw or multipart body, read against the byte limit and the body deadline.

    With ``keep=False`` the body is read to its end and dropped, and nothing is returned.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _Refused(400, "invalid Content-Length")
        if int(declared) > limit:
            raise _Refused(413, f"request body of {int(declared):,} bytes is over the {limit:,} byte limit")
    guarded = Request(request.scope, _guarded_receive(request.receive, limit, timeout))
    if not keep:
        async for _ in guarded.stream():
            pass
        return b""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        try:
            # Starlette streams the parts: a file part is spooled (to disk past 1 MiB), never held twice.
            async with guarded.form(max_files=1, max_fields=8) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise _Refused(400, "multipart body has no file field named 'file'")
                data = await upload.read()
        except HTTPException as exc:  # Starlette's answer to malformed multipart data
            raise _Refused(400, f"malformed multipart body: {exc.detail}") from exc
    else:
        body = bytearray()
        async for chunk in guarded.stream():
            body += chunk
        data = bytes(body)
    if not data:
        raise _Refused(400, "empty body: send the image as multipart field 'file' or as the raw body")
    return data


def _guarded_receive(receive: Receive, limit: int, timeout: float) -> Callable[[], Awaitable[Message]]:
    """``receive`` that refuses a body over ``limit`` bytes (413) or not complete ``timeout`` s from now (408)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    received = 0

    async def guarded() -> Message:
        nonlocal received
        try:
            message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
        except asyncio.TimeoutError:
            raise _Refused(408, f"request body not complete within {timeout:g} s") from None
        received += len(message.get("body", b""))
        if received > limit:
            raise _Refused(413, f"request body is over the {limit:,} byte limit")
        return message

    return guarded


def _release_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise, and RSS stays at its peak)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _limit_arenas() -> None:
    """Two malloc arenas for the whole process, instead of up to eight per core.

    Each thread that decodes an upload gets an arena of its own otherwise, and memory freed there
    stays mapped: 10 s after a burst of 80 refused uploads of 1.9 MB, RSS stayed 58 % above idle with
    the default and came back within 8 % with two (186 % with neither this nor the trim; see
    benchmarks/service_faults.py). Call before threads start.
    """
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(-8, 2)  # M_ARENA_MAX from glibc's malloc.h


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _load_libc()


def _docs_page(spec: dict, max_bytes: int) -> str:
    """A self-contained page for /docs: the routes from the OpenAPI spec and a form to try /solve.

    Our own, with no script or style from a CDN, so it works offline and behind strict firewalls.
    """
    rows = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = ", ".join(sorted(op.get("responses", {})))
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op.get('summary', ''))}</td><td>{codes}</td></tr>")
    title = html.escape(f"{spec['info']['title']} {spec['info']['version']}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:15px system-ui,sans-serif;max-width:52em;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}
pre{{background:#f4f4f4;padding:.6em;overflow:auto}}</style></head><body>
<h1>{title}</h1>
<p>{html.escape(spec['info'].get('description', ''))} The machine-readable spec is
<a href="openapi.json">openapi.json</a>. Every error is <code>{{"error": "..."}}</code>.</p>
<table><tr><th>Method</th><th>Path</th><th>What</th><th>Statuses</th></tr>{''.join(rows)}</table>
<h2>Try <code>POST /solve</code></h2>
<p>Largest request body: {max_bytes:,} bytes.</p>
<form id="f"><input type="file" name="file" accept="image/*,audio/mpeg,.mp3" required> <button>Solve</button></form>
<pre id="out"></pre>
<pre>curl -F file=@captcha.jpg SERVER/solve
curl --data-binary @captcha.jpg -H 'content-type: image/jpeg' SERVER/solve</pre>
<script>
document.getElementById("f").onsubmit = async (e) => {{
  e.preventDefault();
  const out = document.getElementById("out");
  const r = await fetch("solve", {{method: "POST", body: new FormData(e.target)}});
  out.textContent = r.status + " " + JSON.stringify(await r.json(), null, 2);
}};
</script></body></html>
"""


class DeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request's headers.

    uvicorn times out only the wait *between* requests, so a socket that connects and sends nothing,
    or trickles its headers, was held forever. Here a timer starts when the connection opens and when
    each response ends; it is cancelled when the app is called (the headers are complete), and closes
    the connection if it fires first. It also answers past ``max_connections`` (uvicorn's own limit
    answers in plain text) and at shutdown in the service's JSON error shape. ``config`` is a
    :class:`UvicornConfig`.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._inner = self.app
        self.app = self._with_deadline
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
        # self.app is a method of self: a cycle that kept every closed connection (about 20 objects) for
        # the garbage collector. With 500 idle sockets closed at their deadline and back at once, that
        # brought a full collection about every 12 s (see _freeze_startup_objects for what one costs).
        # A request still running holds what it needs.
        self.app = self._inner

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.config.header_timeout, self._expire)  # type: ignore[attr-defined]

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    async def _with_deadline(self, scope: dict, receive: Receive, send: Send) -> None:
        self._disarm()
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            if len(self.connections) > self.config.max_connections:  # type: ignore[attr-defined]
                await _send_503(send, f"busy: over {self.config.max_connections} connections")  # type: ignore[attr-defined]
            else:
                await self._inner(scope, receive, tracked)
        except asyncio.CancelledError:  # uvicorn cuts what still runs when --graceful-timeout is over
            log.warning("%s %s from %s:%d cut: the server is shutting down", scope["method"], scope["path"],
                        *(self.client or ("?", 0)))
            if not started:
                await _send_503(send, "the server is shutting down")
        finally:
            if not self.transport.is_closing():
                self._arm()


async def _send_503(send: Send, message: str) -> None:
    """A 503 in the JSON error shape, sent below the app; the connection closes after it."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class UvicornConfig(uvicorn.Config):
    """uvicorn's settings plus the limits :class:`DeadlineProtocol` reads."""

    def __init__(self, app: object, *, header_timeout: float, max_connections: int, **kwargs: object) -> None:
        super().__init__(app, http=DeadlineProtocol, **kwargs)  # type: ignore[arg-type]
        self.header_timeout = header_timeout
        self.max_connections = max_connections


def uvicorn_config(app: object, s: ServeSettings, **kwargs: object) -> UvicornConfig:
    """The uvicorn settings for ``s``."""
    return UvicornConfig(
        app, header_timeout=s.header_timeout, max_connections=s.max_connections, timeout_keep_alive=s.keep_alive,
        timeout_graceful_shutdown=s.graceful_timeout, **kwargs,
    )


def serve(settings: ServeSettings) -> None:
    """Run the service until SIGTERM or Ctrl-C (what ``kcaptcha serve`` does); returns after a clean stop.

    The port is bound before anything starts, so a taken port is one error and nothing else. With
    ``workers`` > 1, that many processes share the socket, each with its own solver.
    """
    solver = Solver(settings.model)  # an unknown model fails here, before the port is taken
    sock = _bind(settings.host, settings.port)
    if settings.workers == 1:
        _worker(settings, sock, solver)
        return
    del solver  # each worker loads its own
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each: no forked threads or sessions
    workers = [context.Process(target=_worker, args=(settings, sock), name=f"worker-{i + 1}")
               for i in range(settings.workers)]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for worker in workers:
        worker.start()
    while not stop.wait(0.2) and all(w.is_alive() for w in workers):
        pass
    for worker in workers:
        if worker.is_alive():
            os.kill(worker.pid, signal.SIGTERM)  # each stops gracefully within graceful_timeout
    for worker in workers:
        worker.join()
    failed = [f"{w.name} exited with {w.exitcode}" for w in workers if w.exitcode]
    if failed or not stop.is_set():
        raise KcaptchaError("the service stopped: " + ("; ".join(failed) or "a worker ended"))


def _worker(settings: ServeSettings, sock: socket.socket, solver: Solver | None = None) -> None:
    """One serving process: uvicorn on the shared socket until SIGTERM or SIGINT."""
    _limit_arenas()
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    # uvicorn re-raises the SIGTERM it caught once it has stopped; with this handler in place the
    # re-raised signal does nothing and the process ends with status 0 after a clean stop.
    signal.signal(signal.SIGTERM, lambda *_: None)
    if multiprocessing.parent_process() is not None:  # a worker: Ctrl-C is the parent's to report
        signal.signal(signal.SIGINT, lambda *_: None)
    config = uvicorn_config(create_app(solver, settings), settings)
    config.load()  # what uvicorn would import and build on its start, so that it is frozen too
    _freeze_startup_objects()
    uvicorn.Server(config).run(sockets=[sock])


def _freeze_startup_objects() -> None:
    """Leave what the process built to start (modules, the app, the models' metadata) out of every later
    garbage collection.

    A full collection walks every tracked object, about 66,000 of them once started, and the event loop
    waits for it: 44-190 ms on a shared 2-core machine (load average 6.5), 120 and 450 ms seen while
    500 idle sockets and 50 slow clients were held open. Connections that live a few seconds, as those
    do until their deadline, reach the oldest generation and bring such collections. Frozen, the
    startup objects are skipped, and a full collection of an idle service takes 0.1 ms.
    """
    gc.collect()
    gc.freeze()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; KcaptchaError in one line when it cannot be had."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "is already in use" if exc.errno in (98, 48) else f"cannot be used ({exc.strerror})"
        raise KcaptchaError(f"{host}:{port} {reason}; pick another with --port") from exc
    return sock
