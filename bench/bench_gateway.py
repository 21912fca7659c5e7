"""Benchmark of the guarded gateway (issue 4): its throughput against a bare endpoint, and its monitors' detection.

One run on loopback, in three parts:

1. **Throughput.** The gateway with every guard on (default configuration: auth, a rate limit
   too high to refuse, size, validation, model, monitors, output policy, audit, SQLite in a
   temporary folder) and a bare FastAPI endpoint serving the same model with the same decoding
   work (parse the JSON, ``np.asarray``, torch forward in a worker thread, softmax, JSON answer)
   run as two server processes with the same uvicorn settings (one worker each). A separate
   load-generator process (asyncio + httpx) posts pre-encoded MNIST images to ``/v1/predict`` at
   a fixed concurrency, warm-up excluded, the two servers interleaved setting by setting. Each
   connection uses its own API key and walks its own run of distinct images, so the monitors
   score every row (a key never re-sends a row its buffers still hold), and the gateway's
   monitors are pre-filled with 20,000 benign queries (their steady state: a full global index).
2. **Detection.** One gateway (in this process, served by uvicorn in a thread) meets benign
   clients (each its own key, sending test images one request at a time, some of them exact
   repeats), then HopSkipJump, Square and Boundary attack clients from the attack registry, each
   through the HTTP adapter (``RemoteClassifier``) with its own key. An attack client attacks
   test images one after the other under a query budget and stops ``--follow`` rows after its
   first flag (or once both monitors have flagged it). Queries to detection are the rows the
   gateway had received from that key when its first flag appeared in the store (request
   granularity; the query detector's evidence also names the row). The 1000 benign clients run
   through the monitors of a gateway built the usual way, in this process (one request of one
   image at a time, clients interleaved); the first ``--benign-http`` of them also run over HTTP,
   and the two sets of verdicts are compared.
3. **Profile** (``--profile``): a third gateway process with a timer around every guard, under
   load at concurrency 1 and 8, and the CPU cost of each step of a request measured alone in
   this process: where each request's time goes.

    BASTION_CACHE_DIR=/tmp/bc .venv/bin/python bench/bench_gateway.py --quick   # a smoke run, about a minute
    BASTION_CACHE_DIR=/tmp/bc .venv/bin/python bench/bench_gateway.py           # the full run (docs/BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import numpy as np
import psutil
import torch
import uvicorn
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from torch import Tensor, nn

from bastion.attacks.registry import ATTACKS
from bastion.data import load_demo
from bastion.demo import demo_model
from bastion.errors import BudgetExhaustedError
from bastion.gateway import Gateway, create_app, load_config
from bastion.gateway.decode import decode_json_inputs, parse_json_body
from bastion.gateway.guards.model import classify
from bastion.gateway.keys import Role, hash_secret
from bastion.gateway.store import AuditEvent, PredictionRecord, Store
from bastion.models import Knowledge, QueryCounter
from bastion.models.remote import RemoteClassifier, RemoteConfig
from bastion.models.view import ModelView
from harness import machine, result_path

RESULTS = Path(__file__).resolve().parent / "results"
THROUGHPUT_TARGET = 0.85  # gateway requests per second / the bare endpoint's
DETECTION_TARGET = 0.95  # share of attack clients flagged ...
DETECTION_QUERIES = 100  # ... within this many queries
BENIGN_TARGET = 0.001  # share of benign clients flagged, at most
RATE_LIMIT = "1000000/second"  # per key: high enough never to refuse
MAX_BATCH = 64  # the gateway's default [validation] max_batch: an attack batch is sent in requests of this many rows
# Seconds uvicorn keeps an idle connection (its default, 5, lets a loaded machine race a request against the close).
KEEP_ALIVE = 60
PREFILL_CLIENTS, PREFILL_LENGTH = 200, 100  # 20,000 benign queries: the query detector's global index, full
log = logging.getLogger("bench_gateway")


@dataclass(frozen=True)
class Options:
    requests: int  # measured requests per throughput setting
    warmup: int
    concurrency: tuple[int, ...]
    rows: tuple[int, ...]  # images per request
    rounds: int  # each setting this many times per server, interleaved; the fastest kept
    threads: int
    attack_clients: int
    budget: int  # rows per attack client
    follow: int  # rows an attack client goes on after its first flag, to see whether the other monitor flags
    square_eps: float
    benign_clients: int
    benign_http: int
    benign_length: int
    repeat_rate: float
    benign_concurrency: int
    parts: tuple[str, ...]
    seed: int
    out: Path | None


def parse(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2000, help="measured requests per throughput setting")
    p.add_argument("--warmup", type=int, default=200, help="warm-up requests per setting (not measured)")
    p.add_argument("--concurrency", default="8,32", help="connections in flight, comma-separated")
    p.add_argument("--rows", default="1,16", help="images per request, comma-separated")
    p.add_argument("--rounds", type=int, default=1, help="runs of each setting per server, interleaved")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads in every process")
    p.add_argument("--attack-clients", type=int, default=20, help="attack clients (keys) per attack")
    p.add_argument("--budget", type=int, default=2000, help="query budget (rows) of each attack client")
    p.add_argument("--follow", type=int, default=200, help="rows an attack goes on after its first flag")
    p.add_argument("--square-eps", type=float, default=0.3, help="Square's Linf radius")
    p.add_argument("--benign-clients", type=int, default=1000)
    p.add_argument("--benign-length", type=int, default=100, help="requests (one image each) per benign client")
    p.add_argument("--benign-http", type=int, default=100, help="of the benign clients, how many also go over HTTP")
    p.add_argument("--repeat-rate", type=float, default=0.1, help="share of a benign client's requests re-sent")
    p.add_argument("--benign-concurrency", type=int, default=32, help="benign clients sending at once")
    p.add_argument("--parts", default="throughput,detection", help="some of throughput, detection, profile")
    p.add_argument("--profile", action="store_true", help="also profile a gateway under load (the part 'profile')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: small loads, 3 clients per attack, 50 benign")
    p.add_argument("--out", type=Path, help="JSON path (default: bench/results/<machine>-cpu-gateway-<date>.json)")
    a = p.parse_args(argv)
    if a.quick:
        a.requests, a.warmup, a.concurrency, a.rounds = 200, 40, "8", 1
        a.attack_clients, a.budget, a.benign_clients, a.benign_length, a.benign_http = 3, 300, 50, 20, 20
    concurrency = tuple(int(c) for c in a.concurrency.split(","))
    rows = tuple(int(r) for r in a.rows.split(","))
    parts = tuple(part.strip() for part in a.parts.split(",")) + (("profile",) if a.profile else ())
    if min(concurrency) < 1 or not all(1 <= r <= MAX_BATCH for r in rows) or a.requests < max(concurrency):
        p.error(f"expected concurrency >= 1, 1 <= rows <= {MAX_BATCH}, requests >= concurrency; got {vars(a)}")
    if not set(parts) <= {"throughput", "detection", "profile"} or a.budget < DETECTION_QUERIES:
        p.error(f"expected parts among throughput, detection, profile and budget >= {DETECTION_QUERIES}")
    return Options(
        requests=a.requests,
        warmup=a.warmup,
        concurrency=concurrency,
        rows=rows,
        rounds=a.rounds,
        threads=a.threads,
        attack_clients=a.attack_clients,
        budget=a.budget,
        follow=a.follow,
        square_eps=a.square_eps,
        benign_clients=a.benign_clients,
        benign_http=min(a.benign_http, a.benign_clients),
        benign_length=a.benign_length,
        repeat_rate=a.repeat_rate,
        benign_concurrency=a.benign_concurrency,
        parts=parts,
        seed=a.seed,
        out=a.out,
    )


# ---------------------------------------------------------------- the data: images and request bodies


def mnist_images() -> tuple[np.ndarray, np.ndarray]:
    """The 1000 test images then the 4000 training images (float32, (5000, 1, 28, 28)), and their labels."""
    test, train = load_demo("mnist", "test"), load_demo("mnist", "train")
    x = torch.cat([test.x, train.x]).numpy().astype(np.float32)
    y = torch.cat([test.y, train.y]).numpy()
    return x, y


def encode(rows: np.ndarray) -> bytes:
    """A predict request body: ``{"inputs": [...]}``, as a client would send it."""
    return json.dumps({"inputs": rows.tolist()}).encode()


def request_bodies(x: np.ndarray, rows: int) -> list[bytes]:
    """Bodies of ``rows`` distinct images each; together they hold every image once, in a seeded order."""
    order = np.random.default_rng(rows).permutation(len(x)) if rows > 1 else np.arange(len(x))
    return [encode(x[order[s : s + rows]]) for s in range(0, len(x) - rows + 1, rows)]


# ---------------------------------------------------------------- the two servers


def bare_app(module: nn.Module) -> FastAPI:
    """The same model behind a bare FastAPI endpoint: parse, ``np.asarray``, forward (in a thread), softmax, JSON."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    def probabilities(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(module(torch.from_numpy(x)), dim=1).numpy()

    @app.post("/v1/predict")
    async def predict(request: Request) -> Response:
        payload = json.loads(await request.body())
        x = np.asarray(payload["inputs"], dtype=np.float32)
        probs = await anyio.to_thread.run_sync(probabilities, x if x.ndim == 4 else x[None])
        return JSONResponse({"labels": probs.argmax(axis=1).tolist()})

    return app


