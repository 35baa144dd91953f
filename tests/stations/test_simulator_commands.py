"""The simulator as the end-to-end peer of the CSMS: it answers every CSMS-initiated action of OCPP 1.6J
and 2.0.1 (`cpms.ocpp_wire.actions.V16`, `V201`) with a CALLRESULT that matches the response schema, and
keeps the state the answers imply.

A stand-in CSMS on a loopback WebSocket (as in test_simulator.py), speaking raw OCPP-J frames so that each
CALLRESULT is checked exactly as sent: it answers every call of the charger with a minimal valid response
and validates those calls against the request schemas. File transfers go to a local HTTP server. No
database.
"""

import asyncio
import contextlib
import datetime as dt
import hashlib
import http.server
import itertools
import json
import threading
import uuid
from dataclasses import dataclass, field

import pytest
from websockets.asyncio.server import serve

from cpms.ocpp.errors import OcppError
from cpms.ocpp_wire import actions, schemas
from cpms.simulator import ChargerConfig, SimulatedCharger, device_model_v201
from cpms.simulator.charger import cancel_and_wait

IDENTITY = "SIM-CMD-1"
WAIT_S = 5.0
HTTP = "@HTTP@"  # replaced by the local HTTP server's base URL
FIRMWARE = b"SIMULATED FIRMWARE IMAGE\n" * 200
FIRMWARE_MD5 = hashlib.md5(FIRMWARE, usedforsecurity=False).hexdigest()
PAST = "2020-01-01T00:00:00Z"
FUTURE = "2099-01-01T00:00:00Z"
SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}

# A self-signed root (openssl req -x509, EC P-256, serial 0x0A1B2C3D4E5F). Its CertificateHashData, worked
# out with openssl: sha256 of the issuer name's DER and of the public key's bits.
ROOT_PEM = """-----BEGIN CERTIFICATE-----
MIIBmTCCAT+gAwIBAgIGChssPU5fMAoGCCqGSM49BAMCMCgxFzAVBgNVBAMMDkNQ
TVMgVGVzdCBSb290MQ0wCwYDVQQKDARDUE1TMCAXDTI2MTEyMzIyMzQyMFoYDzIx
MjYxMDMwMjIzNDIwWjAoMRcwFQYDVQQDDA5DUE1TIFRlc3QgUm9vdDENMAsGA1UE
CgwEQ1BNUzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABCQ4SqUt2g/fJL5aLV5q
X0H6/nLGTQTuFmTM+E6d33uZh29y5fU7GC/CN+KZmiGHKypTsP0c1Ne1CYw1y1pl
wWmjUzBRMB0GA1UdDgQWBBQFuFWr6YRd7maudgOhOGma98KOBDAfBgNVHSMEGDAW
gBQFuFWr6YRd7maudgOhOGma98KOBDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49
BAMCA0gAMEUCIQCINSHXqvtwwK0+h2UOaBMWx9yQE8jnEFSpeP2YvRWscQIgHk4q
60piGuvTCx/nZSz2/DYAaMbf9iBvRlTbwSpFt7Q=
-----END CERTIFICATE-----
"""
ROOT_HASH_DATA = {
    "hashAlgorithm": "SHA256",
    "issuerNameHash": "2624fb1327790ec99bced801df7fe10b2592d5d0bd713091ca24727c68d83659",
    "issuerKeyHash": "a88d3b005e4a81f54e4270ab90e578f13e8e18619b045fd0052ead4f1b1e5725",
    "serialNumber": "a1b2c3d4e5f",
}
OTHER_HASH_DATA = {**ROOT_HASH_DATA, "serialNumber": "1234"}
TOKEN = {"idToken": "TAG-1", "type": "ISO14443"}


def _variable(component: str, variable: str, **extra) -> dict:
    return {"component": {"name": component}, "variable": {"name": variable}, **extra}


