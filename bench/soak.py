"""Soak drill of the embedded mode: `make run` under simulated charger traffic, with a child killed mid-run.

    python bench/soak.py [--minutes 30] [--chargers 6] [--kill-worker-at 0.5] [--kill-web-at 0.75]
                         [--meter-interval 5] [--meter-samples 6] [--json PATH] [--keep]
    make soak MINUTES=30

In a temporary directory (its own SQLite file, var dir and port; REDIS_URL and DATABASE_URL from the
environment are ignored) it does what `make run` does (`manage.py migrate`, `manage.py load_demo`,
`python -m cpms.launcher`), registers --chargers stations (SOAK-001..., half at each demo site, the demo
station password), and plays them with the simulator (cpms/simulator) for --minutes: each charger
stays connected, boots, sends heartbeats (every 10 s: OCPP_HEARTBEAT_INTERVAL_S) and status notifications, and
runs sessions back to back (idTag DEMO-TAG-OK) with --meter-samples MeterValues every --meter-interval
seconds. A charger whose connection drops reconnects after 2 s, as a real one does.

At the fraction --kill-worker-at (--kill-web-at) of the run it SIGKILLs the launcher's Celery worker with its
pool processes (the web server); 0 disables. The worker is killed when it holds a broker message (waiting up to 20 s for one), so that
the run shows that message delivered again. At the end it waits for billing to catch up, stops the launcher with SIGTERM and prints:
minutes run, charger calls sent/answered, sessions started/completed/stored, meter values, CDRs, each child's
restarts and crashes (from the launcher's log), task errors and ERROR lines in the log, the children's memory
and the broker's files at the end, and PASS or FAIL.

PASS means: the launcher exited 0 on SIGTERM and never gave up; no child died except those the drill killed,
and each of those was restarted; every session the chargers completed is stored exactly once, as completed,
with the energy and every meter value they sent, and has exactly one CDR; no task raised, no broker file
was quarantined, no ERROR line was logged. Sessions cut by the web server's kill (the simulator does not
resend a stop after reconnecting) are counted apart and not judged. Exit status 0 on PASS, 1 on FAIL.
The drill's own test: tests/e2e/test_soak.py (a bounded run).
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
BILLING_TIMEOUT_S = 150.0
RECONNECT_DELAY_S = 2.0
KILL_WAIT_S = 20.0
HEARTBEAT_INTERVAL_S = 10
ID_TAG = "DEMO-TAG-OK"
SITES = ("Berlin Depot", "Boston Plaza")
PROTOCOLS = ("1.6", "2.0.1")


@dataclass
class ChargerLog:
    identity: str
    protocol: str
    connections: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    csms_calls: int = 0  # calls from the CSMS the charger answered (SetChargingProfile, ...)
    call_errors: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    sessions: list = field(default_factory=list)  # SessionRecord


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def drill_env(workdir: Path, port: int) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "DATABASE_URL", "CELERY_QUEUE", "CELERY_TASK_ALWAYS_EAGER"}
    }
    env.update(
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        CPMS_VAR_DIR=str(workdir / "var"),
        CPMS_BIND=HOST,
        CPMS_PORT=str(port),
        OCPP_HEARTBEAT_INTERVAL_S=str(HEARTBEAT_INTERVAL_S),
        DJANGO_SETTINGS_MODULE="cpms.settings",
        PYTHONUNBUFFERED="1",
    )
    return env


def launcher_children(launcher_pid: int) -> dict[str, int]:
    """The launcher's live children by role (web, worker, beat), from /proc (Linux)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            args = [a.decode() for a in (entry / "cmdline").read_bytes().split(b"\0")]
        except OSError:
            continue
        if int(fields[1]) != launcher_pid or fields[0] == "Z":
            continue
        if "cpms.server" in args:
            found["web"] = int(entry.name)
        elif "worker" in args:
            found["worker"] = int(entry.name)
        elif "beat" in args:
            found["beat"] = int(entry.name)
    return found