def build_gateway(store_url: str, client_output: str) -> Gateway:
    """The gateway on the MNIST demo with its default guards, monitors and store, under a limit that never refuses."""
    overrides = {
        "model.source": "demo:mnist",
        "store.url": store_url,
        "rate_limit.per_key": [RATE_LIMIT],
        "output.client": client_output,
    }
    return Gateway.build(load_config(None, environ={}, overrides=overrides))


def prefill(gateway: Gateway, x: np.ndarray, seed: int) -> None:
    """Show the monitors 20,000 benign queries (training images), as a gateway that has served a while has seen."""
    gen = np.random.default_rng(seed)
    probs = classify(gateway.model, x)
    for client in range(PREFILL_CLIENTS):
        idx = gen.choice(len(x), PREFILL_LENGTH, replace=False)
        for slot in gateway.monitors:
            slot.observe(f"prefill-{client}", x[idx], probs[idx])


@dataclass(frozen=True)
class ServerSpec:
    kind: str  # "gateway" or "bare"
    port: int
    folder: str
    threads: int
    keys: int
    profile: bool = False


def serve_process(spec: ServerSpec, conn: multiprocessing.connection.Connection) -> None:
    """A server process: build the app, send back the API keys made for the load, serve until SIGINT."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bastion.gateway.guards.monitors").setLevel(logging.ERROR)
    torch.set_num_threads(spec.threads)
    timers: dict[str, list[float]] = defaultdict(list)
    secrets: list[str] = []
    if spec.kind == "bare":
        app = bare_app(demo_model("mnist").module.eval())
    else:
        if spec.profile:
            install_guard_timers(timers)
        gateway = build_gateway(f"sqlite:///{spec.folder}/{spec.kind}-{spec.port}.db", "label")
        prefill(gateway, load_demo("mnist", "train").x.numpy(), seed=spec.port)
        secrets = [gateway.store.create_key(Role.CLIENT, f"bench-{i}")[0] for i in range(spec.keys)]
        app = create_app(gateway)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=spec.port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        timeout_keep_alive=KEEP_ALIVE,
    )
    conn.send(secrets)
    # uvicorn re-raises the SIGINT it shut down on, once it has shut down.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run()
    if spec.profile:
        Path(f"{spec.folder}/guards.json").write_text(json.dumps(timers))


@dataclass
class Server:
    spec: ServerSpec
    process: multiprocessing.process.BaseProcess
    secrets: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.spec.port}"

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(spec: ServerSpec) -> Server:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=serve_process, args=(spec, child), name=f"bench-{spec.kind}", daemon=True)
    process.start()
    if not parent.poll(600):
        process.kill()
        raise RuntimeError(f"the {spec.kind} server did not start within 600 s")
    server = Server(spec, process, parent.recv())
    wait_listening(server)
    return server


def wait_listening(server: Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{server.url}/v1/health", timeout=2)
            return
        except httpx.TransportError:
            if not server.process.is_alive():
                raise RuntimeError(f"the {server.spec.kind} server exited with {server.process.exitcode}") from None
            time.sleep(0.1)
    raise RuntimeError(f"the {server.spec.kind} server is not listening on {server.url}")


def stop_server(server: Server) -> None:
    """SIGINT: uvicorn shuts down gracefully (the gateway drains its audit writer; a profile is written)."""
    if server.process.is_alive():
        os.kill(server.pid, signal.SIGINT)
    server.process.join(timeout=60)
    if server.process.is_alive():
        server.process.kill()
        server.process.join()


# ---------------------------------------------------------------- the load generator (a separate process)


@dataclass(frozen=True)
class Load:
    """One measured run: ``requests`` posts at ``concurrency``, after ``warmup`` unmeasured ones."""

    url: str
    secrets: tuple[str, ...]  # one per connection (cycled)
    rows: int
    concurrency: int
    warmup: int
    requests: int
    offset: int  # where in the bodies this run starts, so that runs do not repeat one another
    server_pid: int


@dataclass(frozen=True)
class LoadResult:
    latencies: tuple[float, ...]  # seconds, measured requests only
    seconds: float
    server_cpu: float  # CPU seconds of the server process over the measured phase
    server_main_cpu: float  # of which its main thread (the event loop)
    client_cpu: float  # CPU seconds of the load generator over the measured phase
    statuses: dict[int, int]


@dataclass(frozen=True)
class BenignLoad:
    """Benign clients: client ``i`` sends the images ``streams[i]`` one request at a time with ``secrets[i]``."""

    url: str
    secrets: tuple[str, ...]
    streams: tuple[tuple[int, ...], ...]
    concurrency: int


def loadgen_process(conn: multiprocessing.connection.Connection, rows: tuple[int, ...]) -> None:
    """Build the request bodies once, then run each load the parent sends until it sends None."""
    torch.set_num_threads(1)
    x, _ = mnist_images()
    bodies = {r: request_bodies(x, r) for r in rows}
    conn.send("ready")
    while (job := conn.recv()) is not None:
        if isinstance(job, Load):
            conn.send(asyncio.run(drive(job, bodies[job.rows])))
        else:
            conn.send(asyncio.run(drive_benign(job, bodies[1])))


def _cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of a process and of its main thread."""
    proc = psutil.Process(pid)
    times = proc.cpu_times()
    main = next((t.user_time + t.system_time for t in proc.threads() if t.id == pid), float("nan"))
    return times.user + times.system, main