# One schema-valid request per CSMS-initiated action and version.
EXAMPLES: dict[str, dict[str, dict]] = {
    "1.6": {
        "CancelReservation": {"reservationId": 1},
        "CertificateSigned": {"certificateChain": ROOT_PEM},
        "ChangeAvailability": {"connectorId": 1, "type": "Inoperative"},
        "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "120"},
        "ClearCache": {},
        "ClearChargingProfile": {},
        "DataTransfer": {"vendorId": "CPMS-SIM", "messageId": "echo", "data": "ping"},
        "DeleteCertificate": {"certificateHashData": OTHER_HASH_DATA},
        "ExtendedTriggerMessage": {"requestedMessage": "LogStatusNotification"},
        "GetCompositeSchedule": {"connectorId": 1, "duration": 3600},
        "GetConfiguration": {},
        "GetDiagnostics": {"location": f"{HTTP}/logs/"},
        "GetInstalledCertificateIds": {"certificateType": "CentralSystemRootCertificate"},
        "GetLocalListVersion": {},
        "GetLog": {"log": {"remoteLocation": f"{HTTP}/logs"}, "logType": "DiagnosticsLog", "requestId": 7},
        "InstallCertificate": {"certificateType": "CentralSystemRootCertificate", "certificate": ROOT_PEM},
        "RemoteStartTransaction": {"idTag": "REMOTE-1", "connectorId": 1},
        "RemoteStopTransaction": {"transactionId": 1},
        "ReserveNow": {"connectorId": 1, "expiryDate": FUTURE, "idTag": "RES-1", "reservationId": 3},
        "Reset": {"type": "Soft"},
        "SendLocalList": {
            "listVersion": 1,
            "updateType": "Full",
            "localAuthorizationList": [{"idTag": "TAG-1", "idTagInfo": {"status": "Accepted"}}],
        },
        "SetChargingProfile": {
            "connectorId": 1,
            "csChargingProfiles": {
                "chargingProfileId": 1,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
                },
            },
        },
        "SignedUpdateFirmware": {
            "requestId": 5,
            "firmware": {
                "location": f"{HTTP}/firmware.bin",
                "retrieveDateTime": PAST,
                "signingCertificate": ROOT_PEM,
                "signature": "c2lnbmF0dXJl",
            },
        },
        "TriggerMessage": {"requestedMessage": "Heartbeat"},
        "UnlockConnector": {"connectorId": 1},
        "UpdateFirmware": {"location": f"{HTTP}/firmware.bin", "retrieveDate": PAST},
    },
    "2.0.1": {
        "CancelReservation": {"reservationId": 1},
        "CertificateSigned": {"certificateChain": ROOT_PEM, "certificateType": "ChargingStationCertificate"},
        "ChangeAvailability": {"operationalStatus": "Inoperative", "evse": {"id": 1}},
        "ClearCache": {},
        "ClearChargingProfile": {"chargingProfileId": 1},
        "ClearDisplayMessage": {"id": 1},
        "ClearVariableMonitoring": {"id": [1]},
        "CostUpdated": {"totalCost": 1.5, "transactionId": "tx-1"},
        "CustomerInformation": {"requestId": 9, "report": True, "clear": False, "idToken": TOKEN},
        "DataTransfer": {"vendorId": "CPMS-SIM", "messageId": "echo", "data": "ping"},
        "DeleteCertificate": {"certificateHashData": OTHER_HASH_DATA},
        "GetBaseReport": {"requestId": 1, "reportBase": "FullInventory"},
        "GetChargingProfiles": {
            "requestId": 2,
            "chargingProfile": {"chargingProfilePurpose": "TxDefaultProfile"},
        },
        "GetCompositeSchedule": {"duration": 3600, "evseId": 1},
        "GetDisplayMessages": {"requestId": 3},
        "GetInstalledCertificateIds": {},
        "GetLocalListVersion": {},
        "GetLog": {"log": {"remoteLocation": f"{HTTP}/logs/"}, "logType": "SecurityLog", "requestId": 4},
        "GetMonitoringReport": {"requestId": 5},
        "GetReport": {"requestId": 6, "componentVariable": [{"component": {"name": "OCPPCommCtrlr"}}]},
        "GetTransactionStatus": {},
        "GetVariables": {"getVariableData": [_variable("OCPPCommCtrlr", "HeartbeatInterval")]},
        "InstallCertificate": {"certificateType": "CSMSRootCertificate", "certificate": ROOT_PEM},
        "PublishFirmware": {"location": f"{HTTP}/firmware.bin", "checksum": FIRMWARE_MD5, "requestId": 8},
        "RequestStartTransaction": {"idToken": TOKEN, "remoteStartId": 1, "evseId": 1},
        "RequestStopTransaction": {"transactionId": "no-such-transaction"},
        "ReserveNow": {"id": 3, "expiryDateTime": FUTURE, "idToken": TOKEN, "evseId": 1},
        "Reset": {"type": "Immediate"},
        "SendLocalList": {
            "versionNumber": 1,
            "updateType": "Full",
            "localAuthorizationList": [{"idToken": TOKEN, "idTokenInfo": {"status": "Accepted"}}],
        },
        "SetChargingProfile": {
            "evseId": 1,
            "chargingProfile": {
                "id": 1,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": [
                    {
                        "id": 1,
                        "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
                    }
                ],
            },
        },
        "SetDisplayMessage": {
            "message": {
                "id": 1,
                "priority": "NormalCycle",
                "message": {"format": "UTF8", "content": "Welcome"},
            }
        },
        "SetMonitoringBase": {"monitoringBase": "All"},
        "SetMonitoringLevel": {"severity": 5},
        "SetNetworkProfile": {
            "configurationSlot": 1,
            "connectionData": {
                "ocppVersion": "OCPP20",
                "ocppTransport": "JSON",
                "ocppCsmsUrl": "wss://csms.example/ocpp",
                "messageTimeout": 30,
                "securityProfile": 1,
                "ocppInterface": "Wired0",
            },
        },
        "SetVariableMonitoring": {
            "setMonitoringData": [
                {
                    "value": 600,
                    "type": "UpperThreshold",
                    "severity": 5,
                    **_variable("OCPPCommCtrlr", "HeartbeatInterval"),
                }
            ]
        },
        "SetVariables": {
            "setVariableData": [_variable("OCPPCommCtrlr", "HeartbeatInterval", attributeValue="120")]
        },
        "TriggerMessage": {"requestedMessage": "Heartbeat"},
        "UnlockConnector": {"evseId": 1, "connectorId": 1},
        "UnpublishFirmware": {"checksum": FIRMWARE_MD5},
        "UpdateFirmware": {
            "requestId": 10,
            "firmware": {"location": f"{HTTP}/firmware.bin", "retrieveDateTime": PAST},
        },
    },
}

