"""`kcaptcha serve` under the faults of the open internet, on loopback, against uvicorn's defaults.

Each case is bounded in count and time and the script stops by itself (about five minutes):

- quiet: real captchas posted at a steady 40/s for 15 s; latency p50/p99, share answered right;
- abuse: the same load while 500 idle sockets and 50 slowloris clients (25 trickling headers, 25 a
  body, 1 byte per 100 ms; from a second process) stay open, each reopened as soon as the server
  drops it; how long the server let each slow client live, and whether the load is still answered.
  Quiet and abuse phases alternate, 3 rounds of each (--rounds): the percentiles are over all rounds
  (1,800 requests each), so one slow request no longer moves the p99, and a change in the machine's
  background load falls on both alike; each round's p99 and the server's CPU use are kept too;
- burst: 80 clients upload a 1.9 MB image at once (half multipart, half raw); peak RSS, and RSS 10 s
  later against the idle figure;
- disconnect: 6 clients hang up mid-body; the lines the server logs about them;
- sigterm: one stuck upload, then SIGTERM; the exit status and how long the stop took.

"plain-uvicorn" is the same app served the way `kcaptcha serve` did before issue 17 (uvicorn's own
protocol, limit_concurrency=128, keep-alive 5 s, no shutdown deadline); "kcaptcha-serve" is the command
with its defaults. Linux only (RSS from /proc).

    PYTHONPATH=src python benchmarks/service_faults.py [--out benchmarks/results/service_faults.json]
    python benchmarks/service_faults.py --table      # the README table from the results file
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KCAPTCHA_SHARED", ROOT.parent / "shared" / "real-kcaptcha"))
RATE, PHASE_S, ROUNDS = 40, 15.0, 3  # normal load: requests per second, seconds per phase, rounds of each
IDLE, SLOW = 500, 50
BURST = 80
SERVERS = ["plain-uvicorn", "kcaptcha-serve"]
PLAIN = """
import sys, uvicorn
from kcaptcha_solver.service import create_app
uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), limit_concurrency=128, timeout_keep_alive=5)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def ask(port: int, head: str, body: bytes = b"", timeout: float = 30) -> tuple[int, bytes]:
    """One request on a fresh connection (Connection: close); (status, body), status 0 if it failed."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(f"{head}\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
    except (OSError, asyncio.TimeoutError):
        return 0, b""
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0
    return status, reply.split(b"\r\n\r\n", 1)[-1]


async def steady_load(port: int, samples: list[tuple[bytes, str]], seconds: float) -> dict:
    """Captchas posted at RATE per second for ``seconds``; latency of each (ms) and how many read right."""
    latencies: list[float] = []
    right = 0

    async def one(i: int) -> None:
        nonlocal right
        data, text = samples[i % len(samples)]
        start = time.perf_counter()
        status, body = await ask(port, "POST /solve HTTP/1.1\r\nContent-Type: image/jpeg", data)
        latencies.append((time.perf_counter() - start) * 1000)
        right += status == 200 and json.loads(body)["text"] == text

    tasks, start = [], time.perf_counter()
    for i in range(int(RATE * seconds)):
        await asyncio.sleep(max(0.0, start + i / RATE - time.perf_counter()))
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return {"load_avg_1min": round(os.getloadavg()[0], 2), "latencies": latencies, "right": right}


async def held_open(port: int, kind: str, until: float, lives: list[float], alive: list[float]) -> None:
    """One abusive client, reopened whenever the server drops it, until ``until``; each life's length."""
    while time.monotonic() < until:
        born = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        if kind == "body":
            writer.write(b"POST /solve HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        trickle = b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 10_000 if kind == "headers" else b"x" * 100_000
        closed = False
        try:
            i = 0
            while time.monotonic() < until:
                if kind == "idle":
                    await asyncio.wait_for(reader.read(1), until - time.monotonic())
                    closed = True  # EOF or data: either way the server ended it
                    break
                writer.write(trickle[i:i + 1])
                await writer.drain()
                i += 1
                try:
                    if await asyncio.wait_for(reader.read(1024), 0.1) == b"":
                        closed = True
                        break
                except asyncio.TimeoutError:
                    pass
        except (OSError, asyncio.TimeoutError):
            closed = time.monotonic() < until
        (lives if closed else alive).append(time.monotonic() - born)
        writer.close()


async def abusers(port: int, seconds: float) -> dict:
    """IDLE idle sockets and SLOW slowloris clients for ``seconds``; what became of them."""
    until = time.monotonic() + seconds
    lives: dict[str, list[float]] = {"idle": [], "headers": [], "body": []}
    alive: dict[str, list[float]] = {"idle": [], "headers": [], "body": []}
    kinds = ["idle"] * IDLE + ["headers"] * (SLOW // 2) + ["body"] * (SLOW // 2)
    await asyncio.gather(*[held_open(port, k, until, lives[k], alive[k]) for k in kinds])
    out = {}
    for kind in lives:
        out[f"{kind}_closed_by_server"] = len(lives[kind])
        out[f"{kind}_longest_life_s"] = round(max(lives[kind] + alive[kind]), 1)
    return out


def abusers_process(port: int, seconds: float, results: multiprocessing.Queue) -> None:
    used = time.process_time()
    out = asyncio.run(abusers(port, seconds))
    out["abusers_cpu_pct"] = round(100 * (time.process_time() - used) / seconds)  # this client's own cost
    results.put(out)


def abuse(port: int, samples: list[tuple[bytes, str]]) -> dict:
    """The steady load while a separate process (so the two clients do not slow each other) abuses."""
    results: multiprocessing.Queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=abusers_process, args=(port, PHASE_S + 2, results))
    process.start()
    time.sleep(1.0)  # all of them connected
    load = asyncio.run(steady_load(port, samples, PHASE_S))
    load.update(results.get(timeout=60))
    process.join()
    return load


def latency(port: int, pid: int, samples: list[tuple[bytes, str]], rounds: int) -> dict:
    """``rounds`` quiet phases alternating with as many abuse phases; latency over all rounds of each."""
    phases: dict[str, list[dict]] = {"quiet": [], "abuse": []}
    for r in range(rounds):
        for name in phases:
            time.sleep(1.0)  # the previous phase's connections gone
            used = cpu_s(pid)
            got = asyncio.run(steady_load(port, samples, PHASE_S)) if name == "quiet" else abuse(port, samples)
            got["server_cpu_pct"] = round(100 * (cpu_s(pid) - used) / PHASE_S)
            phases[name].append(got)
            print(f"  round {r + 1} {name}: p99 {percentile(got['latencies'], 99)} ms, load {got['load_avg_1min']}",
                  flush=True)
    out = {name: summary(runs) for name, runs in phases.items()}
    for kind in ("idle", "headers", "body"):  # what became of the slow clients, over all rounds
        out["abuse"][f"{kind}_closed_by_server"] = sum(run[f"{kind}_closed_by_server"] for run in phases["abuse"])
        out["abuse"][f"{kind}_longest_life_s"] = max(run[f"{kind}_longest_life_s"] for run in phases["abuse"])
    out["abuse"]["abusers_cpu_pct"] = [run["abusers_cpu_pct"] for run in phases["abuse"]]
    out["abuse"]["p99_vs_quiet"] = round(out["abuse"]["p99_ms"] / out["quiet"]["p99_ms"], 2)
    return out


def summary(runs: list[dict]) -> dict:
    """Percentiles over all the runs' requests, and each run's p99, load average and server CPU."""
    latencies = [ms for run in runs for ms in run["latencies"]]
    rounds_p99 = [percentile(run["latencies"], 99) for run in runs]
    return {"load_avg_1min": [run["load_avg_1min"] for run in runs], "requests": len(latencies),
            "answered_right_pct": round(100 * sum(run["right"] for run in runs) / len(latencies), 1),
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99), "p99_ms_rounds": rounds_p99,
            "p99_ms_median_of_rounds": float(np.median(rounds_p99)),
            "server_cpu_pct": [run["server_cpu_pct"] for run in runs]}