async def drive(load: Load, bodies: list[bytes]) -> LoadResult:
    """Warm up, then time ``load.requests`` posts; connection ``w`` walks the bodies from its own offset.

    Each connection has its own one-connection client: httpx's shared pool costs the client more per
    request the more connections it holds (measured: about three times more at 32 than at 8).
    """
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(one_connection(load.url)) for _ in range(load.concurrency)]

        async def worker(w: int, count: int, start: int, measured: bool) -> None:
            headers = {
                "authorization": f"Bearer {load.secrets[w % len(load.secrets)]}",
                "content-type": "application/json",
            }
            first = load.offset + w * len(bodies) // load.concurrency + start
            for i in range(count):
                began = time.perf_counter()
                status = await post(clients[w], bodies[(first + i) % len(bodies)], headers)
                if measured:
                    latencies.append(time.perf_counter() - began)
                    statuses[status] += 1

        warm = _split(load.warmup, load.concurrency)
        await asyncio.gather(*(worker(w, n, 0, False) for w, n in enumerate(warm)))
        server0, client0 = _cpu(load.server_pid), time.process_time()
        began = time.perf_counter()
        await asyncio.gather(
            *(worker(w, n, warm[w], True) for w, n in enumerate(_split(load.requests, load.concurrency)))
        )
        seconds = time.perf_counter() - began
        server1, client1 = _cpu(load.server_pid), time.process_time()
    return LoadResult(
        latencies=tuple(latencies),
        seconds=seconds,
        server_cpu=server1[0] - server0[0],
        server_main_cpu=server1[1] - server0[1],
        client_cpu=client1 - client0,
        statuses=dict(statuses),
    )


def one_connection(url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=300.0)


async def post(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> int:
    """The answer's status; 0 when the connection failed (counted as an error, not retried: it may have arrived)."""
    try:
        response = await client.post("/v1/predict", content=body, headers=headers)
    except httpx.TransportError as error:
        log.warning("request failed: %r", error)
        return 0
    return response.status_code


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


async def drive_benign(load: BenignLoad, bodies: list[bytes]) -> dict[int, int]:
    """Each benign client's requests in order, one at a time; ``concurrency`` clients at once. Status counts."""
    statuses: Counter[int] = Counter()
    waiting = list(range(len(load.streams)))[::-1]
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(one_connection(load.url)) for _ in range(load.concurrency)]

        async def worker(client: httpx.AsyncClient) -> None:
            while waiting:
                c = waiting.pop()
                headers = {"authorization": f"Bearer {load.secrets[c]}", "content-type": "application/json"}
                for image in load.streams[c]:
                    statuses[await post(client, bodies[image], headers)] += 1

        await asyncio.gather(*(worker(client) for client in clients))
    return dict(statuses)


class LoadGenerator:
    """The parent's handle on the load-generator process."""

    def __init__(self, rows: tuple[int, ...]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=loadgen_process, args=(child, rows), name="bench-load", daemon=True)
        self._process.start()
        if self._conn.recv() != "ready":
            raise RuntimeError("the load generator did not start")

    def run(self, job: Load | BenignLoad) -> Any:
        self._conn.send(job)
        return self._conn.recv()

    def close(self) -> None:
        self._conn.send(None)
        self._process.join(timeout=30)


# ---------------------------------------------------------------- part 1: throughput


@dataclass(frozen=True)
class Throughput:
    target: str  # gateway or bare
    rows: int
    concurrency: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float  # server CPU per request
    server_main_share: float  # share of the server's CPU on its event-loop thread
    client_cpu_share: float  # load generator's CPU / wall time: near 1.0 means the client may be the bottleneck
    errors: int  # non-200 answers


def summarise(target: str, load: Load, result: LoadResult) -> Throughput:
    lat = np.asarray(result.latencies) * 1000.0
    requests = len(result.latencies)
    return Throughput(
        target=target,
        rows=load.rows,
        concurrency=load.concurrency,
        requests=requests,
        seconds=result.seconds,
        rps=requests / result.seconds,
        p50_ms=float(np.percentile(lat, 50)),
        p99_ms=float(np.percentile(lat, 99)),
        server_cpu_ms=result.server_cpu / requests * 1000.0,
        server_main_share=result.server_main_cpu / result.server_cpu if result.server_cpu > 0 else float("nan"),
        client_cpu_share=result.client_cpu / result.seconds,
        errors=sum(n for status, n in result.statuses.items() if status != 200),
    )


