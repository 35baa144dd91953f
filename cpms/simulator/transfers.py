"""File transfers a simulated charger makes for the CSMS, and the jobs around them: firmware downloads
(1.6 UpdateFirmware and SignedUpdateFirmware, 2.0.1 UpdateFirmware and PublishFirmware) and log uploads
(1.6 GetDiagnostics, GetLog in both versions).

A download is an HTTP GET of `location`; an upload is an HTTP PUT of the raw file to
`<location without trailing slash>/<file name>` with Content-Type text/plain. urllib blocks, so every
request runs in a worker thread (asyncio.to_thread) with a timeout; a cancelled job leaves its thread to
finish within that timeout. Only http and https are spoken: any other scheme (ftp://, ...) fails the job
the way it fails on a charger that cannot reach the server (DownloadFailed, UploadFailed).

The flows are protocol-independent. Each version passes `notify`, which sends its own status message
(FirmwareStatusNotification, SignedFirmwareStatusNotification, DiagnosticsStatusNotification, ...) with
the status names of that message. Every transfer is recorded in the charger's result (`transfers`).
"""

import asyncio
import contextlib
import datetime as dt
import hashlib
import http.client
import re
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from cpms.simulator.charger import SimulatedCharger
from cpms.simulator.client import FIRMWARE_VERSION, MODEL, VENDOR
from cpms.simulator.meter import ocpp_timestamp, utc_now
from cpms.simulator.protocol import CallFailed
from cpms.simulator.summary import Transfer

TRANSFER_TIMEOUT_S = 30.0
MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
# Without retryInterval, between two attempts (real chargers pick their own).
DEFAULT_RETRY_INTERVAL_S = 1.0
# The CSMS may ask for many retries; the simulator stops after this many (every wait stays bounded).
MAX_RETRIES = 5
# Installing takes this long on the simulator (a real charger: minutes, and a reboot).
INSTALL_DELAY_S = 0.05
USER_AGENT = "CPMS-Simulator"
SCHEMES = frozenset({"http", "https"})

# Loopback and test servers only: never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

Notify = Callable[[str], Awaitable[Any]]


class TransferError(Exception):
    pass


# The statuses that end a job (firmware updates, publications, uploads, in either version).
END_STATUSES = frozenset(
    {
        "Installed",
        "InstallationFailed",
        "InstallVerificationFailed",
        "InvalidSignature",
        "DownloadFailed",
        "InvalidChecksum",
        "Published",
        "PublishFailed",
        "Uploaded",
        "UploadFailed",
        "UploadFailure",
        "PermissionDenied",
    }
)