async def burst(port: int, pid: int, image: bytes) -> dict:
    idle = rss_mib(pid)
    boundary = "b0undary"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=file; filename=a.png\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    peak, done = idle, False

    async def watch() -> None:
        nonlocal peak
        while not done:
            peak = max(peak, rss_mib(pid))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    replies = await asyncio.gather(*[
        ask(port, f"POST /solve HTTP/1.1\r\nContent-Type: multipart/form-data; boundary={boundary}", part)
        if i % 2 else ask(port, "POST /solve HTTP/1.1\r\nContent-Type: image/png", image) for i in range(BURST)])
    done = True
    await watcher
    await asyncio.sleep(10)
    after = rss_mib(pid)
    statuses = [s for s, _ in replies]
    return {"uploads": BURST, "upload_bytes": len(image), "answered_200": statuses.count(200),
            "refused_503": statuses.count(503), "other": len(statuses) - statuses.count(200) - statuses.count(503),
            "idle_rss_mib": round(idle), "peak_rss_mib": round(peak), "rss_10s_after_mib": round(after),
            "after_vs_idle_pct": round(100 * (after - idle) / idle, 1)}


async def disconnects(port: int, log: Path, image: bytes) -> dict:
    before = log.read_text().splitlines()
    for i in range(6):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        kind = "multipart/form-data; boundary=b" if i % 2 else "image/png"
        writer.write(f"POST /solve HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\nContent-Length: 50000\r\n\r\n"
                     .encode() + (b"--b\r\nContent-Disposition: form-data; name=file\r\n\r\n" if i % 2 else b"")
                     + image[:2000])
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.transport.abort()
    await asyncio.sleep(1.0)
    lines = log.read_text().splitlines()[len(before):]
    return {"clients": 6, "log_lines": len(lines), "warning_lines": sum("WARNING" in line for line in lines),
            "traceback_lines": sum("Traceback" in line for line in lines)}


