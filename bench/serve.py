"""Serving speed: `python serve.py` (uvicorn, one worker) on loopback, driven by a concurrent keep-alive client, against
in-process scoring of the same loans measured in the same run (the practical limit: no HTTP, no JSON).

Phases, each bounded in time or count:

1. in-process: validate + score one loan at a time (the API's own code path, `Scorer`), a 1,000-loan batch, and
   one-loan explanations;
2. server warm-up (single loans, two 1,000-loan batches, explanations), then resident memory (RSS) of the server;
3. sequential: one client waiting on each answer (an underwriter): p50/p99 latency of single-loan POST /predict;
4. loaded: `--concurrency` clients in a closed loop for `--duration` seconds: requests/s, p50/p99 under load;
5. a 1,000-loan POST /predict (answers checked against in-process scores), single-loan POST /explain;
6. RSS again: growth over phases 3-5 (a leak shows as growth); GET /metrics: its /predict count (Prometheus metrics
   are collected on every request) against the /predict answers this client received.

`fraction_of_in_process` is HTTP requests/s (phase 4) over in-process loans/s (one thread, one loan at a time);
`cpu_fraction_of_in_process` is in-process CPU per loan over the server's CPU per request, which other work on a
shared machine moves much less than wall-clock figures.

The bundle is built like the tests build theirs (synthetic loans, fitted Preprocessor, SUOD with IForest, HBOS and
COPOD exported for in-process scoring, LoanNet (128, 64)) unless --bundle is given. The client is a few lines of asyncio
on raw sockets so it costs the shared 2 cores little. Run: .venv/bin/python bench/serve.py [--quick]. Last line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable as a script from a checkout without installing the package
sys.path.insert(0, str(REPO / "tests"))  # the demo bundle is a test helper

import numpy as np  # noqa: E402
import torch  # noqa: E402
from demo_bundle import build_demo_bundle, demo_loans, loan_requests  # noqa: E402

from loan_default.core.bundle import load_bundle  # noqa: E402
from loan_default.core.scorer import Scorer  # noqa: E402
from loan_default.serving.schemas import validate_loan  # noqa: E402

BATCH = 1000


# ---------------------------------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 keep-alive client
# ---------------------------------------------------------------------------------------------------------------------
class Connection:
    """One keep-alive connection; `post` returns (status, body)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        assert self.reader is not None
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def closed_loop(port: int, bodies: list[bytes], clients: int, seconds: float, path: str = "/predict"):
    """`clients` connections sending `bodies` round-robin until `seconds` pass: (latencies in s, errors, elapsed)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal errors
        connection = Connection(port)
        i = k
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                status, _ = await connection.post(path, bodies[i % len(bodies)])
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                status = 0
                connection.close()
            latencies.append(time.perf_counter() - start)
            errors += status != 200
            i += clients
        connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return latencies, errors, time.perf_counter() - started


async def get(port: int, path: str) -> bytes:
    """One GET on a fresh connection (HTTP/1.0: the server closes it after the answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer.split(b"\r\n\r\n", 1)[1]


def counted_predicts(metrics_text: str) -> int:
    """/predict answers with status 200 as the server's Prometheus counter has them."""
    for line in metrics_text.splitlines():
        if (
            line.startswith("loan_default_http_requests_total{")
            and 'endpoint="/predict"' in line
            and ('status="200"' in line)
        ):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


async def timed_posts(port: int, path: str, bodies: list[bytes]) -> tuple[list[float], list[tuple[int, bytes]]]:
    """Each body once, one after another on one connection: (seconds per request, answers)."""
    connection = Connection(port)
    times, answers = [], []
    for body in bodies:
        start = time.perf_counter()
        answers.append(await connection.post(path, body))
        times.append(time.perf_counter() - start)
    connection.close()
    return times, answers


# ---------------------------------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------------------------------
def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000, q)) if seconds else float("nan")