def throughput(opts: Options, loadgen: LoadGenerator, servers: dict[str, Server]) -> list[Throughput]:
    """Each setting on both servers, alternating in ``CHUNKS`` slices (bare first), so that outside load hits both.

    With ``rounds`` > 1 the whole sweep is repeated with fresh keys and the fastest run of each kept.
    """
    best: dict[tuple[str, int, int], Throughput] = {}
    run = 0
    for _ in range(opts.rounds):
        for rows in opts.rows:
            for concurrency in opts.concurrency:
                keys = servers["gateway"].secrets
                chosen = tuple(keys[(run * concurrency + i) % len(keys)] for i in range(concurrency))
                for measured in setting(opts, loadgen, servers, rows, concurrency, chosen, run):
                    log.info("%s", _line(measured))
                    slot = (measured.target, rows, concurrency)
                    if slot not in best or measured.rps > best[slot].rps:
                        best[slot] = measured
                run += 1
    return list(best.values())


CHUNKS = 4


def setting(
    opts: Options,
    loadgen: LoadGenerator,
    servers: dict[str, Server],
    rows: int,
    concurrency: int,
    keys: tuple[str, ...],
    run: int,
) -> list[Throughput]:
    """One setting: warm-up, then the measured requests in slices, bare and gateway taking turns; slices merged."""
    parts: dict[str, list[tuple[Load, LoadResult]]] = {"bare": [], "gateway": []}
    slice_ = max(opts.requests // CHUNKS, concurrency)
    sent = 0
    for k in range(CHUNKS):
        warmup = opts.warmup if k == 0 else 0
        for target in ("bare", "gateway"):
            server = servers[target]
            # Each connection carries on through the bodies from where its previous slice stopped.
            offset = run * 997 + sent // concurrency + 1
            load = Load(server.url, keys, rows, concurrency, warmup, slice_, offset, server.pid)
            parts[target].append((load, loadgen.run(load)))
        sent += slice_ + warmup
    return [summarise(target, runs[0][0], merge([r for _, r in runs])) for target, runs in parts.items()]


def merge(results: Sequence[LoadResult]) -> LoadResult:
    statuses: Counter[int] = Counter()
    for r in results:
        statuses.update(r.statuses)
    return LoadResult(
        latencies=tuple(t for r in results for t in r.latencies),
        seconds=sum(r.seconds for r in results),
        server_cpu=sum(r.server_cpu for r in results),
        server_main_cpu=sum(r.server_main_cpu for r in results),
        client_cpu=sum(r.client_cpu for r in results),
        statuses=dict(statuses),
    )


def _line(t: Throughput) -> str:
    return (
        f"{t.target:<8} rows={t.rows:<3} c={t.concurrency:<3} {t.rps:8.1f} req/s  p50 {t.p50_ms:7.2f} ms  "
        f"p99 {t.p99_ms:7.2f} ms  server {t.server_cpu_ms:6.2f} ms cpu/req ({t.server_main_share:.0%} event loop)  "
        f"client cpu {t.client_cpu_share:.0%}  errors {t.errors}"
    )


def throughput_table(results: Sequence[Throughput]) -> list[str]:
    lines = [
        "| images/request | concurrency | server | req/s | p50 ms | p99 ms | server CPU ms/req | gateway/bare req/s "
        "| bare/gateway CPU |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    by = {(t.target, t.rows, t.concurrency): t for t in results}
    for (target, rows, c), t in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0] != "bare")):
        bare = by.get(("bare", rows, c))
        ratio = f"{t.rps / bare.rps:.2f}x" if target == "gateway" and bare is not None else ""
        cpu = f"{bare.server_cpu_ms / t.server_cpu_ms:.2f}x" if target == "gateway" and bare is not None else ""
        lines.append(
            f"| {rows} | {c} | {target} | {t.rps:.1f} | {t.p50_ms:.2f} | {t.p99_ms:.2f} | {t.server_cpu_ms:.2f} "
            f"| {ratio} | {cpu} |"
        )
    return lines


def throughput_verdicts(results: Sequence[Throughput]) -> list[str]:
    by = {(t.target, t.rows, t.concurrency): t for t in results}
    out = []
    for (target, rows, c), t in sorted(by.items()):
        bare = by.get(("bare", rows, c))
        if target != "gateway" or bare is None:
            continue
        ratio = t.rps / bare.rps
        mark = "met" if ratio >= THROUGHPUT_TARGET else "MISSED"
        out.append(
            f"throughput {rows} image(s)/request at concurrency {c}: {ratio:.2f}x bare (target >= "
            f"{THROUGHPUT_TARGET}x) -> {mark}"
        )
    return out


# ---------------------------------------------------------------- part 2: detection