# What the charger sends after answering (the action, and what its payload holds), where it sends anything.
FOLLOW_UPS: dict[str, dict[str, tuple[str, dict]]] = {
    "1.6": {
        "ChangeAvailability": ("StatusNotification", {"connectorId": 1, "status": "Unavailable"}),
        "ExtendedTriggerMessage": ("LogStatusNotification", {"status": "Idle"}),
        "GetDiagnostics": ("DiagnosticsStatusNotification", {"status": "Uploaded"}),
        "GetLog": ("LogStatusNotification", {"status": "Uploaded", "requestId": 7}),
        "RemoteStartTransaction": ("StartTransaction", {"connectorId": 1, "idTag": "REMOTE-1"}),
        "ReserveNow": ("StatusNotification", {"connectorId": 1, "status": "Reserved"}),
        "SignedUpdateFirmware": ("SignedFirmwareStatusNotification", {"status": "Installed", "requestId": 5}),
        "TriggerMessage": ("Heartbeat", {}),
        "UpdateFirmware": ("FirmwareStatusNotification", {"status": "Installed"}),
    },
    "2.0.1": {
        "ChangeAvailability": ("StatusNotification", {"evseId": 1, "connectorStatus": "Unavailable"}),
        "CustomerInformation": ("NotifyCustomerInformation", {"requestId": 9, "seqNo": 0}),
        "GetBaseReport": ("NotifyReport", {"requestId": 1}),
        "GetLog": ("LogStatusNotification", {"status": "Uploaded", "requestId": 4}),
        "GetReport": ("NotifyReport", {"requestId": 6}),
        "PublishFirmware": ("PublishFirmwareStatusNotification", {"status": "Published", "requestId": 8}),
        "RequestStartTransaction": ("TransactionEvent", {"eventType": "Started"}),
        "ReserveNow": ("StatusNotification", {"evseId": 1, "connectorStatus": "Reserved"}),
        "TriggerMessage": ("Heartbeat", {}),
        "UpdateFirmware": ("FirmwareStatusNotification", {"status": "Installed", "requestId": 10}),
    },
}


def _materialize(value, base: str):
    """`value` with every HTTP placeholder replaced by `base`."""
    if isinstance(value, str):
        return value.replace(HTTP, base)
    if isinstance(value, dict):
        return {key: _materialize(item, base) for key, item in value.items()}
    if isinstance(value, list):
        return [_materialize(item, base) for item in value]
    return value


# --- a local HTTP server for firmware downloads and log uploads ------------------------------------------


@dataclass
class Upload:
    path: str
    content_type: str
    body: bytes


@dataclass
class HttpStub:
    """GET /firmware.bin serves FIRMWARE (anything else: 404). PUT under /logs/ is recorded (201); under
    /denied/ answered 403, elsewhere 500."""

    base: str = ""
    uploads: list[Upload] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)