def each_ms(fn: Callable[[object], object], items: list) -> list[float]:
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - start)
    return times


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process: unlike wall time, barely moved by other work on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: Path, port: int, log: Path, access_log: bool) -> subprocess.Popen:
    command = [
        sys.executable, str(REPO / "serve.py"), f"bundle={bundle}", f"port={port}", "host=127.0.0.1", "workers=1",
        "log_level=warning", f"access_log={str(access_log).lower()}",
    ]  # fmt: skip
    env = {**os.environ, "LOAN_DEFAULT_API_KEY": ""}
    return subprocess.Popen(command, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


async def wait_ready(port: int, server: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode}):\n{log.read_text()[-2000:]}")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            ok = b" 200 " in await reader.readline()
            writer.close()
            if ok:
                return
        except OSError:
            pass
        await asyncio.sleep(0.25)
    raise RuntimeError(f"the server was not ready after {timeout:.0f} s:\n{log.read_text()[-2000:]}")


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def in_process(bundle_path: Path, loans: list[dict], repeats: int) -> dict[str, float]:
    """The same loans through the API's code path without HTTP: validation + `Scorer`, one thread."""
    torch.set_num_threads(1)  # what the server does (setting torch_threads)
    scorer = Scorer(load_bundle(bundle_path))
    scorer.explain([validate_loan(loans[0])], 1)  # warm-up, as the server's lifespan does

    def one(loan: dict) -> object:
        return scorer.predict([validate_loan(loan)])

    def batch(items: list[dict]) -> object:
        return scorer.predict([validate_loan(loan) for loan in items])

    each_ms(one, loans[:50])
    cpu = time.process_time()
    singles = each_ms(one, loans[:repeats])
    cpu = time.process_time() - cpu
    batches = each_ms(batch, [loans[:BATCH]] * 5)
    explains = each_ms(lambda loan: scorer.explain([validate_loan(loan)], 5), loans[:100])
    return {
        "p50_ms": percentile_ms(singles, 50),
        "p99_ms": percentile_ms(singles, 99),
        "loans_per_s": len(singles) / sum(singles),
        "cpu_ms_per_loan": cpu * 1000 / len(singles),
        "batch1000_ms": percentile_ms(batches, 50),
        "explain_ms": percentile_ms(explains, 50),
    }