def sigterm(cmd: list[str], port: int, timeout: float) -> dict:
    with tempfile.TemporaryFile() as err:
        server = start(cmd, port, err)
        stuck = socket.create_connection(("127.0.0.1", port))
        stuck.sendall(b"POST /solve HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nx")
        time.sleep(0.5)
        start_stop = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout + 5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            code = f"still running {timeout + 5:g} s after SIGTERM: killed"
        stuck.close()
    return {"exit_status": code, "stop_s": round(time.monotonic() - start_stop, 1)}


def start(cmd: list[str], port: int, err: object) -> subprocess.Popen:
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {cmd}") from None
            time.sleep(0.1)


def command(name: str, port: int) -> list[str]:
    if name == "plain-uvicorn":
        return [sys.executable, "-c", PLAIN, str(port)]
    return [sys.executable, "-m", "kcaptcha_solver.cli", "serve", "--port", str(port)]


def run_server(name: str, samples: list[tuple[bytes, str]], image: bytes, rounds: int) -> dict:
    port = free_port()
    cmd = command(name, port)
    log = Path(tempfile.mkstemp(suffix=".log")[1])
    with log.open("wb") as err:
        server = start(cmd, port, err)
        try:
            print(name, flush=True)
            result = latency(port, server.pid, samples, rounds)
            print(name, "quiet", result["quiet"], flush=True)
            print(name, "abuse", result["abuse"], flush=True)
            time.sleep(3)
            result["burst"] = asyncio.run(burst(port, server.pid, image))
            print(name, "burst", result["burst"], flush=True)
            result["disconnect"] = asyncio.run(disconnects(port, log, image))
            print(name, "disconnect", result["disconnect"], flush=True)
        finally:
            server.kill()
            server.wait()
            log.unlink()
    port = free_port()
    result["sigterm"] = sigterm(command(name, port), port, 10.0)
    print(name, "sigterm", result["sigterm"], flush=True)
    return result


def rounds(result: dict, key: str, phase: str) -> str:
    """Each round's figure, as "a / b / c"."""
    return " / ".join(f"{value:g}" for value in result[phase][key])


def table(results: dict) -> str:
    """The README table, from a results file."""
    rows = [
        ("quiet: answered right; p50 / p99", lambda r: "{answered_right_pct:g} %; {p50_ms:g} / {p99_ms:g} ms"
         .format(**r["quiet"])),
        (f"{IDLE} idle + {SLOW} slowloris held open: answered right; p50 / p99",
         lambda r: "{answered_right_pct:g} %; {p50_ms:g} / {p99_ms:g} ms".format(**r["abuse"])),
        ("p99 held open / quiet (each round's p99: quiet; held open)", lambda r: "{:g}x ({}; {} ms)".format(
            r["abuse"]["p99_vs_quiet"], rounds(r, "p99_ms_rounds", "quiet"), rounds(r, "p99_ms_rounds", "abuse"))),
        ("server CPU (each round: quiet; held open)", lambda r: "{}; {} %".format(
            rounds(r, "server_cpu_pct", "quiet"), rounds(r, "server_cpu_pct", "abuse"))),
        ("longest life of an idle socket / header trickler / body trickler", lambda r:
         "{idle_longest_life_s:g} / {headers_longest_life_s:g} / {body_longest_life_s:g} s".format(**r["abuse"])),
        (f"burst of {BURST} uploads of 1.9 MB: answered 200 / 503 / failed",
         lambda r: "{answered_200} / {refused_503} / {other}".format(**r["burst"])),
        ("RSS: idle, peak, 10 s after the burst", lambda r:
         "{idle_rss_mib}, {peak_rss_mib}, {rss_10s_after_mib} MiB ({after_vs_idle_pct:+g} %)".format(**r["burst"])),
        ("SIGTERM with a stuck upload: exit status, stop", lambda r: "{exit_status}, {stop_s:g} s"
         .format(**r["sigterm"])),
    ]
    names = [n for n in SERVERS if n in results]
    lines = ["| case | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cell(results[n]) for n in names) + " |" for label, cell in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "service_faults.json"))
    parser.add_argument("--only", choices=SERVERS, help="one server only")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"quiet and abuse phases of {PHASE_S:g} s each, "
                        f"alternating (default {ROUNDS}; each round adds about 35 s per server)")
    parser.add_argument("--table", action="store_true", help="print the README table from --out and stop")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(Path(args.out).read_text())))
        return
    folder = SHARED / "gnuboard5"
    samples = [(p.read_bytes(), p.stem.rsplit("_", 1)[0]) for p in sorted(folder.iterdir())[:50]]
    noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)  # incompressible
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}",
               "rate_per_s": RATE, "phase_s": PHASE_S, "rounds": args.rounds, "idle_sockets": IDLE,
               "slow_clients": SLOW}
    for name in [args.only] if args.only else SERVERS:
        results[name] = run_server(name, samples, buf.getvalue(), args.rounds)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