def _handler(stub: HttpStub):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            stub.downloads.append(self.path)
            if self.path != "/firmware.bin":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(FIRMWARE)))
            self.end_headers()
            self.wfile.write(FIRMWARE)

        def do_PUT(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path.startswith("/logs/"):
                stub.uploads.append(Upload(self.path, self.headers["Content-Type"], body))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_error(403 if self.path.startswith("/denied/") else 500)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture(scope="module")
def http_stub():
    stub = HttpStub()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    stub.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stub
    server.shutdown()
    server.server_close()


# --- the stand-in CSMS ---------------------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class FrameCsms:
    """Answers each call of the charger with a minimal valid response after checking it against the
    request schema (a failure is recorded in `invalid` and answered with a CALLERROR), and sends calls of
    its own, returning the charger's answer frame as received."""

    def __init__(self, version: str):
        self.version = version
        self.frames: list[tuple[str, dict]] = []
        self.invalid: list[str] = []
        self.connection = None
        self._answers: dict[str, asyncio.Future] = {}
        self._new_frame = asyncio.Event()
        self._transaction_ids = itertools.count(5001)

    def _response(self, action: str, payload: dict) -> dict:
        if action == "BootNotification":
            return {"currentTime": _now(), "interval": 300, "status": "Accepted"}
        if action == "Heartbeat":
            return {"currentTime": _now()}
        if action == "Authorize":
            key = "idTagInfo" if self.version == "1.6" else "idTokenInfo"
            return {key: {"status": "Accepted"}}
        if action == "StartTransaction":
            return {"transactionId": next(self._transaction_ids), "idTagInfo": {"status": "Accepted"}}
        if action == "TransactionEvent" and "idToken" in payload:
            return {"idTokenInfo": {"status": "Accepted"}}
        if action == "SignCertificate":
            return {"status": "Accepted"}
        return {}

    async def handle(self, connection) -> None:
        self.connection = connection
        async for raw in connection:
            message = json.loads(raw)
            if message[0] == 2:
                _, unique_id, action, payload = message
                try:
                    schemas.validate(self.version, schemas.request_schema(self.version, action), payload)
                except OcppError as exc:
                    self.invalid.append(f"{action}: {exc}")
                    await connection.send(json.dumps([4, unique_id, "FormatViolation", str(exc), {}]))
                    continue
                self.frames.append((action, payload))
                self._new_frame.set()
                await connection.send(json.dumps([3, unique_id, self._response(action, payload)]))
            else:
                future = self._answers.pop(message[1], None)
                if future is not None:
                    future.set_result(message)

    async def call(self, action: str, payload: dict) -> dict:
        """Send a call; the CALLRESULT payload (fails on a CALLERROR or an invalid answer)."""
        frame = await self.call_frame(action, payload)
        assert frame[0] == 3, f"{action} answered with a CALLERROR: {frame}"
        schemas.validate(self.version, schemas.response_schema(action), frame[2])
        return frame[2]

    async def call_frame(self, action: str, payload: dict) -> list:
        unique_id = str(uuid.uuid4())
        answer = asyncio.get_running_loop().create_future()
        self._answers[unique_id] = answer
        await self.connection.send(json.dumps([2, unique_id, action, payload]))
        async with asyncio.timeout(WAIT_S):
            return await answer

    def payloads(self, action: str, **where) -> list[dict]:
        return [p for a, p in self.frames if a == action and all(p.get(k) == v for k, v in where.items())]

    async def wait_for(self, action: str, *, count: int = 1, **where) -> list[dict]:
        """The payloads of `action` holding `where`, once there are `count` of them (bounded wait)."""
        async with asyncio.timeout(WAIT_S):
            while True:
                found = self.payloads(action, **where)
                if len(found) >= count:
                    return found
                self._new_frame.clear()
                await self._new_frame.wait()


@contextlib.asynccontextmanager
async def connected(version: str, **overrides):
    """A booted simulated charger (2 connectors) connected to a FrameCsms."""
    csms = FrameCsms(version)
    async with serve(csms.handle, "127.0.0.1", 0, subprotocols=[SUBPROTOCOLS[version]]) as server:
        port = server.sockets[0].getsockname()[1]
        options = {
            "url": f"ws://127.0.0.1:{port}/ocpp",
            "identity": IDENTITY,
            "protocol": version,
            "connectors": 2,
            "meter_interval_s": 0.05,
            "meter_samples": 2,
            "speedup": 100,
            "duration_s": 60,
            "response_timeout_s": WAIT_S,
            "max_reboots": 1,
        }
        charger = SimulatedCharger(ChargerConfig(**{**options, **overrides}))
        task = asyncio.create_task(charger.run())
        try:
            # Booted: one status per connector (1.6 also the station's, connector 0).
            await csms.wait_for("StatusNotification", count=3 if version == "1.6" else 2)
            yield csms, charger
        finally:
            await cancel_and_wait({task})
    assert csms.invalid == []
    assert (charger.result.call_errors, charger.result.errors) == ([], [])


def _run(scenario, version: str, **overrides):
    async def main():
        async with connected(version, **overrides) as (csms, charger):
            return await scenario(csms, charger)

    return asyncio.run(main())


# --- every action ---------------------------------------------------------------------------------------


def test_examples_cover_every_csms_action_and_are_valid():
    assert set(EXAMPLES["1.6"]) == actions.V16
    assert set(EXAMPLES["2.0.1"]) == actions.V201
    for version, examples in EXAMPLES.items():
        for action, payload in examples.items():
            request = _materialize(payload, "http://127.0.0.1:9")
            schemas.validate(version, schemas.request_schema(version, action), request)
        assert set(FOLLOW_UPS[version]) <= set(examples)


CASES = [(version, action) for version, examples in EXAMPLES.items() for action in sorted(examples)]


@pytest.mark.parametrize(("version", "action"), CASES, ids=[f"{v}-{a}" for v, a in CASES])
def test_answers_every_csms_action_validly(version, action, http_stub):
    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        payload = _materialize(EXAMPLES[version][action], http_stub.base)
        # A CALLRESULT matching the response schema (FrameCsms.call fails on anything else).
        await csms.call(action, payload)
        follow_up = FOLLOW_UPS[version].get(action)
        if follow_up is not None:
            follow_action, where = follow_up
            await csms.wait_for(follow_action, **where)
        if action == "Reset":
            await csms.wait_for("BootNotification", count=2)

    _run(scenario, version)


# --- firmware ------------------------------------------------------------------------------------------

FIRMWARE_CASES = {
    "1.6-UpdateFirmware": (
        "1.6",
        "UpdateFirmware",
        "FirmwareStatusNotification",
        ["Downloading", "Downloaded", "Installing", "Installed"],
        None,
    ),
    "1.6-SignedUpdateFirmware": (
        "1.6",
        "SignedUpdateFirmware",
        "SignedFirmwareStatusNotification",
        ["Downloading", "Downloaded", "SignatureVerified", "Installing", "Installed"],
        5,
    ),
    "2.0.1-UpdateFirmware": (
        "2.0.1",
        "UpdateFirmware",
        "FirmwareStatusNotification",
        ["Downloading", "Downloaded", "Installing", "Installed"],
        10,
    ),
}


@pytest.mark.parametrize("case", FIRMWARE_CASES)
def test_firmware_is_downloaded_then_installed(case, http_stub):
    version, action, notification, statuses, request_id = FIRMWARE_CASES[case]

    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        answer = await csms.call(action, _materialize(EXAMPLES[version][action], http_stub.base))
        await csms.wait_for(notification, status="Installed")
        return answer, csms.payloads(notification), charger.result.transfers

    downloads_before = len(http_stub.downloads)
    answer, sent, transfers = _run(scenario, version)
    assert answer == ({} if action == "UpdateFirmware" and version == "1.6" else {"status": "Accepted"})
    assert [p["status"] for p in sent] == statuses
    assert {p.get("requestId") for p in sent} == {request_id}
    assert http_stub.downloads[downloads_before:] == ["/firmware.bin"]
    [transfer] = transfers
    assert (transfer.method, transfer.url, transfer.status, transfer.http_status) == (
        "GET",
        f"{http_stub.base}/firmware.bin",
        "done",
        200,
    )
    assert transfer.size_bytes == len(FIRMWARE)
    assert transfer.sha256 == hashlib.sha256(FIRMWARE).hexdigest()
    assert transfer.request_id == request_id


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_a_failed_download_is_reported(version, http_stub):
    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        payload = EXAMPLES[version]["UpdateFirmware"]
        if version == "1.6":
            payload = {**payload, "location": f"{http_stub.base}/missing.bin"}
        else:
            payload = {
                **payload,
                "firmware": {**payload["firmware"], "location": f"{http_stub.base}/missing.bin"},
            }
        await csms.call("UpdateFirmware", payload)
        sent = await csms.wait_for("FirmwareStatusNotification", status="DownloadFailed")
        # Afterwards a triggered notification says Idle: no update under way.
        await csms.call("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
        await csms.wait_for("FirmwareStatusNotification", status="Idle")
        return (
            [p["status"] for p in csms.payloads("FirmwareStatusNotification")],
            sent,
            charger.result.transfers,
        )

    statuses, _, transfers = _run(scenario, version)
    assert statuses == ["Downloading", "DownloadFailed", "Idle"]
    [transfer] = transfers
    assert (transfer.status, transfer.http_status, transfer.size_bytes) == ("failed", 404, 0)


# --- diagnostics and logs ------------------------------------------------------------------------------

UPLOAD_CASES = {
    "1.6-GetDiagnostics": ("1.6", "GetDiagnostics", "DiagnosticsStatusNotification", "fileName", None),
    "1.6-GetLog": ("1.6", "GetLog", "LogStatusNotification", "filename", 7),
    "2.0.1-GetLog": ("2.0.1", "GetLog", "LogStatusNotification", "filename", 4),
}


@pytest.mark.parametrize("case", UPLOAD_CASES)
def test_logs_are_uploaded_by_http_put(case, http_stub):
    version, action, notification, name_field, request_id = UPLOAD_CASES[case]

    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        answer = await csms.call(action, _materialize(EXAMPLES[version][action], http_stub.base))
        await csms.wait_for(notification, status="Uploaded")
        return answer, csms.payloads(notification), charger.result.transfers

    answer, sent, transfers = _run(scenario, version)
    file_name = answer[name_field]
    assert file_name.startswith(f"{IDENTITY}-") and file_name.endswith(".log")
    assert [(p["status"], p.get("requestId")) for p in sent] == [
        ("Uploading", request_id),
        ("Uploaded", request_id),
    ]
    [upload] = [u for u in http_stub.uploads if u.path == f"/logs/{file_name}"]
    assert upload.content_type == "text/plain"
    lines = upload.body.decode().splitlines()
    assert 4 <= len(lines) <= 10
    assert f"{IDENTITY}: CPMS Simulator" in lines[0]
    [transfer] = transfers
    assert (transfer.method, transfer.url, transfer.status, transfer.http_status) == (
        "PUT",
        f"{http_stub.base}/logs/{file_name}",
        "done",
        201,
    )
    assert transfer.size_bytes == len(upload.body)


@pytest.mark.parametrize(
    ("version", "action", "path", "notification", "failure"),
    [
        ("1.6", "GetDiagnostics", "/broken", "DiagnosticsStatusNotification", "UploadFailed"),
        ("1.6", "GetLog", "/broken", "LogStatusNotification", "UploadFailure"),
        ("2.0.1", "GetLog", "/denied/", "LogStatusNotification", "PermissionDenied"),
    ],
)
def test_a_refused_upload_is_reported(version, action, path, notification, failure, http_stub):
    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        payload = EXAMPLES[version][action]
        if action == "GetDiagnostics":
            payload = {**payload, "location": f"{http_stub.base}{path}"}
        else:
            payload = {**payload, "log": {"remoteLocation": f"{http_stub.base}{path}"}}
        await csms.call(action, payload)
        await csms.wait_for(notification, status=failure)
        return [p["status"] for p in csms.payloads(notification)], charger.result.transfers

    statuses, transfers = _run(scenario, version)
    assert statuses == ["Uploading", failure]
    assert [t.status for t in transfers] == ["failed"]


# --- reservations ----------------------------------------------------------------------------------------


def _reserve(version: str, reservation_id: int, id_tag: str, connector_id: int | None = 1) -> dict:
    if version == "1.6":
        return {
            "connectorId": connector_id,
            "expiryDate": FUTURE,
            "idTag": id_tag,
            "reservationId": reservation_id,
        }
    payload = {
        "id": reservation_id,
        "expiryDateTime": FUTURE,
        "idToken": {"idToken": id_tag, "type": "ISO14443"},
    }
    return payload if connector_id is None else {**payload, "evseId": connector_id}


def _remote_start(version: str, id_tag: str, connector_id: int = 1) -> tuple[str, dict]:
    if version == "1.6":
        return "RemoteStartTransaction", {"idTag": id_tag, "connectorId": connector_id}
    token = {"idToken": id_tag, "type": "ISO14443"}
    return "RequestStartTransaction", {"idToken": token, "remoteStartId": 77, "evseId": connector_id}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_a_reservation_holds_the_connector_for_its_token(version):
    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        statuses = {
            "first": (await csms.call("ReserveNow", _reserve(version, 1, "RES-1")))["status"],
            "second": (await csms.call("ReserveNow", _reserve(version, 2, "RES-2")))["status"],
        }
        if version == "1.6":
            reserved = await csms.wait_for("StatusNotification", connectorId=1, status="Reserved")
        else:
            reserved = await csms.wait_for("StatusNotification", evseId=1, connectorStatus="Reserved")
        statuses["other token"] = (await csms.call(*_remote_start(version, "OTHER-TAG")))["status"]
        statuses["cancel unknown"] = (await csms.call("CancelReservation", {"reservationId": 99}))["status"]
        statuses["its token"] = (await csms.call(*_remote_start(version, "RES-1")))["status"]
        if version == "1.6":
            [start] = await csms.wait_for("StartTransaction")
        else:
            [start] = await csms.wait_for("TransactionEvent", eventType="Started")
        return statuses, len(reserved), start

    statuses, reserved, start = _run(scenario, version, meter_samples=50, meter_interval_s=0.2)
    assert statuses == {
        "first": "Accepted",
        "second": "Occupied",
        "other token": "Rejected",
        "cancel unknown": "Rejected",
        "its token": "Accepted",
    }
    assert reserved == 1
    assert start["reservationId"] == 1
    assert start["idTag" if version == "1.6" else "idToken"] in (
        "RES-1",
        {"idToken": "RES-1", "type": "ISO14443"},
    )


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_a_cancelled_reservation_frees_the_connector(version):
    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        # 2.0.1 without evseId: any EVSE; the simulator holds the first free one.
        connector_id = 2 if version == "1.6" else None
        assert (await csms.call("ReserveNow", _reserve(version, 5, "RES-5", connector_id)))[
            "status"
        ] == "Accepted"
        cancelled = await csms.call("CancelReservation", {"reservationId": 5})
        if version == "1.6":
            await csms.wait_for("StatusNotification", connectorId=2, status="Available", count=2)
            return cancelled, [p["status"] for p in csms.payloads("StatusNotification", connectorId=2)]
        await csms.wait_for("StatusNotification", evseId=1, connectorStatus="Available", count=2)
        return cancelled, [p["connectorStatus"] for p in csms.payloads("StatusNotification", evseId=1)]

    cancelled, statuses = _run(scenario, version)
    assert cancelled == {"status": "Accepted"}
    assert statuses == ["Available", "Reserved", "Available"]


def test_an_expired_reservation_is_reported_v201():
    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.3)).isoformat()
        payload = {**_reserve("2.0.1", 6, "RES-6"), "expiryDateTime": expiry}
        assert (await csms.call("ReserveNow", payload))["status"] == "Accepted"
        [update] = await csms.wait_for("ReservationStatusUpdate")
        await csms.wait_for("StatusNotification", evseId=1, connectorStatus="Available", count=2)
        return update, [p["connectorStatus"] for p in csms.payloads("StatusNotification", evseId=1)]

    update, statuses = _run(scenario, "2.0.1")
    assert update == {"reservationId": 6, "reservationUpdateStatus": "Expired"}
    assert statuses == ["Available", "Reserved", "Available"]