async def over_http(port: int, server: subprocess.Popen, loans: list[dict], args: argparse.Namespace) -> dict:
    singles = [json.dumps(loan).encode() for loan in loans]
    batch_body = json.dumps(loans[:BATCH]).encode()
    # Warm-up with every kind of request, so the allocator's high-water mark (a 1,000-loan batch) is reached
    # before the first RSS reading and growth afterwards means memory kept per request.
    warm, warm_errors, _ = await closed_loop(port, singles, 2, 2.0 if args.quick else 5.0)
    await timed_posts(port, "/predict", [batch_body] * 2)
    await timed_posts(port, "/explain", singles[:20])
    rss_start = rss_mb(server.pid)
    sequential, seq_errors, _ = await closed_loop(port, singles, 1, args.duration / 2)
    cpu = cpu_seconds(server.pid)
    loaded, load_errors, elapsed = await closed_loop(port, singles, args.concurrency, args.duration)
    cpu = cpu_seconds(server.pid) - cpu
    batch_times, batch_answers = await timed_posts(port, "/predict", [batch_body] * 5)
    explain_times, explain_answers = await timed_posts(port, "/explain", singles[:100])
    rss_end = rss_mb(server.pid)
    answers = batch_answers + explain_answers
    # /metrics is collected on every request: its /predict count must be what this client got answered.
    sent = len(warm) - warm_errors + 2 + len(sequential) - seq_errors + len(loaded) - load_errors
    sent += sum(status == 200 for status, _ in batch_answers)
    counted = counted_predicts((await get(port, "/metrics")).decode())
    return {
        "p50_ms": percentile_ms(sequential, 50),
        "p99_ms": percentile_ms(sequential, 99),
        "p50_ms_loaded": percentile_ms(loaded, 50),
        "p99_ms_loaded": percentile_ms(loaded, 99),
        "requests_per_s": len(loaded) / elapsed,
        "server_cpu_ms_per_request": cpu * 1000 / len(loaded),
        "requests": len(sequential) + len(loaded),
        "batch1000_ms": percentile_ms(batch_times, 50),
        "explain_ms_per_loan": percentile_ms(explain_times, 50),
        "errors": seq_errors + load_errors + sum(status != 200 for status, _ in answers),
        "rss_start_mb": rss_start,
        "rss_growth_mb": rss_end - rss_start,
        "metrics_predict_counted": counted,
        "metrics_predict_sent": sent,
        "batch_probabilities": [p["default_probability"] for p in json.loads(batch_answers[-1][1])["predictions"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller bundle, 5 s loaded phase")
    parser.add_argument("--bundle", type=Path, help="serve this bundle instead of building one")
    parser.add_argument("--duration", type=float, help="seconds of the loaded phase (default 20, quick 5)")
    parser.add_argument("--concurrency", type=int, default=2, help="clients in the loaded phase (default 2)")
    parser.add_argument("--access-log", action="store_true", help="keep uvicorn's access log on")
    args = parser.parse_args()
    args.duration = args.duration or (5.0 if args.quick else 20.0)

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        bundle = args.bundle
        if bundle is None:
            print("building a bundle ...", file=sys.stderr)
            bundle = build_demo_bundle(Path(tmp) / "bundle", n_loans=2000 if args.quick else 5000, seed=0)
        loans = loan_requests(demo_loans(1200, seed=7))[:BATCH]
        if len(loans) < BATCH:
            raise SystemExit(f"only {len(loans)} valid loans generated; need {BATCH}")
        load_before = os.getloadavg()[0]
        local = in_process(bundle, loans, repeats=300 if args.quick else 1000)

        port, log = free_port(), Path(tmp) / "server.log"
        server = start_server(bundle, port, log, args.access_log)
        try:
            asyncio.run(wait_ready(port, server, log))
            http = asyncio.run(over_http(port, server, loans, args))
        finally:
            stop(server)
        reference = Scorer(load_bundle(bundle)).predict([validate_loan(loan) for loan in loans])
        gap = float(
            np.max(np.abs(np.array(http.pop("batch_probabilities")) - [r["default_probability"] for r in reference]))
        )

    result = {
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in http.items()},
        "fraction_of_in_process": round(http["requests_per_s"] / local["loans_per_s"], 3),
        "latency_fraction_of_in_process": round(local["p50_ms"] / http["p50_ms"], 3),
        "in_process_p50_ms": round(local["p50_ms"], 3),
        "in_process_p99_ms": round(local["p99_ms"], 3),
        "in_process_loans_per_s": round(local["loans_per_s"], 1),
        "in_process_cpu_ms_per_loan": round(local["cpu_ms_per_loan"], 3),
        "cpu_fraction_of_in_process": round(local["cpu_ms_per_loan"] / http["server_cpu_ms_per_request"], 3),
        "in_process_batch1000_ms": round(local["batch1000_ms"], 2),
        "in_process_explain_ms": round(local["explain_ms"], 3),
        "batch_max_abs_diff_vs_in_process": gap,
        "concurrency": args.concurrency,
        "loaded_seconds": args.duration,
        "access_log": args.access_log,
        "cpus": os.cpu_count(),
        "load_average_before": round(load_before, 2),
    }
    rows = [
        ("single /predict p50 (ms)", result["p50_ms"], result["in_process_p50_ms"], "< 5"),
        ("single /predict p99 (ms)", result["p99_ms"], result["in_process_p99_ms"], "< 20"),
        (f"p50 / p99 at {args.concurrency} clients (ms)", f"{result['p50_ms_loaded']} / {result['p99_ms_loaded']}",
         "", ""),
        ("requests/s (loans/s in-process)", round(result["requests_per_s"], 1), result["in_process_loans_per_s"],
         ">= 300"),
        ("1,000-loan batch (ms)", result["batch1000_ms"], result["in_process_batch1000_ms"], "< 100"),
        ("/explain per loan (ms)", result["explain_ms_per_loan"], result["in_process_explain_ms"], "< 50"),
        ("errors", result["errors"], "", "0"),
        ("/predict answers counted by /metrics", result["metrics_predict_counted"],
         f"(sent {result['metrics_predict_sent']})", "equal"),
        ("server RSS growth (MB)", result["rss_growth_mb"], f"(start {result['rss_start_mb']} MB)", "~0"),
        ("CPU ms per single loan (server)", result["server_cpu_ms_per_request"],
         result["in_process_cpu_ms_per_loan"], ""),
        ("HTTP rate / in-process rate", result["fraction_of_in_process"], "", ""),
        ("in-process CPU / server CPU per loan", result["cpu_fraction_of_in_process"], "", ""),
    ]  # fmt: skip
    print(f"\n{'measure':<36} {'HTTP':>16} {'in-process':>16} {'goal':>8}")
    for name, http_value, local_value, goal in rows:
        print(f"{name:<36} {http_value!s:>16} {local_value!s:>16} {goal:>8}")
    print(f"({result['requests']} requests; load average {result['load_average_before']} on {result['cpus']} CPUs "
          "before the run: other work on the machine slows both columns)")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