@contextlib.contextmanager
def served_in_thread(gateway: Gateway) -> Iterator[str]:
    """``gateway`` served by uvicorn on a free loopback port in a thread of this process; yields its URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(gateway, close_on_shutdown=False),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        timeout_keep_alive=KEEP_ALIVE,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


class Detected(Exception):
    """Raised out of the attack once the attacking key is flagged: the attack stops there."""


class Watched(ModelView):
    """The remote model, one request per ``MAX_BATCH`` rows; after each request, looks in the store for flags.

    The attack is stopped (:class:`Detected`) once every monitor has flagged the key, or ``follow``
    rows after the first flag: long enough to see whether the other monitor would flag it too.
    """

    def __init__(self, remote: RemoteClassifier, store: Store, key_id: str, monitors: int, follow: int) -> None:
        super().__init__(remote)
        self.remote = remote
        self.store = store
        self.key_id = key_id
        self.monitors = monitors
        self.follow = follow
        self.knowledge: Knowledge = remote.knowledge
        self.queries = QueryCounter()
        self.sent = 0  # rows the gateway received from this key
        self.first: dict[str, int] = {}  # monitor -> rows received when its first flag of this key appeared
        self.flags: list[Any] = []

    def logits(self, x: Tensor) -> Tensor:
        outputs = []
        for start in range(0, int(x.shape[0]), MAX_BATCH):
            chunk = x[start : start + MAX_BATCH]
            outputs.append(self.remote.logits(chunk))
            self.sent += int(chunk.shape[0])
            self.queries.forward += int(chunk.shape[0])
            self._look()
        return torch.cat(outputs)

    def _look(self) -> None:
        if len(self.first) == self.monitors:
            return
        flags = self.store.list_flags(client=self.key_id, open_only=False, limit=10)
        for flag in flags:
            if flag.kind not in self.first:
                self.first[flag.kind] = self.sent
                self.flags.append(flag)
        if self.first and (len(self.first) == self.monitors or self.sent >= min(self.first.values()) + self.follow):
            raise Detected

    def inference(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


@dataclass(frozen=True)
class AttackSpec:
    name: str
    knowledge: str  # what the attack client reads from the answer
    norm: str
    eps: float | None
    per_image: int  # the most queries spent on one image before moving to the next
    least: int  # fewer queries left than this: the client stops


@dataclass(frozen=True)
class AttackClient:
    attack: str
    key_id: str
    images: int  # images attacked
    broken: int  # of which the attack broke before the key's first flag
    sent: int  # rows the gateway received
    first: dict[str, int]  # monitor -> rows received when its first flag of this key appeared in the store
    reasons: tuple[str, ...]
    exact_row: int | None  # the query detector's own evidence: the row that crossed its threshold

    @property
    def flagged_at(self) -> int | None:
        """Queries to detection: rows the gateway had received from the key when its first flag appeared."""
        return min(self.first.values()) if self.first else None

    @property
    def first_by(self) -> str:
        at = self.flagged_at
        return "+".join(sorted(m for m, n in self.first.items() if n == at)) if at is not None else ""


def attack_specs(opts: Options) -> list[AttackSpec]:
    return [
        AttackSpec("hopskipjump", "labels", "l2", None, per_image=1000, least=50),
        AttackSpec("square", "scores", "linf", opts.square_eps, per_image=1000, least=10),
        AttackSpec("boundary", "labels", "l2", None, per_image=1000, least=50),
    ]


def attack_one(spec: AttackSpec, watched: Watched, x: np.ndarray, y: np.ndarray, seed: int) -> bool | None:
    """One image attacked; whether it broke, None when the key was flagged during the attack."""
    left = watched.remote.budget_left or 0
    attack = ATTACKS[spec.name](max_queries=min(spec.per_image, left))
    try:
        result = attack(
            watched, torch.from_numpy(x[None]), torch.tensor([int(y)]), norm=spec.norm, eps=spec.eps, seed=seed
        )
    except Detected:
        return None
    return bool(result.success[0])


def attack_client(
    spec: AttackSpec,
    url: str,
    gateway: Gateway,
    images: Sequence[int],
    data: tuple[np.ndarray, np.ndarray],
    *,
    budget: int,
    follow: int,
    seed: int,
) -> AttackClient:
    """A new key attacks ``images`` one after the other until it is flagged or its budget is spent."""
    secret, key = gateway.store.create_key(Role.CLIENT, f"attacker-{spec.name}-{seed}")
    remote = RemoteClassifier(
        RemoteConfig(
            url=f"{url}/v1/predict",
            num_classes=gateway.model.num_classes,
            input_shape=gateway.model.input_shape,
            knowledge=spec.knowledge,
            response_field="labels" if spec.knowledge == "labels" else "scores",
            batch_size=MAX_BATCH,
            max_concurrency=1,
            retries=1,
            headers={"Authorization": f"Bearer {secret}"},
            query_budget=budget,
            seed=seed,
        )
    )
    watched = Watched(remote, gateway.store, key.key_id, len(gateway.monitors), follow)
    attacked = broken = 0
    with remote:
        for image in images:
            if (remote.budget_left or 0) < spec.least:
                break
            attacked += 1
            try:
                outcome = attack_one(spec, watched, data[0][image], data[1][image], seed * 1000 + attacked)
            except BudgetExhaustedError:
                break
            if outcome is None:
                break
            broken += outcome and not watched.first  # broken while the key was not yet flagged
    return _client_result(spec, key.key_id, watched, attacked, broken)


def _client_result(spec: AttackSpec, key_id: str, watched: Watched, attacked: int, broken: int) -> AttackClient:
    exact = [f.evidence.get("query") for f in watched.flags if f.kind == "query" and "query" in f.evidence]
    return AttackClient(
        attack=spec.name,
        key_id=key_id,
        images=attacked,
        broken=broken,
        sent=watched.sent,
        first=dict(watched.first),
        reasons=tuple(sorted({f.reason for f in watched.flags})),
        exact_row=int(exact[0]) if exact else None,
    )


def attack_images(
    model: Any, x: np.ndarray, y: np.ndarray, clients: int, per_client: int, seed: int
) -> list[list[int]]:
    """Disjoint runs of correctly classified test images (seeded order), one run per attack client."""
    correct = np.flatnonzero(classify(model, x).argmax(axis=1) == y)
    order = np.random.default_rng(seed).permutation(correct)
    return [[int(order[(c * per_client + j) % len(order)]) for j in range(per_client)] for c in range(clients)]


def benign_streams(clients: int, length: int, images: int, repeat_rate: float, seed: int) -> list[tuple[int, ...]]:
    """Each client: ``length`` test images drawn at random, each with probability ``repeat_rate`` an exact re-send."""
    gen = np.random.default_rng(seed)
    streams = []
    for _ in range(clients):
        idx = gen.integers(0, images, size=length)
        for i in np.flatnonzero(gen.random(length) < repeat_rate):
            if i > 0:
                idx[i] = idx[gen.integers(0, i)]
        streams.append(tuple(int(v) for v in idx))
    return streams


@dataclass(frozen=True)
class Benign:
    """Benign clients: all of them against the gateway's monitors in this process, the first ones also over HTTP."""

    clients: int
    length: int  # requests per client, one image each
    repeats: int  # requests that re-send an image the same client sent before
    seconds_in_process: float
    flagged_in_process: dict[str, list[int]]  # monitor -> the clients (by index) it flagged
    http_clients: int
    http_statuses: dict[int, int]
    http_seconds: float
    flagged_http: dict[str, list[int]]  # the same over HTTP, after the benign phase
    flagged_http_at_end: dict[str, list[int]]  # ... and after the attack clients ran (links to attackers included)
    reasons_http_at_end: dict[str, int]

    @property
    def agree(self) -> bool:
        """The HTTP clients were flagged exactly as their in-process twins."""
        return _below(self.flagged_in_process, self.http_clients) == self.flagged_http

    @property
    def share_in_process(self) -> float:
        return len({c for v in self.flagged_in_process.values() for c in v}) / self.clients

    @property
    def share_http(self) -> float:
        return len({c for v in self.flagged_http_at_end.values() for c in v}) / max(self.http_clients, 1)