# --- local authorization list ----------------------------------------------------------------------------


def _local_list(version: str, number: int, update_type: str, entries: dict[str, str | None]) -> dict:
    if version == "1.6":
        items = [{"idTag": tag} | ({"idTagInfo": {"status": s}} if s else {}) for tag, s in entries.items()]
        return {"listVersion": number, "updateType": update_type, "localAuthorizationList": items}
    items = [
        {"idToken": {"idToken": tag, "type": "ISO14443"}} | ({"idTokenInfo": {"status": s}} if s else {})
        for tag, s in entries.items()
    ]
    return {"versionNumber": number, "updateType": update_type, "localAuthorizationList": items}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_the_local_list_keeps_its_version(version):
    version_key = "listVersion" if version == "1.6" else "versionNumber"

    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        answers = [(await csms.call("GetLocalListVersion", {}))[version_key]]
        for payload in (
            _local_list(version, 5, "Full", {"TAG-A": "Accepted", "TAG-B": "Blocked"}),
            _local_list(version, 5, "Differential", {"TAG-C": "Accepted"}),
            _local_list(version, 6, "Differential", {"TAG-A": None, "TAG-C": "Accepted"}),
        ):
            answers.append((await csms.call("SendLocalList", payload))["status"])
            answers.append((await csms.call("GetLocalListVersion", {}))[version_key])
        return answers, sorted(charger.protocol_state[version].local_list.entries)

    answers, entries = _run(scenario, version)
    assert answers == [0, "Accepted", 5, "VersionMismatch", 5, "Accepted", 6]
    assert entries == ["TAG-B", "TAG-C"]