@dataclass
class Job:
    """The firmware update (or log upload, publication) a charger is busy with. A triggered status
    notification reports it: its last status while it runs, Idle once it has ended (OCPP 1.6 4.4/4.5:
    Idle when not busy)."""

    status: str = "Idle"
    request_id: int | None = None
    task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        """Under way: not ended, even if its last notification still waits for the CSMS's answer."""
        return self.task is not None and not self.task.done() and self.status not in END_STATUSES

    @property
    def current(self) -> tuple[str, int | None]:
        """(status, requestId) for a triggered notification."""
        return (self.status, self.request_id) if self.running else ("Idle", None)

    def start(self, charger: SimulatedCharger, coro: Coroutine, *, request_id: int | None = None) -> None:
        """Run `coro` as this job, cancelling the one still running (L01: AcceptedCanceled)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.status = "Idle"
        self.request_id = request_id
        self.task = charger.spawn(coro)

    async def report(self, notify: Notify, status: str) -> None:
        """Send `status`. A CALLERROR (recorded by the client) does not stop the job: a charger goes on."""
        self.status = status
        with contextlib.suppress(CallFailed):
            await notify(status)


@dataclass(frozen=True)
class FirmwareRequest:
    location: str
    request_id: int | None = None
    retrieve_at: dt.datetime | None = None
    install_at: dt.datetime | None = None
    retries: int | None = None
    retry_interval_s: float | None = None
    # A signature came with it (1.6 SignedUpdateFirmware, 2.0.1 firmware.signature).
    signed: bool = False


@dataclass(frozen=True)
class UploadRequest:
    location: str
    file_name: str
    content: bytes
    request_id: int | None = None
    retries: int | None = None
    retry_interval_s: float | None = None


def _seconds_until(moment: dt.datetime | None) -> float:
    if moment is None:
        return 0.0
    return max(0.0, (moment - utc_now()).total_seconds())


async def firmware_update(
    charger: SimulatedCharger,
    job: Job,
    notify: Notify,
    request: FirmwareRequest,
    *,
    kind: str,
    detailed: bool,
) -> Transfer:
    """Download, then "install": Downloading, Downloaded, Installing, Installed (or DownloadFailed).

    `detailed`: the 2.0.1 status set (also 1.6 SignedFirmwareStatusNotification), which adds
    DownloadScheduled and InstallScheduled for times in the future and SignatureVerified for a signed
    firmware (the simulator does not check signatures). The 1.6 FirmwareStatusNotification has none of
    these: its charger just waits for retrieveDate (OCPP 1.6 5.19)."""
    transfer = _record(charger, kind, "GET", request.location, request.request_id)
    wait_s = _seconds_until(request.retrieve_at)
    if wait_s > 0:
        if detailed:
            await job.report(notify, "DownloadScheduled")
        await asyncio.sleep(wait_s)
    await job.report(notify, "Downloading")
    if not await _with_retries(transfer, _get, request.retries, request.retry_interval_s):
        await job.report(notify, "DownloadFailed")
        return transfer
    await job.report(notify, "Downloaded")
    if detailed and request.signed:
        await job.report(notify, "SignatureVerified")
    wait_s = _seconds_until(request.install_at)
    if wait_s > 0 and detailed:
        await job.report(notify, "InstallScheduled")
        await asyncio.sleep(wait_s)
    await job.report(notify, "Installing")
    await asyncio.sleep(INSTALL_DELAY_S)
    await job.report(notify, "Installed")
    return transfer


async def download(
    charger: SimulatedCharger, request: FirmwareRequest, *, kind: str
) -> tuple[Transfer, bool]:
    """Only the download (2.0.1 PublishFirmware, whose statuses differ): (the transfer, succeeded)."""
    transfer = _record(charger, kind, "GET", request.location, request.request_id)
    ok = await _with_retries(transfer, _get, request.retries, request.retry_interval_s)
    return transfer, ok


async def log_upload(
    charger: SimulatedCharger,
    job: Job,
    notify: Notify,
    request: UploadRequest,
    *,
    kind: str,
    failed: str,
    denied: str | None = None,
) -> Transfer:
    """Uploading, then Uploaded, or `failed` (1.6 DiagnosticsStatus UploadFailed, LogStatus
    UploadFailure); `denied` instead when the server answered 401 or 403 (LogStatus PermissionDenied)."""
    url = upload_url(request.location, request.file_name)
    transfer = _record(charger, kind, "PUT", url, request.request_id)
    await job.report(notify, "Uploading")

    def put(target: str) -> tuple[int, int, str, str]:
        return _put(target, request.content)

    if await _with_retries(transfer, put, request.retries, request.retry_interval_s):
        await job.report(notify, "Uploaded")
    elif denied is not None and transfer.http_status in (401, 403):
        await job.report(notify, denied)
    else:
        await job.report(notify, failed)
    return transfer


def upload_url(location: str, file_name: str) -> str:
    return f"{location.rstrip('/')}/{quote(file_name)}"


def log_file_name(identity: str, kind: str) -> str:
    """`<identity>-<kind>-<UTC time>.log`, with only characters that need no quoting in a URL path."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", identity)
    return f"{safe}-{kind}-{utc_now():%Y%m%dT%H%M%SZ}.log"