def _below(flagged: dict[str, list[int]], limit: int) -> dict[str, list[int]]:
    kept = {monitor: [c for c in clients if c < limit] for monitor, clients in flagged.items()}
    return {monitor: clients for monitor, clients in kept.items() if clients}


@dataclass(frozen=True)
class Detection:
    benign: Benign
    attacks: list[AttackClient] = field(default_factory=list)


def flagged_by(store: Store, keys: list[str]) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Per monitor, which of ``keys`` (by index) it flagged; and the flags' reasons."""
    index = {key: i for i, key in enumerate(keys)}
    flags = [f for f in store.list_flags(open_only=False, limit=10_000) if f.client in index]
    per_monitor: dict[str, set[int]] = defaultdict(set)
    for f in flags:
        per_monitor[f.kind].add(index[f.client])
    return {k: sorted(v) for k, v in per_monitor.items()}, dict(Counter(f.reason for f in flags))


def detection(opts: Options, loadgen: LoadGenerator, folder: str) -> Detection:
    """Benign clients (in process, and the first ones over HTTP), then each attack's clients over HTTP."""
    x, y = mnist_images()
    test = (x[:1000], y[:1000])
    streams = benign_streams(opts.benign_clients, opts.benign_length, len(test[0]), opts.repeat_rate, opts.seed + 1)
    began = time.perf_counter()
    in_process = benign_in_process(streams, test[0], folder)
    seconds = time.perf_counter() - began
    log.info("benign in process: %d clients in %.1f s, flagged %s", len(streams), seconds, in_process)
    gateway = build_gateway(f"sqlite:///{folder}/detection.db", "scores")
    try:
        with served_in_thread(gateway) as url:
            keys = [gateway.store.create_key(Role.CLIENT, f"benign-{i}") for i in range(opts.benign_http)]
            ids = [key.key_id for _, key in keys]
            began = time.perf_counter()
            job = BenignLoad(url, tuple(s for s, _ in keys), tuple(streams[: len(keys)]), opts.benign_concurrency)
            statuses = loadgen.run(job)
            http_seconds = time.perf_counter() - began
            flagged_http, _ = flagged_by(gateway.store, ids)
            log.info(
                "benign over HTTP: %d clients in %.1f s, %s, flagged %s",
                len(keys),
                http_seconds,
                statuses,
                flagged_http,
            )
            clients = run_attacks(opts, gateway, url, test)
            at_end, reasons = flagged_by(gateway.store, ids)
    finally:
        gateway.close()
    benign = Benign(
        clients=len(streams),
        length=opts.benign_length,
        repeats=sum(len(s) - len(set(s)) for s in streams),
        seconds_in_process=seconds,
        flagged_in_process=in_process,
        http_clients=len(keys),
        http_statuses=statuses,
        http_seconds=http_seconds,
        flagged_http=flagged_http,
        flagged_http_at_end=at_end,
        reasons_http_at_end=reasons,
    )
    return Detection(benign=benign, attacks=clients)


def benign_in_process(streams: list[tuple[int, ...]], x: np.ndarray, folder: str) -> dict[str, list[int]]:
    """The streams, round-robin one request of one image at a time, through the monitors of a gateway built as usual.

    Each image's probabilities are computed as the gateway computes them for a one-image request.
    """
    gateway = build_gateway(f"sqlite:///{folder}/in-process.db", "label")
    try:
        probs = np.concatenate([classify(gateway.model, x[i : i + 1]) for i in range(len(x))])
        flagged: dict[str, set[int]] = defaultdict(set)
        for step in range(max(len(s) for s in streams)):
            for c, stream in enumerate(streams):
                if step < len(stream):
                    i = stream[step]
                    for slot in gateway.monitors:
                        for verdict in slot.observe(f"benign-{c}", x[i : i + 1], probs[i : i + 1]):
                            flagged[verdict.monitor].add(int(verdict.client.split("-")[1]))
    finally:
        gateway.close()
    return {k: sorted(v) for k, v in flagged.items()}


def run_attacks(opts: Options, gateway: Gateway, url: str, data: tuple[np.ndarray, np.ndarray]) -> list[AttackClient]:
    images = attack_images(gateway.model, data[0], data[1], opts.attack_clients * 3, 5, opts.seed)
    clients: list[AttackClient] = []
    for a, spec in enumerate(attack_specs(opts)):
        began = time.perf_counter()
        for c in range(opts.attack_clients):
            index = a * opts.attack_clients + c
            clients.append(
                attack_client(
                    spec, url, gateway, images[index], data, budget=opts.budget, follow=opts.follow, seed=index
                )
            )
            done = clients[-1]
            log.info("%s client %d: %d rows sent, flags after %s rows", spec.name, c, done.sent, done.first or "-")
        log.info("%s: %d clients in %.1f s", spec.name, opts.attack_clients, time.perf_counter() - began)
    return clients


def detection_table(result: Detection, budget: int) -> list[str]:
    lines = [
        f"| attack | clients | flagged (budget {budget} q) | within {DETECTION_QUERIES} q | queries to detection: "
        "median / p90 / max | first flag by | query detector: flagged, median q | boundary monitor: flagged, median q "
        "| images broken before the flag |",
        "|---|---:|---:|---:|---|---|---|---|---:|",
    ]
    for name in dict.fromkeys(c.attack for c in result.attacks):
        group = [c for c in result.attacks if c.attack == name]
        at = np.asarray([c.flagged_at for c in group if c.flagged_at is not None], dtype=float)
        quick = sum(1 for c in group if c.flagged_at is not None and c.flagged_at <= DETECTION_QUERIES)
        spread = f"{np.median(at):.0f} / {np.percentile(at, 90):.0f} / {at.max():.0f}" if len(at) else "-"
        by = Counter(c.first_by for c in group if c.first_by)
        lines.append(
            f"| {name} | {len(group)} | {len(at)} ({len(at) / len(group):.0%}) | {quick} ({quick / len(group):.0%}) "
            f"| {spread} | {', '.join(f'{k} {v}' for k, v in sorted(by.items())) or '-'} "
            f"| {_by_monitor(group, 'query')} | {_by_monitor(group, 'boundary')} "
            f"| {sum(c.broken for c in group)} of {sum(c.images for c in group)} |"
        )
    return lines