# --- smart charging ------------------------------------------------------------------------------------------


def _profile(
    version: str, profile_id: int, evse_id: int, purpose: str, periods: list[tuple[int, float]]
) -> dict:
    schedule = {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": start, "limit": limit} for start, limit in periods],
    }
    if version == "1.6":
        return {
            "connectorId": evse_id,
            "csChargingProfiles": {
                "chargingProfileId": profile_id,
                "stackLevel": 0,
                "chargingProfilePurpose": purpose,
                "chargingProfileKind": "Relative",
                "chargingSchedule": schedule,
            },
        }
    return {
        "evseId": evse_id,
        "chargingProfile": {
            "id": profile_id,
            "stackLevel": 0,
            "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Relative",
            "chargingSchedule": [{"id": 1, **schedule}],
        },
    }


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_the_composite_schedule_comes_from_the_stored_profiles(version):
    station_max = "ChargePointMaxProfile" if version == "1.6" else "ChargingStationMaxProfile"
    evse = "connectorId" if version == "1.6" else "evseId"
    clear_by_id = {"id": 11} if version == "1.6" else {"chargingProfileId": 11}

    def periods(answer: dict) -> list[tuple[int, float]]:
        schedule = answer["chargingSchedule" if version == "1.6" else "schedule"]
        return [(p["startPeriod"], p["limit"]) for p in schedule["chargingSchedulePeriod"]]

    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        composite = {evse: 1, "duration": 7200}
        results = {"none": await csms.call("GetCompositeSchedule", composite)}
        results["tx default"] = await csms.call(
            "SetChargingProfile", _profile(version, 11, 1, "TxDefaultProfile", [(0, 16), (3600, 10)])
        )
        results["station max"] = await csms.call(
            "SetChargingProfile", _profile(version, 12, 0, station_max, [(0, 12)])
        )
        results["tx without transaction"] = await csms.call(
            "SetChargingProfile", _profile(version, 13, 1, "TxProfile", [(0, 6)])
        )
        results["max on a connector"] = await csms.call(
            "SetChargingProfile", _profile(version, 14, 1, station_max, [(0, 6)])
        )
        results["amps"] = await csms.call("GetCompositeSchedule", {**composite, "chargingRateUnit": "A"})
        results["watts"] = await csms.call("GetCompositeSchedule", {**composite, "chargingRateUnit": "W"})
        results["clear"] = await csms.call("ClearChargingProfile", clear_by_id)
        results["clear again"] = await csms.call("ClearChargingProfile", clear_by_id)
        results["after clear"] = await csms.call("GetCompositeSchedule", composite)
        results["unknown evse"] = await csms.call("GetCompositeSchedule", {**composite, evse: 9})
        return results

    results = _run(scenario, version)
    statuses = {name: answer["status"] for name, answer in results.items()}
    assert statuses == {
        "none": "Rejected",
        "tx default": "Accepted",
        "station max": "Accepted",
        "tx without transaction": "Rejected",
        "max on a connector": "Rejected",
        "amps": "Accepted",
        "watts": "Accepted",
        "clear": "Accepted",
        "clear again": "Unknown",
        "after clear": "Accepted",
        "unknown evse": "Rejected",
    }
    # The lower of the station maximum (12 A) and the default profile (16 A, then 10 A after an hour).
    assert periods(results["amps"]) == [(0, 12), (3600, 10)]
    # 230 V x 3 phases.
    assert periods(results["watts"]) == [(0, 8280), (3600, 6900)]
    assert periods(results["after clear"]) == [(0, 12)]
    schedule = results["amps"]["chargingSchedule" if version == "1.6" else "schedule"]
    assert (schedule["duration"], schedule["chargingRateUnit"]) == (7200, "A")


