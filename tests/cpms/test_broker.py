"""The embedded Celery broker (cpms/broker.py): docs/reliability.md case 47, issue 15 item 4.

Real processes (fork) writing and reading the same broker folder, as `make run`'s web server, beat and worker do.
No database.
"""

import json
import logging
import multiprocessing
import os
import signal
import time
import traceback

import pytest
from kombu import Connection
from kombu.transport.virtual import BrokerState

import cpms.broker
from cpms.broker import Transport

QUEUE = "h4-broker-test"
WRITERS = 2
MESSAGES_PER_WRITER = 300
# Big enough that a write takes a while: kombu's stock transport then shows half-written files to readers.
BODY_BYTES = 64 * 1024
READ_DEADLINE_S = 60.0


def connection(folder, transport=Transport) -> Connection:
    return Connection(
        "filesystem://",
        transport=transport,
        transport_options={
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(folder / "control"),
        },
    )


def _write(folder, transport, writer: int) -> None:
    with connection(folder, transport) as conn:
        queue = conn.SimpleQueue(QUEUE)
        for i in range(MESSAGES_PER_WRITER):
            queue.put({"writer": writer, "i": i, "pad": "x" * BODY_BYTES})
        queue.close()


def _read(folder, transport, results) -> None:
    """Consume as fast as possible until every message arrived or something raised; report (received ids,
    error)."""
    received = []
    error = None
    deadline = time.monotonic() + READ_DEADLINE_S
    try:
        with connection(folder, transport) as conn:
            queue = conn.SimpleQueue(QUEUE)
            while len(received) < WRITERS * MESSAGES_PER_WRITER and time.monotonic() < deadline:
                try:
                    message = queue.get_nowait()
                except queue.Empty:
                    continue
                body = message.payload
                assert body["pad"] == "x" * BODY_BYTES
                received.append((body["writer"], body["i"]))
                message.ack()
            queue.close()
    except Exception as exc:  # the point: what a reader of a half-written file gets
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    results.put((received, error))


def run_writers_and_reader(folder, transport) -> tuple[list, str | None]:
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    reader = context.Process(target=_read, args=(folder, transport, results))
    reader.start()
    writers = [context.Process(target=_write, args=(folder, transport, w)) for w in range(WRITERS)]
    for writer in writers:
        writer.start()
    received, error = results.get(timeout=120)
    for process in [reader, *writers]:
        process.join(timeout=30)
    return received, error


def test_rel_47_concurrent_writers_and_reader_never_see_a_partial_message(tmp_path):
    # Against kombu's own transport (transport="filesystem") the same run ends with the reader's
    # "JSONDecodeError: Expecting value: line 1 column 1 (char 0)" (see run_writers_and_reader's callers).
    received, error = run_writers_and_reader(tmp_path, Transport)

    assert error is None
    assert sorted(received) == [(w, i) for w in range(WRITERS) for i in range(MESSAGES_PER_WRITER)]
    assert sorted(os.listdir(tmp_path / "tmp")) == []
    assert [n for n in os.listdir(tmp_path / "inflight") if not n.endswith(".lock")] == []


def test_rel_47_undecodable_message_is_quarantined_and_consuming_goes_on(tmp_path, caplog):
    with connection(tmp_path) as conn:
        queue = conn.SimpleQueue(QUEUE)
        queue.put({"n": 1})
        # What a producer killed mid-write under kombu's transport leaves: a *.msg name, half a message.
        bad_name = f"{0:020d}_half.{QUEUE}.msg"
        (tmp_path / bad_name).write_bytes(b'{"body": "eyJu')
        queue.put({"n": 2})

        with caplog.at_level(logging.ERROR, logger="cpms.broker"):
            first = queue.get(timeout=5)
            second = queue.get(timeout=5)
        first.ack()
        second.ack()
        queue.close()

    assert (first.payload, second.payload) == ({"n": 1}, {"n": 2})
    assert os.listdir(tmp_path / "bad") == [bad_name]
    assert (tmp_path / "bad" / bad_name).read_bytes() == b'{"body": "eyJu'
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        f"broker: message file {bad_name} cannot be decoded"
    ]


def _take_and_die(folder) -> None:
    with connection(folder) as conn:
        queue = conn.SimpleQueue(QUEUE)
        message = queue.get(timeout=5)
        assert message.payload == {"job": 7}
        os.kill(os.getpid(), signal.SIGKILL)  # killed mid-task: never acked


def test_rel_47_message_of_a_killed_consumer_is_delivered_again(tmp_path, monkeypatch):
    with connection(tmp_path) as conn:
        queue = conn.SimpleQueue(QUEUE)
        queue.put({"job": 7})
        queue.put({"job": 8})
        consumer = multiprocessing.get_context("fork").Process(target=_take_and_die, args=(tmp_path,))
        consumer.start()
        consumer.join(timeout=30)
        assert consumer.exitcode == -signal.SIGKILL
        [claimed] = [n for n in os.listdir(tmp_path / "inflight") if not n.endswith(".lock")]
        assert claimed.startswith(f"{consumer.pid}.")

        payloads = []
        for _ in range(2):
            message = queue.get(timeout=5)
            payloads.append(message.payload)
            message.ack()
        queue.close()

    # The killed consumer's job first (it keeps its place in the queue), then the next one; each once.
    assert payloads == [{"job": 7}, {"job": 8}]
    assert os.listdir(tmp_path / "inflight") == [f"{os.getpid()}.lock"]


def test_rel_47_message_of_a_live_consumer_is_not_taken_away(tmp_path):
    with connection(tmp_path) as conn:
        queue = conn.SimpleQueue(QUEUE)
        queue.put({"job": 1})
        message = queue.get(timeout=5)
        channel = queue.consumer.channel
        # Another process's orphan check while this one still works on the message: nothing to restore.
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        checker = context.Process(target=lambda: results.put(channel.restore_orphans()))
        checker.start()
        checker.join(timeout=30)
        assert results.get(timeout=5) == 0
        message.ack()
        queue.close()

    assert os.listdir(tmp_path / "inflight") == [f"{os.getpid()}.lock"]
    assert [n for n in os.listdir(tmp_path) if n.endswith(".msg")] == []


def test_put_writes_the_whole_message_under_its_final_name(tmp_path):
    with connection(tmp_path) as conn:
        queue = conn.SimpleQueue(QUEUE)
        queue.put({"n": 1})
        queue.close()

    [name] = [n for n in os.listdir(tmp_path) if n.endswith(".msg")]
    assert name.endswith(f".{QUEUE}.msg")
    assert json.loads((tmp_path / name).read_bytes())["properties"]["delivery_info"]["routing_key"] == QUEUE
    assert os.listdir(tmp_path / "tmp") == []


@pytest.fixture(autouse=True)
def _fresh_broker_state(monkeypatch):
    # Each test uses its own folder: forget the bindings (kept per process, like the in-flight lock) that
    # the previous test's folder had.
    monkeypatch.setattr(cpms.broker, "_owner", {})
    monkeypatch.setattr(Transport, "global_state", BrokerState())
