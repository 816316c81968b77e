"""The HTTP service: answers on real images, every refusal, and a real uvicorn server under load."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from conftest import MODELS, label, model_files, sample_files
from fastapi.testclient import TestClient
from test_solver import bomb_png

from kcaptcha_solver.service import create_app
from kcaptcha_solver.solver import Solver

LIMIT = 64 * 1024  # a small upload limit, so the tests need no big bodies


@pytest.fixture(scope="module")
def solver() -> Solver:
    return Solver("auto")


@pytest.fixture(scope="module")
def client(solver: Solver) -> Iterator[TestClient]:
    with TestClient(create_app(solver, max_bytes=LIMIT), raise_server_exceptions=False) as c:
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
    assert {m["name"] for m in models["shipped"]} == set(MODELS)
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
    with TestClient(create_app(Solver("gnuboard5"), max_bytes=LIMIT)) as c:
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
        ({"content": b"x" * (LIMIT + 1), "headers": {"content-type": "image/png"}}, 413, "byte limit"),
        ({"files": {"file": ("big.png", b"x" * (LIMIT + 1), "image/png")}}, 413, "larger than"),
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


# -- a real server ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(solver: Solver) -> Iterator[str]:
    """uvicorn on a free loopback port, in a background thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(solver, max_bytes=LIMIT), log_level="warning", limit_concurrency=256)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


def test_huge_declared_body_gets_413_without_being_sent(server: str) -> None:
    """A client announcing 1 GB gets its 413 after the headers, before sending the body."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"POST /solve HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                  b"Content-Length: 1000000000\r\n\r\n" + b"x" * 1000)
        reply = b""
        while b"byte limit" not in reply and (chunk := s.recv(4096)):  # headers and body may come apart
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413") and b"byte limit" in reply
    assert httpx.get(server + "/health").json()["status"] == "ok"


def test_clients_that_vanish_do_not_hurt_the_server(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    requests = [
        b"POST /solve HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nabc",  # hangs up mid-body
        b"GARBAGE\r\n\r\n",
        b"POST /solve HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz",  # broken chunking
    ]
    for request in requests:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(request)
    assert httpx.get(server + "/health").json()["status"] == "ok"


@pytest.mark.slow
def test_hundreds_of_concurrent_requests_all_correct(server: str, solver: Solver, images: list[Path]) -> None:
    """400 requests from 16 client threads, half multipart, half raw; every answer equals the label."""
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

    with ThreadPoolExecutor(16) as workers:
        answers = list(workers.map(ask, jobs))
    assert [(status, text) for _, status, text in answers] == [(200, label(p)) for p, _, _ in answers]
    assert httpx.get(server + "/health").json()["status"] == "ok"


@pytest.mark.slow
def test_kcaptcha_serve_command(images: list[Path]) -> None:
    """The real command: its options reach the app, and it answers until terminated."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "kcaptcha_solver.cli", "serve", "--port", str(port), "--model", "seed-l2",
           "--max-bytes", "20000"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(url + "/health").json()
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "kcaptcha serve did not start"
                time.sleep(0.1)
        assert health["model"] == "seed-l2"
        path = images[500]
        r = httpx.post(url + "/solve", content=path.read_bytes(), headers={"content-type": "image/png"})
        assert r.json()["text"] == label(path)
        r = httpx.post(url + "/solve", content=b"x" * 20001, headers={"content-type": "image/png"})
        assert r.status_code == 413
    finally:
        server.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal it caught
        assert server.wait(10) in (0, -signal.SIGTERM), server.stderr.read().decode()


def test_an_unexpected_error_is_logged_and_answered_500(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Solver):
        def solve(self, image):  # noqa: ANN001, ANN202
            raise RuntimeError("a bug")

    with TestClient(create_app(Broken(), max_bytes=LIMIT), raise_server_exceptions=False) as c:
        r = c.post("/solve", content=b"x", headers={"content-type": "image/png"})
    assert (r.status_code, r.json()) == (500, {"error": "internal error (RuntimeError)"})
    record = next(r for r in caplog.records if r.name == "kcaptcha_solver.service")
    assert "POST /solve failed" in record.getMessage() and "a bug" in str(record.exc_info[1])