def _by_monitor(group: Sequence[AttackClient], monitor: str) -> str:
    """How many clients the monitor flagged, the median rows received by then (the median row its evidence names)."""
    at = [c.first[monitor] for c in group if monitor in c.first]
    rows = [c.exact_row for c in group if monitor == "query" and c.exact_row is not None]
    exact = f" (row {np.median(rows):.0f})" if rows else ""
    return f"{len(at)}, {np.median(at):.0f}{exact}" if at else "0"


def benign_lines(b: Benign) -> list[str]:
    requests = sum(b.http_statuses.values())
    return [
        f"benign: {b.clients} clients x {b.length} requests of one test image ({b.repeats} exact re-sends in all)",
        f"  in process, through the monitors of a gateway built as usual ({b.seconds_in_process:.0f} s): flagged "
        f"{b.share_in_process:.2%} of clients; per monitor {_counts(b.flagged_in_process)}",
        f"  over HTTP, the first {b.http_clients} of them ({requests} requests in {b.http_seconds:.0f} s, statuses "
        f"{b.http_statuses}): flagged per monitor {_counts(b.flagged_http)}; after the attacks "
        f"{_counts(b.flagged_http_at_end)}, reasons {b.reasons_http_at_end or 'none'}",
        f"  HTTP and in-process verdicts on those {b.http_clients} clients agree: {'yes' if b.agree else 'NO'}",
    ]


def _counts(flagged: dict[str, list[int]]) -> str:
    return ", ".join(f"{monitor} {len(clients)}" for monitor, clients in sorted(flagged.items())) or "none"


def detection_verdicts(result: Detection) -> list[str]:
    out = []
    for name in dict.fromkeys(c.attack for c in result.attacks):
        group = [c for c in result.attacks if c.attack == name]
        quick = sum(1 for c in group if c.flagged_at is not None and c.flagged_at <= DETECTION_QUERIES) / len(group)
        mark = "met" if quick >= DETECTION_TARGET else "MISSED"
        out.append(
            f"{name}: {quick:.0%} flagged within {DETECTION_QUERIES} queries "
            f"(target >= {DETECTION_TARGET:.0%}) -> {mark}"
        )
    b = result.benign
    worst = max(b.share_in_process, b.share_http)
    out.append(
        f"benign clients flagged: {b.share_in_process:.2%} of {b.clients} in process, {b.share_http:.2%} of "
        f"{b.http_clients} over HTTP (target <= {BENIGN_TARGET:.1%}) -> {'met' if worst <= BENIGN_TARGET else 'MISSED'}"
    )
    return out


# ---------------------------------------------------------------- part 3: profile


class TimedGuard:
    """A guard with a stopwatch: its own time per request, without the guards inside it."""

    def __init__(self, inner: Any, timers: dict[str, list[float]]) -> None:
        self.inner = inner
        self.name = inner.name
        self.timers = timers

    async def __call__(self, call: Any, call_next: Callable[[Any], Awaitable[Response]]) -> Response:
        inside = [0.0]

        async def timed_next(c: Any) -> Response:
            began = time.perf_counter()
            try:
                return await call_next(c)
            finally:
                inside[0] += time.perf_counter() - began

        began = time.perf_counter()
        try:
            return await self.inner(call, timed_next)
        finally:
            if call.endpoint == "predict":
                self.timers[self.name].append(time.perf_counter() - began - inside[0])


def install_guard_timers(timers: dict[str, list[float]]) -> None:
    """Wrap every registered guard in a :class:`TimedGuard` (this process only)."""
    from bastion.gateway import guards

    for name, factory in list(guards.GUARDS.items()):
        guards.GUARDS[name] = lambda gateway, factory=factory: TimedGuard(factory(gateway), timers)


