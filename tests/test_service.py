"""The HTTP service: answers on real images, every refusal, a real server under load and under abuse."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from conftest import GENERAL, MODELS, label, model_files, sample_files
from fastapi.testclient import TestClient
from PIL import Image
from test_locate import on_page
from test_solver import bomb_png

from kcaptcha_solver.cli import main
from kcaptcha_solver.errors import InputError
from kcaptcha_solver.service import DeadlineProtocol, ServeSettings, create_app, uvicorn_config
from kcaptcha_solver.solver import Solver

LIMIT = 64 * 1024  # a small upload limit, so the tests need no big bodies
SETTINGS = ServeSettings(max_bytes=LIMIT)


@pytest.fixture(scope="module")
def solver() -> Solver:
    return Solver("auto")


@pytest.fixture(scope="module")
def client(solver: Solver) -> Iterator[TestClient]:
    with TestClient(create_app(solver, SETTINGS), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def images(shared_dir: Path) -> list[Path]:
    return [p for name in MODELS for p in model_files(shared_dir, name)]


def test_multipart_upload(client: TestClient, images: list[Path]) -> None:
    for path in images[:3] + images[500:503] + images[1000:1003]:
        r = client.post("/solve", files={"file": (path.name, path.read_bytes(), "image/jpeg")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["text"] == label(path)
        assert body["model"] == path.parent.name
        assert len(body["confidence"]) == len(body["text"]) and body["ms"] > 0 and body["resized"] is False


@pytest.mark.parametrize("content_type", ["image/png", "image/jpeg", "application/octet-stream"])
def test_raw_image_body(client: TestClient, images: list[Path], content_type: str) -> None:
    path = images[500]
    r = client.post("/solve", content=path.read_bytes(), headers={"content-type": content_type})
    assert r.status_code == 200 and r.json()["text"] == label(path)


def test_health_models_and_docs(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "auto"
    models = client.get("/models").json()
    assert {m["name"] for m in models["shipped"]} == {*MODELS, GENERAL}
    assert all("path" not in m and m["bytes"] > 0 for m in models["shipped"])
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/solve"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*", "audio/mpeg"} <= set(body)


def test_the_default_app_reads_with_auto() -> None:
    with TestClient(create_app()) as c:
        assert c.get("/health").json()["model"] == "auto"


@pytest.mark.parametrize("voice", ["basic", "jmoon"])
def test_gnuboards_mp3_raw_or_multipart(solver: Solver, shared_dir: Path, voice: str) -> None:
    path = sample_files(shared_dir / "audio" / voice)[0]  # ~80 KB for 6 digits: the default limit, not LIMIT
    client = TestClient(create_app(solver), raise_server_exceptions=False)
    for kwargs in ({"content": path.read_bytes(), "headers": {"content-type": "audio/mpeg"}},
                   {"files": {"file": (path.name, path.read_bytes(), "audio/mpeg")}}):
        r = client.post("/solve", **kwargs)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["text"], body["model"], body["kind"], body["box"], body["warning"]) == (
            label(path), voice, "audio", None, None)
        assert (body["score"], body["sure"]) == (1.0, True)
    r = client.post("/solve", content=path.read_bytes()[:-100], headers={"content-type": "audio/mpeg"})
    assert r.status_code == 400 and "a truncated download?" in r.json()["error"]


def test_a_forced_model_answers_with_a_warning_and_logs_it(
    shared_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    default, own = sample_files(shared_dir / "kcaptcha-default")[0], sample_files(shared_dir / "gnuboard5")[0]
    with TestClient(create_app(Solver("gnuboard5"), SETTINGS)) as c:
        caplog.set_level("WARNING", "kcaptcha_solver.service")
        body = c.post("/solve", content=own.read_bytes(), headers={"content-type": "image/jpeg"}).json()
        assert body["warning"] is None and body["sure"] is True and not caplog.records
        body = c.post("/solve", content=default.read_bytes(), headers={"content-type": "image/jpeg"}).json()
    assert body["model"] == "gnuboard5" and "looks like one for model 'kcaptcha-default'" in body["warning"]
    assert body["sure"] is False and 0 <= body["score"] < 1
    [record] = [r for r in caplog.records if r.name == "kcaptcha_solver.service"]
    assert record.levelname == "WARNING" and body["warning"] in record.getMessage()


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"content": b"x" * (LIMIT + 1), "headers": {"content-type": "image/png"}}, 413, f"{LIMIT:,} byte limit"),
        ({"files": {"file": ("big.png", b"x" * LIMIT, "image/png")}}, 413, f"{LIMIT:,} byte limit"),
        ({"content": b"hello", "headers": {"content-type": "image/png"}}, 400, "not an image"),
        ({"files": {"file": ("a.txt", b"hello", "text/plain")}}, 400, "not an image"),
        ({"content": bomb_png(5000, 5000), "headers": {"content-type": "image/png"}}, 400, "pixels accepted"),
        ({"content": bomb_png(50_000, 50_000), "headers": {"content-type": "image/png"}}, 400, "pixels"),
        ({"files": {"file": ("b.png", bomb_png(5000, 5000), "image/png")}}, 400, "pixels accepted"),
        ({}, 400, "empty body"),
        ({"files": {"image": ("a.png", b"x", "image/png")}}, 400, "no file field named 'file'"),
        ({"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}}, 400, "malformed"),
        ({"content": b"x", "headers": {"content-type": "image/png", "content-length": "-1"}}, 400, None),
    ],
)
def test_refusals_are_json(client: TestClient, kwargs: dict, status: int, message: str | None) -> None:
    r = client.post("/solve", **kwargs)
    assert r.status_code == status, r.text
    if message:
        assert message in r.json()["error"]
    assert client.get("/health").status_code == 200


def test_streamed_upload_is_cut_off_at_the_limit(client: TestClient) -> None:
    """No Content-Length (chunked): the service counts bytes and stops reading past the limit."""
    sent = []

    def chunks() -> Iterator[bytes]:
        for _ in range(1000):
            sent.append(1)
            yield b"x" * 4096

    r = client.post("/solve", content=chunks(), headers={"content-type": "image/png"})
    assert r.status_code == 413 and "byte limit" in r.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [("GET", "/nowhere", 404, "Not Found"), ("PUT", "/health", 405, "Method Not Allowed"),
     ("GET", "/solve", 405, "Method Not Allowed"), ("DELETE", "/docs", 405, "Method Not Allowed")],
)
def test_every_error_has_the_same_shape(client: TestClient, method: str, path: str, status: int, error: str) -> None:
    r = client.request(method, path)
    assert (r.status_code, r.json()) == (status, {"error": error})
    assert r.headers["content-type"] == "application/json"


def test_the_413_limit_is_one_number_for_raw_and_multipart(client: TestClient) -> None:
    """A body of exactly LIMIT bytes is read, one byte more is refused, in both encodings."""
    raw = client.post("/solve", content=b"x" * LIMIT, headers={"content-type": "image/png"})
    assert raw.status_code == 400  # read whole: it is just not an image
    envelope = len(httpx.Request("POST", "http://x", files={"file": ("a", b"", "image/png")}).read())
    multipart = client.post("/solve", files={"file": ("a", b"x" * (LIMIT - envelope), "image/png")})
    assert multipart.status_code == 400 and "not an image" in multipart.json()["error"]
    over = [client.post("/solve", content=b"x" * (LIMIT + 1), headers={"content-type": "image/png"}),
            client.post("/solve", files={"file": ("a", b"x" * (LIMIT + 1 - envelope), "image/png")})]
    assert [(r.status_code, r.json()["error"]) for r in over] == [
        (413, f"request body of {LIMIT + 1:,} bytes is over the {LIMIT:,} byte limit")] * 2


@pytest.mark.parametrize("path", ["/health", "/models", "/docs", "/openapi.json"])
def test_head_works_where_get_does(client: TestClient, path: str) -> None:
    get, head = client.get(path), client.head(path)
    assert get.status_code == head.status_code == 200
    assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == str(len(get.content))
    assert client.head("/solve").status_code == 405


def test_docs_page_needs_nothing_from_outside(client: TestClient) -> None:
    page = client.get("/docs").text
    assert "/solve" in page and "openapi.json" in page and f"{LIMIT:,} bytes" in page
    assert "<script src" not in page and "<link" not in page and "https://" not in page
    assert client.get("/redoc").status_code == 404


def test_cors_is_off_unless_an_origin_is_given(solver: Solver, client: TestClient) -> None:
    origin = {"origin": "https://board.example"}
    preflight = {**origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    assert client.options("/solve", headers=preflight).status_code == 405
    with TestClient(create_app(solver, replace(SETTINGS, cors_origin="https://board.example"))) as open_client:
        allowed = open_client.options("/solve", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://board.example"
        assert "POST" in allowed.headers["access-control-allow-methods"]
        other = open_client.get("/health", headers={"origin": "https://evil.example"})
        assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
        refused = open_client.options("/solve", headers={**preflight, "origin": "https://evil.example"})
        assert (refused.status_code, refused.json()) == (400, {"error": "Disallowed CORS origin"})


def test_bad_settings_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--workers", "0", "--body-timeout", "-1"]) == 2
    assert capsys.readouterr().err == "error: serve settings must be positive: workers=0, body_timeout=-1.0\n"


def test_sixteen_bit_grayscale_png_reads_right(client: TestClient, shared_dir: Path) -> None:
    """A real gnuboard5 captcha saved as 16-bit gray (values x257) reads as its label, like the 8-bit one."""
    paths = sample_files(shared_dir / "gnuboard5-png")[:5]
    for path in paths:
        gray = np.asarray(Image.open(path).convert("L"))
        deep = png_bytes(gray.astype(np.uint16) * 257)
        assert Image.open(io.BytesIO(deep)).mode == "I;16"
        for body in (deep, png_bytes(gray)):
            r = client.post("/solve", content=body, headers={"content-type": "image/png"})
            assert (r.status_code, r.json()["text"]) == (200, label(path)), path


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


# -- a real server ------------------------------------------------------------------------------------


@contextlib.contextmanager
def running(solver: Solver, settings: ServeSettings) -> Iterator[tuple[str, int]]:
    """The service as ``kcaptcha serve`` configures uvicorn, on a free loopback port, in a thread.

    ``log_config=None`` leaves logging alone, so records reach pytest's caplog.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn_config(create_app(solver, settings), settings, log_config=None))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield "127.0.0.1", port
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def address(solver: Solver) -> Iterator[tuple[str, int]]:
    # Short deadlines, so that tests of them are quick.
    with running(solver, replace(SETTINGS, header_timeout=0.5, body_timeout=0.5)) as addr:
        yield addr