def wait_listening(port: int, launcher: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise SystemExit(f"launcher exited with {launcher.returncode}:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            if len(launcher_children(launcher.pid)) == 3:
                return
        time.sleep(0.3)
    raise SystemExit(f"the launcher's server is not listening after {START_TIMEOUT_S} s")


def setup_stations(count: int) -> list[str]:
    """SOAK-001... registered at the demo sites, alternately, with the demo station password."""
    from django.contrib.auth import get_user_model

    from stations.models import Site
    from stations.services.demo import STATION_PASSWORD
    from stations.services.management import station_create

    actor = get_user_model().objects.get(username="admin")
    sites = [Site.objects.get(name=name) for name in SITES]
    identities = []
    for i in range(count):
        identity = f"SOAK-{i + 1:03d}"
        station_create(
            actor=actor, identity=identity, site_id=sites[i % 2].pk, name=identity, password=STATION_PASSWORD
        )
        identities.append(identity)
    return identities


async def play_charger(
    log: ChargerLog, *, url: str, password: str, deadline: float, args: argparse.Namespace, index: int
) -> None:
    """One charger for the whole run: connected, sessions back to back; reconnects when the connection drops."""
    from cpms.simulator.charger import SimulatedCharger
    from cpms.simulator.config import ChargerConfig

    loop = asyncio.get_running_loop()
    round_no = 0
    while (left := deadline - loop.time()) > 1:
        round_no += 1
        config = ChargerConfig(
            url=url,
            identity=log.identity,
            protocol=log.protocol,
            password=password,
            connectors=2,
            sessions=True,
            session_count=1_000_000,
            meter_samples=args.meter_samples,
            meter_interval_s=args.meter_interval,
            speedup=60.0,
            duration_s=left,
            id_tag=ID_TAG,
            seed=index * 100_000 + round_no,
            response_timeout_s=30.0,
        )
        result = await SimulatedCharger(config).run()
        log.connections += result.connections
        log.frames_sent += result.messages_sent
        log.frames_received += result.messages_received
        log.csms_calls += sum(result.calls_received.values())
        log.call_errors += result.call_errors
        log.errors += result.errors
        if result.failure:
            log.failures.append(result.failure)
        log.sessions += result.sessions
        if deadline - loop.time() > 1:
            await asyncio.sleep(RECONNECT_DELAY_S)


async def play_fleet(
    identities: list[str], *, url: str, password: str, seconds: float, args, on_tick
) -> list:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    logs = [ChargerLog(identity, PROTOCOLS[i % 2]) for i, identity in enumerate(identities)]
    tasks = [
        asyncio.create_task(
            play_charger(log, url=url, password=password, deadline=deadline, args=args, index=i)
        )
        for i, log in enumerate(logs)
    ]
    started = loop.time()
    while not all(t.done() for t in tasks):
        on_tick((loop.time() - started) / seconds)
        await asyncio.sleep(0.5)
    for task in tasks:
        task.result()
    return logs


def parse_launcher_log(text: str) -> dict:
    children = {name: {"crashes": 0, "restarts": 0, "exits": []} for name in ("web", "worker", "beat")}
    for name, code in re.findall(r"launcher: (\w+) \(pid \d+\) exited with (-?\d+)", text):
        children[name]["crashes"] += 1
        children[name]["exits"].append(int(code))
    for name in re.findall(r"launcher: (\w+) restarted \(pid \d+\)", text):
        children[name]["restarts"] += 1
    error_lines = [
        line
        for line in text.splitlines()
        if re.search(r"\b(ERROR|CRITICAL)\b|Traceback|Unrecoverable error", line)
    ]
    return {
        "children": children,
        "gave_up": "giving up" in text,
        "task_errors": [line for line in text.splitlines() if "raised unexpected" in line],
        "quarantined": [line for line in text.splitlines() if "cannot be decoded" in line],
        "restored_messages": sum(int(n) for n in re.findall(r"broker: (\d+) unacknowledged message", text)),
        "error_lines": error_lines,
    }


def broker_files(var_dir: Path) -> dict[str, int]:
    """What lies in the embedded broker's folders (cpms/broker.py): growth here over hours would be a leak."""
    folder = var_dir / "celery-broker"

    def count(path: Path, suffix: str) -> int:
        try:
            return sum(1 for name in os.listdir(path) if name.endswith(suffix))
        except FileNotFoundError:
            return 0

    return {
        "ready": count(folder, ".msg"),
        "in_flight": count(folder / "inflight", ".msg"),
        "bad": count(folder / "bad", ".msg"),
        "tmp": count(folder / "tmp", ".msg"),
    }


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def check_database(logs: list[ChargerLog]) -> dict:
    from django.db import close_old_connections

    from billing.models import ChargeDetailRecord
    from sessions.enums import SessionStatus
    from sessions.models import ChargingSession, MeterValue

    close_old_connections()
    rows = {
        (s.station.identity, s.transaction_id): s
        for s in ChargingSession.objects.select_related("station").filter(
            station__identity__startswith="SOAK-"
        )
    }
    per_key = Counter(
        ChargingSession.objects.filter(station__identity__startswith="SOAK-").values_list(
            "station__identity", "transaction_id"
        )
    )
    cdrs = Counter(
        ChargeDetailRecord.objects.filter(station_identity__startswith="SOAK-").values_list("session_id")
    )
    started = completed = stored = stored_twice = interrupted = 0
    problems = []
    meter_sent = meter_stored = 0
    cdr_ok = 0
    for log in logs:
        for record in log.sessions:
            if record.transaction_id is None:
                continue
            started += 1
            key = (log.identity, str(record.transaction_id))
            stored += key in rows
            stored_twice += per_key[key] > 1
            if record.status != "completed":
                interrupted += 1
                continue
            completed += 1
            session = rows.get(key)
            if session is None:
                problems.append(f"{key}: completed at the charger, not stored")
                continue
            if (session.status, session.energy_wh) != (SessionStatus.COMPLETED, record.energy_wh):
                problems.append(
                    f"{key}: stored {session.status} {session.energy_wh} Wh, charger {record.energy_wh} Wh"
                )
            sent = sum(len(mv["sampledValue"]) for mv in [*record.meter_values, *record.transaction_data])
            got = MeterValue.objects.filter(session=session).count()
            meter_sent += sent
            meter_stored += got
            if sent != got:
                problems.append(f"{key}: {sent} meter values sent, {got} stored")
            if cdrs[(session.pk,)] == 1:
                cdr_ok += 1
            else:
                problems.append(f"{key}: {cdrs[(session.pk,)]} CDRs")
    return {
        "sessions_started": started,
        "sessions_completed": completed,
        "sessions_stored": stored,
        "sessions_stored_twice": stored_twice,
        "sessions_interrupted": interrupted,
        "sessions_in_database": len(rows),
        "meter_values_sent": meter_sent,
        "meter_values_stored": meter_stored,
        "cdrs": sum(cdrs.values()),
        "completed_sessions_with_one_cdr": cdr_ok,
        "problems": problems,
    }


def billed_count(logs: list[ChargerLog]) -> tuple[int, int]:
    """(completed sessions, those with a CDR) so far."""
    from django.db import close_old_connections

    from billing.models import ChargeDetailRecord

    close_old_connections()
    keys = {
        (log.identity, str(r.transaction_id)) for log in logs for r in log.sessions if r.status == "completed"
    }
    billed = set(
        ChargeDetailRecord.objects.filter(station_identity__startswith="SOAK-").values_list(
            "station_identity", "session__transaction_id"
        )
    )
    return len(keys), len(keys & billed)


def run(args: argparse.Namespace) -> dict:
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="cpms-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = args.port or free_port()
    env = drill_env(workdir, port)
    python = sys.executable
    log_path = workdir / "launcher.log"
    print(f"soak: working in {workdir} (port {port}); launcher log {log_path}", flush=True)

    # What `make run` does, in order.
    for command in (["manage.py", "migrate", "--noinput"], ["manage.py", "load_demo"]):
        subprocess.run([python, *command], cwd=BASE_DIR, env=env, check=True, stdout=subprocess.DEVNULL)
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connections

    from stations.services.demo import STATION_PASSWORD

    identities = setup_stations(args.chargers)
    connections.close_all()

    with log_path.open("wb") as log:
        launcher = subprocess.Popen(
            [python, "-m", "cpms.launcher"],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    kills: dict[str, dict] = {}
    try:
        wait_listening(port, launcher, log_path)
        print(f"soak: launcher up; {args.chargers} chargers for {args.minutes} min", flush=True)
        plan = {"worker": args.kill_worker_at, "web": args.kill_web_at}
        started = time.monotonic()

        due: dict[str, float] = {}

        def on_tick(fraction: float) -> None:
            for name, at in plan.items():
                if not at or name in kills or fraction < at:
                    continue
                due.setdefault(name, time.monotonic())
                pid = launcher_children(launcher.pid).get(name)
                if pid is None:
                    continue  # restarting already: try again on the next tick
                # The worker preferably while it holds a message (a task running or reserved), to show that
                # the message is delivered again; at most KILL_WAIT_S later than planned.
                in_flight = broker_files(workdir / "var")["in_flight"]
                if name == "worker" and not in_flight and time.monotonic() - due[name] < KILL_WAIT_S:
                    continue
                # The whole child, the worker's pool processes included (each child leads its process group):
                # an orphaned pool process would log the broken pipe to its dead parent as an ERROR.
                os.killpg(pid, signal.SIGKILL)
                kills[name] = {
                    "pid": pid,
                    "at_min": round((time.monotonic() - started) / 60, 2),
                    "messages_in_flight": in_flight,
                }
                print(
                    f"soak: SIGKILL {name} (pid {pid}) at {kills[name]['at_min']} min, {in_flight} broker "
                    "message(s) in flight",
                    flush=True,
                )

        logs = asyncio.run(
            play_fleet(
                identities,
                url=f"ws://{HOST}:{port}/ocpp",
                password=STATION_PASSWORD,
                seconds=args.minutes * 60,
                args=args,
                on_tick=on_tick,
            )
        )
        minutes_run = (time.monotonic() - started) / 60
        print("soak: traffic done; waiting for billing", flush=True)
        deadline = time.monotonic() + BILLING_TIMEOUT_S
        while time.monotonic() < deadline:
            completed, billed = billed_count(logs)
            if billed == completed:
                break
            time.sleep(2)
        database = check_database(logs)
        children_before_stop = launcher_children(launcher.pid)
        rss = {name: rss_mib(pid) for name, pid in sorted(children_before_stop.items())}
        broker = broker_files(workdir / "var")
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGTERM)
        try:
            exit_code = launcher.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            exit_code = launcher.wait()

    launcher_log = parse_launcher_log(log_path.read_text(errors="replace"))
    report = {
        "minutes": round(minutes_run, 2),
        "chargers": args.chargers,
        "launcher_exit_code": exit_code,
        "frames_sent": sum(log.frames_sent for log in logs),
        "frames_received": sum(log.frames_received for log in logs),
        "calls_sent": sum(log.frames_sent - log.csms_calls for log in logs),
        "calls_answered": sum(log.frames_received - log.csms_calls for log in logs),
        "csms_calls_answered": sum(log.csms_calls for log in logs),
        "connections": sum(log.connections for log in logs),
        "call_errors": [e for log in logs for e in log.call_errors],
        "charger_errors": [e for log in logs for e in log.errors],
        "charger_failures": Counter(f for log in logs for f in log.failures),
        "kills": kills,
        "children_alive_at_end": sorted(children_before_stop),
        "rss_mib_at_end": rss,
        "broker_files_at_end": broker,
        "database_mib": round((workdir / "db.sqlite3").stat().st_size / 2**20, 1),
        **database,
        **launcher_log,
        "workdir": str(workdir),
    }
    report["verdict"], report["reasons"] = verdict(report)
    if not args.keep and report["verdict"] == "PASS":
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def verdict(r: dict) -> tuple[str, list[str]]:
    reasons = []
    if r["launcher_exit_code"] != 0 or r["gave_up"]:
        reasons.append(f"launcher exit {r['launcher_exit_code']}, gave up: {r['gave_up']}")
    if r["children_alive_at_end"] != ["beat", "web", "worker"]:
        reasons.append(f"children alive at the end: {r['children_alive_at_end']}")
    for name, child in r["children"].items():
        caused = 1 if name in r["kills"] else 0
        if child["crashes"] != caused:
            reasons.append(f"{name} died {child['crashes']} time(s); the drill killed it {caused} time(s)")
        if child["restarts"] != child["crashes"]:
            reasons.append(f"{name} restarted {child['restarts']} time(s) after {child['crashes']} death(s)")
    if r["sessions_completed"] == 0:
        reasons.append("no session completed")
    if r["problems"]:
        reasons.append(f"{len(r['problems'])} session problem(s), first: {r['problems'][0]}")
    if r["sessions_stored_twice"]:
        reasons.append(f"{r['sessions_stored_twice']} session(s) stored twice")
    if "web" not in r["kills"] and r["sessions_interrupted"]:
        reasons.append(f"{r['sessions_interrupted']} session(s) interrupted without a web kill")
    if r["call_errors"]:
        reasons.append(f"{len(r['call_errors'])} CALLERROR(s), first: {r['call_errors'][0]}")
    for key in ("task_errors", "quarantined", "error_lines"):
        if r[key]:
            reasons.append(f"{len(r[key])} {key.replace('_', ' ')}, first: {r[key][0][:200]}")
    return ("FAIL" if reasons else "PASS"), reasons


def print_report(r: dict) -> None:
    kills = (
        ", ".join(
            f"{name} at {k['at_min']} min ({k['messages_in_flight']} broker message(s) in flight)"
            for name, k in r["kills"].items()
        )
        or "none"
    )
    children = " | ".join(
        f"{name}: {c['restarts']} restart(s), {c['crashes']} crash(es) {c['exits'] or ''}"
        for name, c in r["children"].items()
    )
    lines = [
        "",
        f"Soak drill: {r['minutes']} min run, {r['chargers']} chargers (1.6 and 2.0.1), embedded mode",
        f"  charger calls: sent {r['calls_sent']}, answered {r['calls_answered']} (CALLERRORs "
        f"{len(r['call_errors'])}); CSMS calls answered by chargers {r['csms_calls_answered']}; frames sent "
        f"{r['frames_sent']}, received {r['frames_received']}; connections {r['connections']}; simulator errors "
        f"{len(r['charger_errors'])}",
        f"  sessions: started {r['sessions_started']}, completed {r['sessions_completed']}, stored "
        f"{r['sessions_stored']} (stored twice {r['sessions_stored_twice']}), cut by the web kill "
        f"{r['sessions_interrupted']}",
        f"  meter values of completed sessions: sent {r['meter_values_sent']}, stored {r['meter_values_stored']}",
        f"  CDRs: {r['cdrs']}; completed sessions with exactly one CDR: {r['completed_sessions_with_one_cdr']}"
        f" of {r['sessions_completed']}",
        f"  killed by the drill: {kills}",
        f"  children: {children}",
        f"  launcher: exit {r['launcher_exit_code']} on SIGTERM, gave up: {r['gave_up']}; "
        f"broker messages redelivered after the kill: {r['restored_messages']}",
        f"  at the end: RSS MiB {r['rss_mib_at_end']}; broker files {r['broker_files_at_end']}; SQLite "
        f"{r['database_mib']} MiB",
        f"  log: task errors {len(r['task_errors'])}, quarantined broker files {len(r['quarantined'])}, "
        f"ERROR lines {len(r['error_lines'])}",
    ]
    if r["charger_failures"]:
        lines.append(f"  charger disconnects: {dict(r['charger_failures'])}")
    lines += [f"  FAIL: {reason}" for reason in r["reasons"]]
    lines.append(f"{r['verdict']}" + ("" if r["verdict"] == "PASS" else f" (files kept in {r['workdir']})"))
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--chargers", type=int, default=6)
    parser.add_argument("--meter-interval", type=float, default=5.0, help="seconds between MeterValues")
    parser.add_argument("--meter-samples", type=int, default=6, help="MeterValues per session")
    parser.add_argument("--kill-worker-at", type=float, default=0.5, help="fraction of the run; 0: never")
    parser.add_argument("--kill-web-at", type=float, default=0.0, help="fraction of the run; 0: never")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--workdir", default="", help="default: a new temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the working directory after a PASS")
    parser.add_argument("--json", default="", help="also write the report as JSON to this file")
    args = parser.parse_args(argv)
    report = run(args)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0 if report["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
