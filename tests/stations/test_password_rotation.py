"""docs/reliability.md case 5: rotating a charger's Basic-auth password (1.6 AuthorizationKey, 2.0.1 / 2.1
SecurityCtrlr.BasicAuthPassword). After the charger answers Accepted the old password stops working and the
new one works; after Rejected the old one keeps working; a crash between the charger's answer and our commit
locks nobody out. Handshakes go through the real consumer (channels WebsocketCommunicator)."""

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.layers import channel_layers
from django.db import connections, transaction

from cpms.errors import ValidationFailed
from cpms.ocpp_wire.calls import Call
from cpms.ocpp_wire.redaction import request_redacted
from sessions.services.command_answers import answer_hook
from stations.enums import CommandStatus
from stations.models import ChargingStation, Command
from stations.services.commands import command_claim, command_create, command_finish, command_send
from stations.services.credentials import station_password_set
from tests.commands import TIMEOUT, CallError
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory
from tests.ocpp.test_consumer import _fresh_throttle, basic, communicator, handshake  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

KEY_16 = "0123456789abcdef0123456789abcdef01234567"  # 20 bytes as 40 hex digits
PASSWORD_201 = "new-Basic-auth-pw-2026"


class V16:
    protocol = "ocpp1.6"
    new_password = KEY_16
    action = "ChangeConfiguration"

    @staticmethod
    def request(password: str) -> dict:
        return {"key": "AuthorizationKey", "value": password}

    @staticmethod
    def answer(status: str) -> dict:
        return {"status": status}


class V201:
    protocol = "ocpp2.0.1"
    new_password = PASSWORD_201
    action = "SetVariables"

    @staticmethod
    def request(password: str) -> dict:
        return {
            "setVariableData": [
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                    "attributeValue": "120",
                },
                {
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                    "attributeValue": password,
                },
            ]
        }

    @staticmethod
    def answer(status: str) -> dict:
        return {
            "setVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                },
                {
                    "attributeStatus": status,
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                },
            ]
        }


class V21(V201):
    protocol = "ocpp2.1"


@pytest.fixture(params=[V16, V201, V21], ids=["1.6", "2.0.1", "2.1"])
def version(request):
    return request.param


@pytest.fixture
def station(version):
    return ChargingStationFactory(identity="CP-ROT", is_connected=True, protocol=version.protocol)


ACCEPTED = ("accepted",)
REFUSED = ("refused", 401)


class Charger:
    """The station's charger connecting with a password through the real consumer. Its handshakes share one
    event loop for the whole test (as the consumer tests' scenarios do): worker threads and their pooled
    database connections then live as long as the test, not one handshake."""

    def __init__(self, version):
        self.version = version
        self.loop = asyncio.new_event_loop()
        # The consumer's database work runs in the loop's default executor: one thread, whose pooled
        # connection is given back when the test ends (a thread that just exits would keep it checked out).
        self.loop.set_default_executor(ThreadPoolExecutor(max_workers=1))

    def outcome(self, password: str | bytes) -> tuple:
        """The handshake's outcome with `password` (bytes: sent as those octets)."""
        if isinstance(password, bytes):
            header = (b"authorization", b"Basic " + base64.b64encode(b"CP-ROT:" + password))
        else:
            header = basic("CP-ROT", password)

        async def scenario():
            comm = communicator("CP-ROT", headers=[header], subprotocols=[self.version.protocol])
            result = await handshake(comm)
            if result[0] == "accepted":
                await comm.disconnect()
            return result

        result = self.loop.run_until_complete(scenario())
        return result[:1] if result[0] == "accepted" else result

    def close(self) -> None:
        self.loop.run_until_complete(self.loop.run_in_executor(None, connections.close_all))
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


@pytest.fixture
def charger(version):
    channel_layers.backends.clear()  # the layer's connections belong to the loop that made them
    charger = Charger(version)
    yield charger
    charger.close()
    channel_layers.backends.clear()


def test_rel_05_accepted_new_password_works_old_one_refused(version, station, charger, fake_charger):
    fake_charger.answers[version.action] = version.answer("Accepted")
    command = command_send(
        station=station, call=Call(version.action, version.request(version.new_password)), requested_by=None
    )
    assert command.status == CommandStatus.ANSWERED
    assert (charger.outcome(version.new_password), charger.outcome(DEFAULT_STATION_PASSWORD)) == (
        ACCEPTED,
        REFUSED,
    )
    station.refresh_from_db()
    assert (station.pending_password_hash, station.pending_password_command_id) == ("", None)


def test_rel_05_rejected_old_password_keeps_working_new_one_refused(version, station, charger, fake_charger):
    fake_charger.answers[version.action] = version.answer("Rejected")
    command = command_send(
        station=station, call=Call(version.action, version.request(version.new_password)), requested_by=None
    )
    assert command.status == CommandStatus.ANSWERED
    assert (charger.outcome(DEFAULT_STATION_PASSWORD), charger.outcome(version.new_password)) == (
        ACCEPTED,
        REFUSED,
    )


def test_rel_05_crash_before_the_answer_is_committed_locks_nobody_out(version, station, charger):
    # The command was recorded and sent; the charger took the new password and answered, but the process
    # died before command_finish committed: no outcome is recorded.
    sent(version, station, version.new_password)
    # Until the new password is confirmed, both work (a charger still on the old one, e.g. it never got the
    # call, is not locked out either).
    assert charger.outcome(DEFAULT_STATION_PASSWORD) == ACCEPTED
    # The charger reconnects with the new one: that confirms it, and the old one stops working.
    assert charger.outcome(version.new_password) == ACCEPTED
    assert charger.outcome(DEFAULT_STATION_PASSWORD) == REFUSED
    assert charger.outcome(version.new_password) == ACCEPTED
    assert Command.objects.get().status == CommandStatus.SENT