@pytest.fixture(scope="module")
def server(address: tuple[str, int]) -> str:
    host, port = address
    return f"http://{host}:{port}"


def closed_by_server(s: socket.socket) -> bool:
    """Whether the server closed ``s`` (reads to the end; False if it is still open after 5 s)."""
    s.settimeout(5)
    try:
        while s.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_huge_declared_body_gets_413_without_being_sent(server: str, address: tuple[str, int]) -> None:
    """A client announcing 1 GB gets its 413 after the headers, before sending the body."""
    with socket.create_connection(address, timeout=5) as s:
        s.sendall(b"POST /solve HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                  b"Content-Length: 1000000000\r\n\r\n" + b"x" * 1000)
        reply = b""
        while b"byte limit" not in reply and (chunk := s.recv(4096)):  # headers and body may come apart
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413") and b"byte limit" in reply
    assert httpx.get(server + "/health").json()["status"] == "ok"


def test_clients_that_vanish_do_not_hurt_the_server(server: str, address: tuple[str, int]) -> None:
    requests = [
        b"POST /solve HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nabc",  # hangs up mid-body
        b"GARBAGE\r\n\r\n",
        b"POST /solve HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz",  # broken chunking
    ]
    for request in requests:
        with socket.create_connection(address, timeout=5) as s:
            s.sendall(request)
    assert httpx.get(server + "/health").json()["status"] == "ok"


def test_idle_and_slow_headers_are_closed_and_do_not_starve_others(server: str, address: tuple[str, int]) -> None:
    """Sockets that send nothing, or trickle their headers, are closed by the header deadline (0.5 s here)."""
    idle = [socket.create_connection(address) for _ in range(200)]
    slow = socket.create_connection(address)
    slow.settimeout(5)
    try:
        assert httpx.get(server + "/health").json()["status"] == "ok"  # 201 open sockets cost no slot
        sent = 0
        with contextlib.suppress(OSError):  # the server hangs up while we trickle
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200:
                slow.send(bytes([byte]))
                sent += 1
                time.sleep(0.05)
        assert sent < 100 and closed_by_server(slow)
        assert all(closed_by_server(s) for s in idle)
    finally:
        for s in [*idle, slow]:
            s.close()


def test_past_max_connections_requests_get_503_in_the_json_shape(solver: Solver) -> None:
    with running(solver, replace(SETTINGS, max_connections=3)) as address:
        idle = [socket.create_connection(address) for _ in range(3)]
        r = httpx.get("http://{}:{}/health".format(*address))
        assert (r.status_code, r.json()) == (503, {"error": "busy: over 3 connections"})
        for s in idle:
            s.close()
        for _ in range(100):  # until the server has seen them go (milliseconds)
            if (r := httpx.get("http://{}:{}/health".format(*address))).status_code == 200:
                break
            time.sleep(0.05)
        assert r.status_code == 200


def test_keep_alive_connection_gets_a_fresh_header_deadline(address: tuple[str, int]) -> None:
    """Three requests 0.3 s apart on one socket: 0.9 s in all, past the 0.5 s deadline, yet all answered."""
    with socket.create_connection(address, timeout=5) as s:
        for _ in range(3):
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = read_reply(s)
            assert head.startswith(b"HTTP/1.1 200") and json.loads(body)["status"] == "ok"
            time.sleep(0.3)
        assert closed_by_server(s)  # and then the idle socket is closed


def test_a_closed_connection_is_freed_without_the_garbage_collector(address: tuple[str, int]) -> None:
    """Each closed connection must go when its last reference does: in a cycle, the idle and slow clients
    that the deadlines close (and that come back at once) filled the oldest generation, and brought full
    collections that paused every request in flight."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept in gc.garbage, to look at
    try:
        with socket.create_connection(address, timeout=5) as idle, socket.create_connection(address) as asked:
            asked.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            # The server closes both (at the header deadline, after the answer); a client sees the end only
            # once the server's connection_lost has run.
            assert closed_by_server(idle) and closed_by_server(asked)
        gc.collect()
        held = [type(o).__name__ for o in gc.garbage if isinstance(o, DeadlineProtocol)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert held == []


def read_reply(s: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP response from ``s``: its head and its body (as long as its Content-Length says)."""
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += s.recv(4096)
    head, body = reply.split(b"\r\n\r\n", 1)
    length = int(next(line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:"))[15:])
    while len(body) < length:
        body += s.recv(4096)
    return head, body


def test_slow_body_gets_408_and_is_closed(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=5) as s:
        s.sendall(b"POST /solve HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n")
        s.sendall(b"x" * 100)
        head, body = read_reply(s)
        assert closed_by_server(s)
    assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower()
    assert json.loads(body) == {"error": "request body not complete within 0.5 s"}


def test_uploads_past_the_limit_get_503_before_their_body_is_read(solver: Solver) -> None:
    """max_uploads=4 here: four stalled uploads hold every slot, the fifth is refused at once."""
    stalled = []
    with running(solver, replace(SETTINGS, max_uploads=4)) as address:
        for _ in range(4):
            s = socket.create_connection(address, timeout=5)
            s.sendall(b"POST /solve HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nx")
            stalled.append(s)
        for _ in range(50):  # until the server has taken the four (milliseconds on loopback)
            r = httpx.post("http://{}:{}/solve".format(*address), content=b"x", headers={"content-type": "image/png"})
            if r.status_code == 503:
                break
            time.sleep(0.02)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json() == {"error": "busy: 4 uploads in progress, retry shortly"}
        for s in stalled:
            s.close()


def test_client_that_disconnects_mid_body_is_one_warning(
    address: tuple[str, int], caplog: pytest.LogCaptureFixture, images: list[Path]
) -> None:
    data = images[0].read_bytes()
    envelope = (b"--b\r\nContent-Disposition: form-data; name=file; filename=a.jpg\r\n"
                b"Content-Type: image/jpeg\r\n\r\n")
    raw = b"Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data) + data[:300]
    multi = (b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n\r\n"
             % (len(envelope) + len(data) + 8) + envelope + data[:300])
    for rest in (raw, multi):
        caplog.clear()
        with caplog.at_level(logging.INFO), socket.create_connection(address, timeout=5) as s:
            s.sendall(b"POST /solve HTTP/1.1\r\nHost: x\r\n" + rest)
            time.sleep(0.1)  # the server is now waiting for the rest of the body
        for _ in range(100):  # until the server has noticed
            if caplog.records:
                break
            time.sleep(0.02)
        time.sleep(0.2)  # and whatever else it would log
        problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(problems) == 1, [r.getMessage() for r in problems]
        assert problems[0].levelname == "WARNING" and "disconnected during POST /solve" in problems[0].getMessage()


@pytest.mark.slow
def test_hundreds_of_concurrent_requests_all_correct(solver: Solver, images: list[Path]) -> None:
    """400 requests from 16 client threads, half multipart, half raw; every answer equals the label.

    On a server with the default deadlines: with 0.5 s, a keep-alive connection of a client thread
    starved of CPU for that long is closed just as it sends its next request (a race every
    keep-alive timeout has; it only shows at such short values).
    """
    pool = images[:200] + images[500:600] + images[1000:1100]
    offline = solver.solve_many(pool)
    # Only images the models read right offline (accuracy itself is gated in test_models.py).
    right = [p for p, r in zip(pool, offline, strict=True) if r.text == label(p)]
    assert len(right) >= 0.9 * len(pool)
    jobs = [(i, right[i % len(right)]) for i in range(400)]
    local = threading.local()

    def ask(job: tuple[int, Path]) -> tuple[Path, int, str]:
        i, path = job
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=server, timeout=30)
        data = path.read_bytes()
        if i % 2:
            r = local.client.post("/solve", files={"file": (path.name, data, "application/octet-stream")})
        else:
            r = local.client.post("/solve", content=data, headers={"content-type": "image/*"})
        return path, r.status_code, r.json().get("text", r.text)

    with running(solver, SETTINGS) as (host, port), ThreadPoolExecutor(16) as workers:
        server = f"http://{host}:{port}"
        answers = list(workers.map(ask, jobs))
        assert httpx.get(server + "/health").json()["status"] == "ok"
    assert [(status, text) for _, status, text in answers] == [(200, label(p)) for p, _, _ in answers]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_taken_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: 127.0.0.1:{port} is already in use; pick another with --port\n"


def test_serve_and_web_default_to_different_ports() -> None:
    from kcaptcha_solver.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["serve"]).port != parser.parse_args(["web"]).port


@contextlib.contextmanager
def serve_command(*options: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """``kcaptcha serve`` as a process, once /health answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "kcaptcha_solver.cli", "serve", "--port", str(port), *options]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/health")
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "kcaptcha serve did not start"
                time.sleep(0.1)
        yield server, url
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


@pytest.mark.slow
def test_kcaptcha_serve_command(images: list[Path]) -> None:
    """The real command: its options reach the app, it answers until SIGTERM, then exits 0."""
    with serve_command("--model", "seed-l2", "--max-bytes", "20000") as (server, url):
        assert httpx.get(url + "/health").json()["model"] == "seed-l2"
        path = images[500]
        r = httpx.post(url + "/solve", content=path.read_bytes(), headers={"content-type": "image/png"})
        assert r.json()["text"] == label(path)
        r = httpx.post(url + "/solve", content=b"x" * 20001, headers={"content-type": "image/png"})
        assert r.status_code == 413
        server.terminate()
        assert server.wait(15) == 0, server.stderr.read().decode()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_with_a_stuck_upload_exits_0(workers: int, images: list[Path]) -> None:
    """An upload that never finishes is cut after --graceful-timeout, and the command exits 0."""
    with serve_command("--workers", str(workers), "--graceful-timeout", "1", "--body-timeout", "60") as (server, url):
        path = images[0]
        for _ in range(4):  # with two workers, each is likely to have answered once
            assert httpx.post(url + "/solve", content=path.read_bytes()).json()["text"] == label(path)
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as stuck:
            stuck.sendall(b"POST /solve HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nx")
            time.sleep(0.2)
            server.terminate()
            assert server.wait(15) == 0, server.stderr.read().decode()
            head, body = read_reply(stuck)
        assert head.startswith(b"HTTP/1.1 503") and json.loads(body) == {"error": "the server is shutting down"}
        log = server.stderr.read().decode()
        assert "graceful shutdown exceeded" in log and "Traceback" not in log
        assert log.count("WARNING:     POST /solve from 127.0.0.1:") == 1


def test_an_unexpected_error_is_logged_and_answered_500(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Solver):
        def solve(self, image):  # noqa: ANN001, ANN202
            raise RuntimeError("a bug")

    with TestClient(create_app(Broken(), SETTINGS), raise_server_exceptions=False) as c:
        r = c.post("/solve", content=b"x", headers={"content-type": "image/png"})
    assert (r.status_code, r.json()) == (500, {"error": "internal error (RuntimeError)"})
    record = next(r for r in caplog.records if r.name == "kcaptcha_solver.service")
    assert "POST /solve failed" in record.getMessage() and "a bug" in str(record.exc_info[1])


def test_a_screenshot_answers_with_the_box_and_one_without_a_captcha_is_400(
    client: TestClient, shared_dir: Path
) -> None:
    src = model_files(shared_dir, "kcaptcha-default")[7]
    page = on_page(np.asarray(Image.open(src).convert("RGB")), 1.5, (120, 200))
    for fmt in ("PNG", "JPEG"):
        buf = io.BytesIO()
        page.save(buf, fmt, quality=90)
        r = client.post("/solve", files={"file": (f"shot.{fmt.lower()}", buf.getvalue(), f"image/{fmt.lower()}")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["text"], body["model"], body["box"], body["resized"]) == (
            label(src), "kcaptcha-default", [120, 200, 240, 138], True)
    buf = io.BytesIO()
    Image.new("RGB", (900, 500), "white").save(buf, "PNG")
    r = client.post("/solve", content=buf.getvalue(), headers={"content-type": "image/png"})
    assert (r.status_code, r.json()) == (400, {"error": "no captcha found in this 900x500 picture"})


def test_a_refused_upload_is_freed_without_the_garbage_collector(client: TestClient) -> None:
    """A picture refused with 400 must not stay in a reference cycle (the error crossing from the worker
    thread through an asyncio future held the awaiting frames and the upload in one): after a burst of
    such uploads, RSS stayed at its peak until the collector ran, long after the idle trim."""
    buf = io.BytesIO()
    Image.new("RGB", (900, 500), "white").save(buf, "PNG")
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept in gc.garbage, to look at
    try:
        r = client.post("/solve", content=buf.getvalue(), headers={"content-type": "image/png"})
        assert (r.status_code, r.json()) == (400, {"error": "no captcha found in this 900x500 picture"})
        gc.collect()
        # Ours only: the test client's own threads and streams leave cycles of their own.
        held = [type(o).__name__ for o in gc.garbage if isinstance(o, InputError)]
        held += [f"{o.f_code.co_name} frame" for o in gc.garbage
                 if isinstance(o, types.FrameType) and "kcaptcha_solver" in o.f_code.co_filename]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert held == []