def test_charging_profiles_are_reported_as_sent_v201():
    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        first = _profile("2.0.1", 21, 1, "TxDefaultProfile", [(0, 16)])
        second = _profile("2.0.1", 22, 0, "ChargingStationMaxProfile", [(0, 32)])
        for payload in (first, second):
            await csms.call("SetChargingProfile", payload)
        answer = await csms.call("GetChargingProfiles", {"requestId": 31, "chargingProfile": {}})
        reports = await csms.wait_for("ReportChargingProfiles", count=2)
        nothing = await csms.call(
            "GetChargingProfiles", {"requestId": 32, "chargingProfile": {"chargingLimitSource": ["EMS"]}}
        )
        return answer, reports, nothing, [first, second]

    answer, reports, nothing, sent = _run(scenario, "2.0.1")
    assert answer == {"status": "Accepted"}
    assert nothing == {"status": "NoProfiles"}
    assert [(r["requestId"], r["evseId"], r["chargingLimitSource"], r["tbc"]) for r in reports] == [
        (31, 0, "CSO", True),
        (31, 1, "CSO", False),
    ]
    assert [r["chargingProfile"] for r in reports] == [
        [sent[1]["chargingProfile"]],
        [sent[0]["chargingProfile"]],
    ]


# --- certificates ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_installed_certificates_are_listed_and_deleted(version):
    root_type = "CentralSystemRootCertificate" if version == "1.6" else "CSMSRootCertificate"
    query = {"certificateType": root_type if version == "1.6" else [root_type]}

    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        return [
            await csms.call(
                "InstallCertificate", {"certificateType": root_type, "certificate": "not a certificate"}
            ),
            await csms.call("InstallCertificate", {"certificateType": root_type, "certificate": ROOT_PEM}),
            await csms.call("GetInstalledCertificateIds", query),
            await csms.call("DeleteCertificate", {"certificateHashData": OTHER_HASH_DATA}),
            await csms.call("DeleteCertificate", {"certificateHashData": ROOT_HASH_DATA}),
            await csms.call("GetInstalledCertificateIds", query),
        ]

    rejected, installed, listed, not_found, deleted, empty = _run(scenario, version)
    assert [a["status"] for a in (rejected, installed, not_found, deleted, empty)] == [
        "Rejected",
        "Accepted",
        "NotFound",
        "Accepted",
        "NotFound",
    ]
    if version == "1.6":
        assert listed == {"status": "Accepted", "certificateHashData": [ROOT_HASH_DATA]}
    else:
        assert listed == {
            "status": "Accepted",
            "certificateHashDataChain": [
                {"certificateType": root_type, "certificateHashData": ROOT_HASH_DATA}
            ],
        }


# --- 2.0.1 device model, monitoring, display messages, firmware publication ----------------------------------


