"""The embedded Celery broker: kombu's filesystem transport, made safe for several processes.

Settings use it when REDIS_URL is unset (`CELERY_BROKER_TRANSPORT = "cpms.broker:Transport"`). It differs from
kombu's `filesystem://` in three ways (docs/reliability.md case 47, issue 15 item 4):

- **No partial reads.** kombu's `_put` creates the final `*.msg` name and then writes it, while a consumer in
  another process may list, move and read it in between: it reads an empty or half-written file and the
  worker dies with JSONDecodeError. Here a message is written under `tmp/` and renamed into the queue folder
  with `os.replace`, so a `*.msg` name only ever holds a whole message. No fsync by default (transport option
  `fsync`): it protects only against a power loss or kernel crash, costs ~8 ms per publish here, and the
  embedded SQLite database itself runs with `synchronous=NORMAL`, which may lose its last commits then too;
  an empty file such a crash might leave is quarantined like any other (below), and the periodic jobs redo
  what its message asked (the billing sweep, the periodic rebalance).
- **A bad file does not stop the worker.** A message file that cannot be decoded is moved to `bad/` with an
  error in the log, and consuming goes on with the next one.
- **A message survives its worker.** kombu deletes a message file as soon as it is read, so a worker killed
  mid-task loses it (acks_late cannot help). Here the consumer claims the file by renaming it into
  `inflight/` under its own pid and deletes it on ack. Each consuming process holds an exclusive `flock` on
  `inflight/<pid>.lock` for its lifetime; any process that finds a lock it can take (its owner has died, even
  by SIGKILL) puts that owner's files back into the queue. The check runs on a consumer's first poll and
  every `ORPHAN_CHECK_S` seconds after. Delivery is therefore at least once: tasks must be idempotent (they
  are, docs/contributing.md#celery).

Layout under `data_folder_in` (which is also `data_folder_out`): `<ns>_<uuid>.<queue>.msg` ready messages,
`tmp/` messages being written, `inflight/<pid>.<name>` claimed and not yet acked, `bad/` quarantined files.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from pathlib import Path
from queue import Empty

from kombu.transport import filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

ORPHAN_CHECK_S = 30.0
LOCK_SUFFIX = ".lock"
STALE_TMP_S = 3600.0

# The in-flight lock this process holds from its first poll to its death: {"pid", "folder", "file"}. Per
# process, not per channel: every channel of a process has one owner identity (a forked child has another pid).
_owner: dict = {}


def _own_lock(inflight: Path) -> None:
    """Hold `inflight/<pid>.lock` for this process's lifetime (released by the kernel when it dies)."""
    pid = os.getpid()
    if _owner.get("pid") == pid and _owner.get("folder") == inflight:
        return
    inflight.mkdir(parents=True, exist_ok=True)
    path = inflight / f"{pid}{LOCK_SUFFIX}"
    while True:
        lock_file = open(path, "a+b")  # noqa: SIM115 - held open for the process's lifetime on purpose
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(lock_file.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        lock_file.close()  # a restorer removed this file (a dead process of the same pid): open a new one
    _owner.update(pid=pid, folder=inflight, file=lock_file)


class Channel(filesystem.Channel):
    """Filesystem channel with atomic puts, quarantine of undecodable files and redelivery after a crash."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._inflight_by_tag: dict[str, Path] = {}
        self._no_ack_queues: set[str] = set()
        self._next_orphan_check = 0.0

    # --- folders --------------------------------------------------------------------------------------
    @property
    def _queue_dir(self) -> Path:
        return Path(self.data_folder_in)

    @property
    def _tmp_dir(self) -> Path:
        return Path(self.data_folder_out) / "tmp"

    @property
    def _inflight_dir(self) -> Path:
        return self._queue_dir / "inflight"

    @property
    def _bad_dir(self) -> Path:
        return self._queue_dir / "bad"

    # --- producing ------------------------------------------------------------------------------------
    def _put(self, queue, payload, **kwargs):
        """Write the message under tmp/, then rename it into the queue folder: a reader never sees a `*.msg`
        name before its whole content."""
        # Zero-padded nanoseconds, so that sorting the names sorts by age (kombu sorts by name too, but its
        # milliseconds let two messages of one millisecond swap places).
        name = f"{time.monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        tmp_dir = self._tmp_dir
        tmp_path = tmp_dir / name
        data = str_to_bytes(dumps(payload))
        try:
            try:
                fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileNotFoundError:
                tmp_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.transport_options.get("fsync", False):
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp_path, Path(self.data_folder_out) / name)
        except OSError as exc:
            tmp_path.unlink(missing_ok=True)
            raise filesystem.ChannelError(f"Cannot add file {name!r} to directory") from exc

    # --- consuming ------------------------------------------------------------------------------------
    def _get(self, queue):
        """Claim the oldest message of `queue` (rename into inflight/), decode it, and remember the file
        until the message is acked. Undecodable files go to bad/."""
        inflight = self._inflight_dir
        _own_lock(inflight)
        now = time.monotonic()
        if now >= self._next_orphan_check:
            self._next_orphan_check = now + ORPHAN_CHECK_S
            self.restore_orphans()
        wanted = f"{queue}.msg"
        pid = os.getpid()
        for name in sorted(os.listdir(self._queue_dir)):
            # Only `<ns>_<uuid>.<queue>.msg`: a queue name may contain dots, so compare the whole tail.
            if name.partition(".")[2] != wanted:
                continue
            claimed = inflight / f"{pid}.{name}"
            try:
                os.replace(self._queue_dir / name, claimed)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            try:
                payload = loads(bytes_to_str(claimed.read_bytes()))
                tag = payload["properties"]["delivery_tag"]
            # JSONDecodeError and UnicodeDecodeError are ValueErrors; Key/TypeError: JSON, but not a message.
            except (ValueError, KeyError, TypeError) as exc:
                self._quarantine(claimed, name, exc)
                continue
            except OSError as exc:
                raise filesystem.ChannelError(f"Cannot read file {name!r} from queue.") from exc
            if queue in self._no_ack_queues:
                claimed.unlink(missing_ok=True)
            else:
                self._inflight_by_tag[tag] = claimed
            return payload
        raise Empty()

    def _quarantine(self, path: Path, name: str, exc: Exception) -> None:
        self._bad_dir.mkdir(parents=True, exist_ok=True)
        target = self._bad_dir / name
        try:
            os.replace(path, target)
        except OSError:
            logger.exception("broker: cannot quarantine undecodable message %s", path)
            return
        logger.error(
            "broker: message file %s cannot be decoded (%s: %s); moved to %s, consuming goes on",
            name,
            type(exc).__name__,
            exc,
            target,
        )

    def restore_orphans(self) -> int:
        """Put back into the queue every in-flight file whose owning process has died; returns how many."""
        self._remove_stale_tmp()
        inflight = self._inflight_dir
        try:
            names = os.listdir(inflight)
        except FileNotFoundError:
            return 0
        own_pid = str(os.getpid())
        restored = 0
        for owner in sorted({name.partition(".")[0] for name in names} - {own_pid}):
            lock_path = inflight / f"{owner}{LOCK_SUFFIX}"
            dead, lock_fd = self._dead_owner_lock(lock_path)
            if not dead:
                continue
            try:
                for name in names:
                    if name.endswith(LOCK_SUFFIX) or name.partition(".")[0] != owner:
                        continue
                    try:
                        os.replace(inflight / name, self._queue_dir / name.partition(".")[2])
                    except FileNotFoundError:
                        continue  # another process restored it
                    restored += 1
                # Removed while we hold it: an owner that opened this path meanwhile sees that its lock is
                # on a removed file and opens a new one (_own_lock).
                lock_path.unlink(missing_ok=True)
            finally:
                if lock_fd is not None:
                    os.close(lock_fd)
        if restored:
            logger.warning(
                "broker: %d unacknowledged message(s) of dead consumers put back in the queue", restored
            )
        return restored

    @staticmethod
    def _dead_owner_lock(lock_path: Path) -> tuple[bool, int | None]:
        """(dead, fd): whether the owner of `lock_path` is dead and, if so, its lock taken (an fd to close;
        None when there is no lock file: the owner died before writing it, or a restorer removed it)."""
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            return True, None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False, None
        return True, fd

    def _remove_stale_tmp(self) -> None:
        """Remove what producers killed mid-write left under tmp/ (never a whole message: those were renamed)."""
        cutoff = time.time() - STALE_TMP_S
        try:
            entries = list(os.scandir(self._tmp_dir))
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue

    def _forget(self, delivery_tag) -> None:
        path = self._inflight_by_tag.pop(delivery_tag, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def basic_consume(self, queue, no_ack, *args, **kwargs):
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_get(self, queue, no_ack=False, **kwargs):
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._forget(message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag, multiple=False):
        super().basic_ack(delivery_tag, multiple=multiple)
        self._forget(delivery_tag)

    def basic_reject(self, delivery_tag, requeue=False):
        # With requeue, super() puts a copy back first (QoS.reject -> _restore_at_beginning -> _restore).
        super().basic_reject(delivery_tag, requeue=requeue)
        self._forget(delivery_tag)

    def _restore(self, message):
        # Called for unacked messages at channel close and on reject(requeue=True): a new copy is queued,
        # then the claimed file goes (a crash in between delivers it twice, never zero times).
        path = self._inflight_by_tag.pop(message.delivery_tag, None)
        super()._restore(message)
        if path is not None:
            path.unlink(missing_ok=True)


class Transport(filesystem.Transport):
    """`filesystem://` with the channel above; same transport options as kombu's."""

    Channel = Channel
    global_state = virtual.BrokerState()