def sent(version, station, password: str) -> Command:
    """A rotation command recorded and sent (claimed), its answer not recorded yet."""
    command = command_create(station=station, action=version.action, request=version.request(password))
    assert (
        command_claim(command_id=command.pk, station_id=station.pk, unique_id=f"u-{command.pk}") is not None
    )
    return command


def answered(version, command: Command, status: str) -> None:
    """The charger's answer recorded as the consumer records it: the request masked, the hooks run."""
    assert command_finish(
        command_id=command.pk,
        status=CommandStatus.ANSWERED,
        response=version.answer(status),
        request=request_redacted(command.action, command.request),
        on_answer=answer_hook(version.protocol.removeprefix("ocpp"), command.action),
    )


def test_rel_05_a_late_answer_after_confirmation_changes_nothing(version, station, charger):
    command = sent(version, station, version.new_password)
    assert charger.outcome(version.new_password) == ACCEPTED  # confirmed at the handshake first
    answered(version, command, "Accepted")
    assert (charger.outcome(version.new_password), charger.outcome(DEFAULT_STATION_PASSWORD)) == (
        ACCEPTED,
        REFUSED,
    )


def test_rel_05_a_later_rotation_replaces_one_in_flight(version, station, charger):
    first = sent(version, station, version.new_password)
    second_password = "ab" * 20 if version is V16 else "another-password-42"
    second = sent(version, station, second_password)
    # The first command's Accepted arrives: it no longer names the pending password, so nothing changes.
    answered(version, first, "Accepted")
    assert (charger.outcome(DEFAULT_STATION_PASSWORD), charger.outcome(version.new_password)) == (
        ACCEPTED,
        REFUSED,
    )
    answered(version, second, "Accepted")
    assert (charger.outcome(second_password), charger.outcome(DEFAULT_STATION_PASSWORD)) == (
        ACCEPTED,
        REFUSED,
    )


@pytest.mark.parametrize(
    ("protocol", "action", "request_body", "message"),
    [
        (
            "ocpp1.6",
            "ChangeConfiguration",
            {"key": "AuthorizationKey", "value": "short"},
            "AuthorizationKey must",
        ),
        (
            "ocpp1.6",
            "ChangeConfiguration",
            {"key": "AuthorizationKey", "value": "g" * 40},
            "AuthorizationKey must",
        ),
        (
            "ocpp1.6",
            "ChangeConfiguration",
            {"key": "AuthorizationKey", "value": "a" * 39},
            "AuthorizationKey must",
        ),
        ("ocpp2.0.1", "SetVariables", V201.request("fifteen-chars-x"), "BasicAuthPassword must"),
        ("ocpp2.0.1", "SetVariables", V201.request("x" * 41), "BasicAuthPassword must"),
    ],
)
def test_rel_05_a_password_the_charger_cannot_use_is_refused_and_nothing_recorded(
    protocol, action, request_body, message
):
    station = ChargingStationFactory(identity="CP-BAD", is_connected=True, protocol=protocol)
    with pytest.raises(ValidationFailed, match=message):
        command_create(station=station, action=action, request=request_body)
    assert (Command.objects.count(), ChargingStation.objects.get().pending_password_hash) == (0, "")


def test_rel_05_an_operator_password_set_by_hand_ends_a_rotation_in_flight(station, version, charger):
    sent(version, station, version.new_password)
    with transaction.atomic():
        station_password_set(station=ChargingStation.objects.get(), password="by-hand-pw-1")
    assert (charger.outcome(version.new_password), charger.outcome("by-hand-pw-1")) == (REFUSED, ACCEPTED)


@pytest.mark.parametrize("version", [V16], ids=["1.6"])
def test_rel_05_authorization_key_as_digits_or_as_its_octets(version, station, charger, fake_charger):
    """1.6 security whitepaper: AuthorizationKey is "hexadecimal represented" (20 bytes at most, as up to 40
    hex digits). Chargers differ: some send the digits as the password, others the octets they stand for;
    both work, in either case of digits."""
    key = "C0FFEE00112233445566778899AABBCCDDEEFF80"  # octets that are not UTF-8 (0xC0, 0xFF, 0x80...)
    fake_charger.answers["ChangeConfiguration"] = {"status": "Accepted"}
    command_send(station=station, call=Call("ChangeConfiguration", V16.request(key)), requested_by=None)
    assert [
        charger.outcome(key),
        charger.outcome(key.lower()),
        charger.outcome(bytes.fromhex(key)),
        charger.outcome(bytes.fromhex(key)[:-1]),
        charger.outcome(DEFAULT_STATION_PASSWORD),
    ] == [ACCEPTED, ACCEPTED, ACCEPTED, REFUSED, REFUSED]


def test_rel_05_a_callerror_drops_the_new_password_a_timeout_keeps_it(
    version, station, charger, fake_charger
):
    # A CALLERROR: the charger did not take it. No answer: it may have; the new one works until confirmed.
    fake_charger.answers[version.action] = CallError("InternalError")
    refused = command_send(
        station=station, call=Call(version.action, version.request(version.new_password)), requested_by=None
    )
    assert (refused.status, charger.outcome(version.new_password)) == (CommandStatus.FAILED, REFUSED)
    fake_charger.answers[version.action] = TIMEOUT
    command_send(
        station=station, call=Call(version.action, version.request(version.new_password)), requested_by=None
    )
    assert (charger.outcome(DEFAULT_STATION_PASSWORD), charger.outcome(version.new_password)) == (
        ACCEPTED,
        ACCEPTED,
    )