def test_reports_come_in_parts_v201(monkeypatch):
    monkeypatch.setattr(device_model_v201, "REPORT_ITEMS_PER_MESSAGE", 5)

    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        answer = await csms.call("GetBaseReport", {"requestId": 41, "reportBase": "FullInventory"})
        await csms.wait_for("NotifyReport", tbc=False)
        empty = await csms.call("GetReport", {"requestId": 42, "componentCriteria": ["Problem"]})
        return answer, csms.payloads("NotifyReport"), empty, len(charger.protocol_state["2.0.1"].variables)

    answer, reports, empty, variables = _run(scenario, "2.0.1")
    assert answer == {"status": "Accepted"}
    assert empty == {"status": "EmptyResultSet"}
    parts = -(-variables // 5)
    assert [(r["requestId"], r["seqNo"], r["tbc"]) for r in reports] == [
        (41, n, n < parts - 1) for n in range(parts)
    ]
    assert sum(len(r["reportData"]) for r in reports) == variables


def test_monitors_are_kept_and_reported_v201():
    heartbeat = _variable("OCPPCommCtrlr", "HeartbeatInterval")
    monitor = {"value": 600, "type": "UpperThreshold", "severity": 5, **heartbeat}

    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        set_answer = await csms.call(
            "SetVariableMonitoring",
            {
                "setMonitoringData": [
                    monitor,
                    monitor,
                    {**monitor, "type": "Delta", "value": 1},
                    {**monitor, **_variable("ChargingStation", "Model")},
                    {**monitor, **_variable("OCPPCommCtrlr", "NoSuchVariable")},
                ]
            },
        )
        report = await csms.call(
            "GetMonitoringReport", {"requestId": 51, "monitoringCriteria": ["DeltaMonitoring"]}
        )
        [notify] = await csms.wait_for("NotifyMonitoringReport")
        level = await csms.call("SetMonitoringLevel", {"severity": 3})
        cleared = await csms.call("ClearVariableMonitoring", {"id": [2, 99]})
        base = await csms.call("SetMonitoringBase", {"monitoringBase": "HardWiredOnly"})
        empty = await csms.call("GetMonitoringReport", {"requestId": 52})
        got = await csms.call(
            "GetVariables",
            {
                "getVariableData": [
                    _variable("MonitoringCtrlr", "ActiveMonitoringLevel"),
                    _variable("MonitoringCtrlr", "ActiveMonitoringBase"),
                ]
            },
        )
        return set_answer, report, notify, level, cleared, base, empty, got

    set_answer, report, notify, level, cleared, base, empty, got = _run(scenario, "2.0.1")
    assert [(r["status"], r.get("id")) for r in set_answer["setMonitoringResult"]] == [
        ("Accepted", 1),
        ("Duplicate", None),
        ("Accepted", 2),
        ("UnsupportedMonitorType", None),
        ("UnknownVariable", None),
    ]
    assert report == {"status": "Accepted"}
    assert notify["monitor"] == [
        {
            **heartbeat,
            "variableMonitoring": [
                {"id": 2, "transaction": False, "value": 1, "type": "Delta", "severity": 5}
            ],
        }
    ]
    assert (notify["requestId"], notify["seqNo"], notify["tbc"]) == (51, 0, False)
    assert level == base == {"status": "Accepted"}
    assert cleared["clearMonitoringResult"] == [
        {"status": "Accepted", "id": 2},
        {"status": "NotFound", "id": 99},
    ]
    assert empty == {"status": "EmptyResultSet"}
    assert [r["attributeValue"] for r in got["getVariableResult"]] == ["3", "HardWiredOnly"]


def test_display_messages_are_kept_v201():
    message = {
        "id": 7,
        "priority": "InFront",
        "message": {"format": "UTF8", "content": "Tariff: 0.30 EUR/kWh"},
    }

    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        answers = [
            await csms.call("SetDisplayMessage", {"message": message}),
            await csms.call("SetDisplayMessage", {"message": {**message, "id": 8, "transactionId": "nope"}}),
            await csms.call("GetDisplayMessages", {"requestId": 61, "priority": "InFront"}),
        ]
        [notify] = await csms.wait_for("NotifyDisplayMessages")
        answers.append(await csms.call("ClearDisplayMessage", {"id": 7}))
        answers.append(await csms.call("GetDisplayMessages", {"requestId": 62}))
        return answers, notify

    answers, notify = _run(scenario, "2.0.1")
    assert [a["status"] for a in answers] == [
        "Accepted",
        "UnknownTransaction",
        "Accepted",
        "Accepted",
        "Unknown",
    ]
    assert notify == {"requestId": 61, "tbc": False, "messageInfo": [message]}


def test_published_firmware_can_be_unpublished_v201(http_stub):
    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        publish = {
            "location": f"{http_stub.base}/firmware.bin",
            "checksum": FIRMWARE_MD5.upper(),
            "requestId": 71,
        }
        answers = [await csms.call("PublishFirmware", publish)]
        await csms.wait_for("PublishFirmwareStatusNotification", status="Published")
        answers.append(await csms.call("PublishFirmware", {**publish, "checksum": "0" * 32, "requestId": 72}))
        await csms.wait_for("PublishFirmwareStatusNotification", status="InvalidChecksum")
        answers.append(await csms.call("UnpublishFirmware", {"checksum": FIRMWARE_MD5}))
        answers.append(await csms.call("UnpublishFirmware", {"checksum": FIRMWARE_MD5}))
        return answers, csms.payloads("PublishFirmwareStatusNotification")

    answers, sent = _run(scenario, "2.0.1")
    assert [a["status"] for a in answers] == ["Accepted", "Accepted", "Unpublished", "NoFirmware"]
    assert [(p["status"], p["requestId"]) for p in sent] == [
        ("Downloading", 71),
        ("Downloaded", 71),
        ("ChecksumVerified", 71),
        ("Published", 71),
        ("Downloading", 72),
        ("Downloaded", 72),
        ("InvalidChecksum", 72),
    ]
    assert sent[3]["location"] == ["http://sim-cmd-1.local/firmware/firmware.bin"]


def test_customer_information_is_reported_v201():
    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        invalid = await csms.call("CustomerInformation", {"requestId": 81, "report": True, "clear": False})
        await csms.call("SendLocalList", _local_list("2.0.1", 1, "Full", {"TAG-1": "Accepted"}))
        accepted = await csms.call("CustomerInformation", EXAMPLES["2.0.1"]["CustomerInformation"])
        [notify] = await csms.wait_for("NotifyCustomerInformation")
        return invalid, accepted, notify

    invalid, accepted, notify = _run(scenario, "2.0.1")
    assert (invalid, accepted) == ({"status": "Invalid"}, {"status": "Accepted"})
    assert (notify["requestId"], notify["seqNo"], notify["tbc"]) == (9, 0, False)
    assert "0 session(s) on this station; in the local authorization list." in notify["data"]


# --- triggered status notifications ----------------------------------------------------------------------


def test_triggered_job_statuses_are_idle_when_nothing_runs_v16():
    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        answers = [
            await csms.call("TriggerMessage", {"requestedMessage": "DiagnosticsStatusNotification"}),
            await csms.call("ExtendedTriggerMessage", {"requestedMessage": "FirmwareStatusNotification"}),
            await csms.call("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}),
            await csms.call(
                "ExtendedTriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 9}
            ),
        ]
        diagnostics = await csms.wait_for("DiagnosticsStatusNotification")
        firmware = await csms.wait_for("SignedFirmwareStatusNotification")
        return answers, diagnostics, firmware

    answers, diagnostics, firmware = _run(scenario, "1.6")
    assert [a["status"] for a in answers] == ["Accepted", "Accepted", "Accepted", "Rejected"]
    assert diagnostics == [{"status": "Idle"}]
    assert firmware == [{"status": "Idle"}]
