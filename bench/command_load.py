"""The load generator of command_rtt.py: worker threads POSTing remote commands in a closed loop."""

import http.client
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass

from harness import HOST

# The API waits up to OCPP_CALL_TIMEOUT_S (30 s) plus grace for a charger: a request may take that long.
REQUEST_TIMEOUT_S = 60.0


@dataclass
class LoadResult:
    latencies: list[float]
    statuses: Counter
    samples: list[str]
    elapsed: float
    cpu_s: float


def load(
    *,
    port: int,
    token: str,
    targets: list[str],
    action: str,
    body: dict,
    concurrency: int,
    seconds: float,
) -> LoadResult:
    """`concurrency` threads, each with one keep-alive HTTP connection, POST commands in a closed loop."""
    payload = json.dumps(body).encode()
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    go = threading.Event()
    window = {"deadline": 0.0}
    latencies: list[float] = []
    statuses: Counter = Counter()
    samples: list[str] = []
    merge = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[float] = []
        codes: Counter = Counter()
        notes: list[str] = []
        conn: http.client.HTTPConnection | None = None
        if not go.wait(timeout=30):
            return
        clock = time.perf_counter
        while clock() < window["deadline"]:
            ident = rng.choice(targets)
            if conn is None:
                conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
            started = clock()
            try:
                conn.request(
                    "POST", f"/api/v1/stations/{ident}/ocpp/{action}/", body=payload, headers=headers
                )
                response = conn.getresponse()
                data = response.read()
                code: int | str = response.status
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                code, data = type(exc).__name__, str(exc).encode()
                conn.close()
                conn = None
            mine.append(clock() - started)
            codes[code] += 1
            if code != 200 and len(notes) < 5:
                notes.append(f"{ident}: {code} {data[:400].decode(errors='replace')}")
        if conn is not None:
            conn.close()
        with merge:
            latencies.extend(mine)
            statuses.update(codes)
            samples.extend(notes[: max(0, 10 - len(samples))])

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    cpu_before = time.process_time()
    started = time.perf_counter()
    window["deadline"] = started + seconds
    go.set()
    for thread in threads:
        thread.join(timeout=max(0.0, window["deadline"] - time.perf_counter()) + REQUEST_TIMEOUT_S + 5)
    elapsed = time.perf_counter() - started
    stuck = sum(thread.is_alive() for thread in threads)
    if stuck:
        samples.append(f"{stuck} workers still waiting for a response after the bound")
    return LoadResult(latencies, statuses, samples, elapsed, time.process_time() - cpu_before)