def profile(opts: Options, loadgen: LoadGenerator, folder: str) -> list[str]:
    """A gateway with a timer around each guard (c=1 then c=8), the bare endpoint at c=1, and each step alone."""
    sub = Path(folder) / "profile"
    sub.mkdir()
    server = start_server(ServerSpec("gateway", free_port(), str(sub), opts.threads, keys=8, profile=True))
    bare = start_server(ServerSpec("bare", free_port(), str(sub), opts.threads, keys=0))
    measured = max(opts.requests // 2, 8)
    results = []
    try:
        for target, c in (("bare", 1), ("profiled", 1), ("profiled", 8)):
            chosen = bare if target == "bare" else server
            load = Load(chosen.url, tuple(server.secrets[:c]), 1, c, opts.warmup, measured, 0, chosen.pid)
            results.append(summarise(target, load, loadgen.run(load)))
    finally:
        stop_server(server)
        stop_server(bare)
    timers = json.loads((sub / "guards.json").read_text())
    return [
        "Profile (the gateway with a timer around each guard, which slows it a little):",
        *(_line(r) for r in results),
        "",
        *guard_table(timers, opts.warmup, measured),
        "",
        "Each step alone (this process, no HTTP):",
        *component_costs(str(sub), calls=500),
    ]


def guard_table(timers: dict[str, list[float]], warmup: int, measured: int) -> list[str]:
    """Mean own time of each guard per predict request in the measured part of the concurrency-1 run, and overall.

    Every predict request is timed, in order: the c=1 run's warm-up, its measured requests, then the c=8 run.
    """
    lines = ["| guard | own ms/request at c=1 | own ms/request, c=1 and c=8 |", "|---|---:|---:|"]
    total = 0.0
    for name, values in timers.items():
        alone = float(np.mean(values[warmup : warmup + measured])) * 1000.0
        total += alone
        lines.append(f"| {name} | {alone:.3f} | {float(np.mean(values)) * 1000.0:.3f} |")
    lines.append(f"| all guards | {total:.3f} | |")
    return lines


def per_call_ms(fn: Callable[[int], object], calls: int) -> float:
    """CPU milliseconds of this process per call of ``fn(i)``: steadier than wall time on a shared machine."""
    fn(0)
    began = time.process_time()
    for i in range(calls):
        fn(i)
    return (time.process_time() - began) / calls * 1000.0


def component_costs(folder: str, calls: int) -> list[str]:
    """What each step of one single-image predict costs on its own, in this process (one torch thread)."""
    gateway = build_gateway(f"sqlite:///{folder}/components.db", "label")
    x, _ = mnist_images()
    test, train = x[:1000], x[1000:]
    prefill(gateway, train, seed=1)
    module = demo_model("mnist").module.eval()
    bodies = [encode(test[i : i + 1]) for i in range(calls + 1)]
    payloads = [json.loads(b) for b in bodies]
    inputs = [decode_json_inputs(p["inputs"], gateway.spec) for p in payloads]
    probs = [classify(gateway.model, row) for row in inputs]
    secret = gateway.store.create_key(Role.CLIENT, "components")[0]
    try:
        rows = [
            ("bare: json.loads + np.asarray", lambda i: np.asarray(json.loads(bodies[i])["inputs"], np.float32)),
            ("bare: forward + softmax", lambda i: _bare_forward(module, inputs[i])),
            ("validation: parse_json_body (UTF-8, depth scan, duplicate keys)", lambda i: parse_json_body(bodies[i])),
            (
                "validation: decode_json_inputs (shape, types, finite, range)",
                lambda i: decode_json_inputs(payloads[i]["inputs"], gateway.spec),
            ),
            ("model: classify (forward, float64 softmax)", lambda i: classify(gateway.model, inputs[i])),
            ("model: prediction record (uuid, sha256, scores)", lambda i: _record(inputs[i], probs[i])),
            ("rate limit: limiter.hit (memory storage)", lambda i: gateway.limiter.hit("components")),
            ("auth: hash_secret (cache lookup)", lambda i: hash_secret(secret)),
            *[
                (
                    f"monitors: {slot.monitor.name} observe (a new row)",
                    lambda i, slot=slot: slot.observe("components", inputs[i], probs[i]),
                )
                for slot in gateway.monitors
            ],
            (
                f"audit + recorder: store.write_batch, per request (batches of 64, inputs kept: "
                f"{gateway.config.store.keep_inputs})",
                lambda i: _write_batch(gateway, inputs[i], probs[i]) if i % 64 == 0 else None,
            ),
            ("one anyio thread hop (run_sync of a no-op)", _thread_hop),
        ]
        costs = [(name, per_call_ms(fn, calls)) for name, fn in rows]
    finally:
        gateway.close()
    return ["| step | CPU ms per call |", "|---|---:|", *(f"| {name} | {ms:.3f} |" for name, ms in costs)]


def _bare_forward(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(module(torch.from_numpy(x)), dim=1).numpy()


def _record(x: np.ndarray, probs: np.ndarray, keep: bool = False) -> PredictionRecord:
    return PredictionRecord(
        prediction_id=uuid.uuid4().hex,
        time=datetime.now(UTC),
        client="components",
        label=int(probs[0].argmax()),
        scores=tuple(float(p) for p in probs[0]),
        input_sha256=hashlib.sha256(x[0].tobytes()).hexdigest(),
        x=x[0] if keep else None,
    )


def _write_batch(gateway: Gateway, x: np.ndarray, probs: np.ndarray) -> None:
    """64 requests' worth of what the recorder writes (one audit event and one prediction each), divided by 64."""
    events = [
        AuditEvent(
            request_id=uuid.uuid4().hex,
            time=datetime.now(UTC),
            client="components",
            role=Role.CLIENT,
            endpoint="predict",
            action="POST /v1/predict",
            outcome="ok",
            status=200,
            code=None,
            detail="",
            duration_ms=1.0,
        )
        for _ in range(64)
    ]
    keep = gateway.config.store.keep_inputs
    gateway.store.write_batch(events=events, records=[_record(x, probs, keep) for _ in range(64)])


_HOPS = 1000


def _thread_hop(i: int) -> None:
    """``_HOPS`` hops at once (an event loop per call would cost more than the hop); the per-call cost is divided."""
    if i % _HOPS:
        return

    async def hops() -> None:
        for _ in range(_HOPS):
            await anyio.to_thread.run_sync(_noop)

    anyio.run(hops)


def _noop() -> None:
    return None


# ---------------------------------------------------------------- the run


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("bastion.gateway.guards.monitors").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    opts = parse(argv)
    torch.set_num_threads(opts.threads)
    info = machine(torch.device("cpu"))
    report: dict[str, Any] = {"machine": info, "arguments": {**vars(opts), "out": str(opts.out)}}
    path = opts.out or result_path(RESULTS, torch.device("cpu"), "gateway")
    parts = {"throughput": run_throughput, "detection": run_detection, "profile": run_profile}
    loadgen = LoadGenerator(opts.rows)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-gateway-") as folder:
            for name, part in parts.items():
                if name in opts.parts:
                    # Each part's figures are printed and saved as soon as it ends: a later failure loses nothing.
                    print("\n".join(part(opts, loadgen, folder, report)), flush=True)
                    report["load_average_end"] = os.getloadavg()
                    save(path, report)
    finally:
        loadgen.close()
    print(f"\nwrote {path}")
    return 0


def save(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


def run_profile(opts: Options, loadgen: LoadGenerator, folder: str, report: dict[str, Any]) -> list[str]:
    report["profile"] = profile(opts, loadgen, folder)
    return ["", *report["profile"]]


def run_throughput(opts: Options, loadgen: LoadGenerator, folder: str, report: dict[str, Any]) -> list[str]:
    keys = opts.rounds * len(opts.rows) * len(opts.concurrency) * max(opts.concurrency)
    servers = {
        kind: start_server(ServerSpec(kind, free_port(), folder, opts.threads, keys=keys if kind == "gateway" else 0))
        for kind in ("bare", "gateway")
    }
    try:
        results = throughput(opts, loadgen, servers)
    finally:
        for server in servers.values():
            stop_server(server)
    report["throughput"] = [dataclasses.asdict(t) for t in results]
    return ["", "Throughput (fastest of each setting):", *throughput_table(results), "", *throughput_verdicts(results)]


def run_detection(opts: Options, loadgen: LoadGenerator, folder: str, report: dict[str, Any]) -> list[str]:
    result = detection(opts, loadgen, folder)
    report["detection"] = dataclasses.asdict(result)
    return [
        "",
        "Detection:",
        *detection_table(result, opts.budget),
        "",
        *benign_lines(result.benign),
        "",
        *detection_verdicts(result),
    ]


if __name__ == "__main__":
    sys.exit(main())