def simulated_log(charger: SimulatedCharger, *, kind: str) -> bytes:
    """A few lines of log about the charger's state: what a diagnostics or log upload carries."""
    now = ocpp_timestamp(utc_now())
    result = charger.result
    lines = [
        f"{now} INFO {charger.config.identity}: {VENDOR} {MODEL}, firmware {FIRMWARE_VERSION}, "
        f"OCPP {charger.config.protocol}",
        f"{now} INFO connections: {result.connections}, last boot: {result.boot_status}",
    ]
    for connector in charger.connectors.values():
        lines.append(
            f"{now} INFO connector {connector.connector_id}: {connector.status}, "
            f"register {connector.meter.register_wh} Wh"
        )
    completed = sum(1 for s in result.sessions if s.status == "completed")
    lines.append(f"{now} INFO sessions: {len(result.sessions)} ({completed} completed)")
    lines.append(f"{now} INFO {kind} log requested by the CSMS")
    return ("\n".join(lines) + "\n").encode()


def _record(charger: SimulatedCharger, kind: str, method: str, url: str, request_id: int | None) -> Transfer:
    transfer = Transfer(kind=kind, method=method, url=url, request_id=request_id)
    charger.result.transfers.append(transfer)
    return transfer


async def _with_retries(
    transfer: Transfer,
    attempt: Callable[[str], tuple[int, int, str, str]],
    retries: int | None,
    retry_interval_s: float | None,
) -> bool:
    """Up to 1 + retries attempts (OCPP 1.6 5.9/5.19 retries, retryInterval). True once one succeeds."""
    attempts = 1 + min(max(retries or 0, 0), MAX_RETRIES)
    interval = DEFAULT_RETRY_INTERVAL_S if retry_interval_s is None else max(0.0, retry_interval_s)
    scheme = urlsplit(transfer.url).scheme.lower()
    for number in range(attempts):
        if number:
            await asyncio.sleep(interval)
        transfer.attempts += 1
        if scheme not in SCHEMES:
            transfer.error = f"unsupported scheme {scheme!r}: the simulator transfers over http(s) only"
            break
        try:
            status, size, sha256, md5 = await asyncio.to_thread(attempt, transfer.url)
        except urllib.error.HTTPError as exc:
            transfer.http_status = exc.code
            transfer.error = f"HTTP {exc.code} {exc.reason}"
        except (OSError, http.client.HTTPException, ValueError, TransferError) as exc:
            transfer.error = f"{type(exc).__name__}: {exc}"
        else:
            transfer.http_status, transfer.size_bytes, transfer.sha256, transfer.md5 = (
                status,
                size,
                sha256,
                md5,
            )
            transfer.error = None
            transfer.status = "done"
            return True
    transfer.status = "failed"
    return False


def _get(url: str) -> tuple[int, int, str, str]:
    """GET `url`: (HTTP status, bytes, sha256, md5). Blocking: run it in a thread."""
    # The scheme is http(s): _with_retries checks it first (SCHEMES).
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})  # noqa: S310
    with _OPENER.open(request, timeout=TRANSFER_TIMEOUT_S) as response:
        sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        size = 0
        while chunk := response.read(CHUNK_BYTES):
            size += len(chunk)
            if size > MAX_DOWNLOAD_BYTES:
                raise TransferError(f"larger than {MAX_DOWNLOAD_BYTES} bytes")
            sha256.update(chunk)
            md5.update(chunk)
        return response.status, size, sha256.hexdigest(), md5.hexdigest()


def _put(url: str, content: bytes) -> tuple[int, int, str, str]:
    """PUT `content` to `url` as text/plain: (HTTP status, bytes, sha256, md5). Blocking."""
    request = urllib.request.Request(  # noqa: S310 (http(s) only: see _get)
        url,
        data=content,
        method="PUT",
        headers={"Content-Type": "text/plain", "User-Agent": USER_AGENT},
    )
    with _OPENER.open(request, timeout=TRANSFER_TIMEOUT_S) as response:
        response.read()
        digests = hashlib.sha256(content).hexdigest(), hashlib.md5(content, usedforsecurity=False).hexdigest()
        return response.status, len(content), *digests
