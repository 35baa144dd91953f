"""docs/reliability.md section B: malformed frames get the right CALLERROR (1.6 spellings), nothing is
processed twice."""

import logging

import pytest

from cpms.ocpp import framing
from cpms.ocpp.v16.handlers import V16ChargePoint
from stations.models import StatusChange
from tests.factories import ChargingStationFactory
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

pytestmark = pytest.mark.usefixtures("inline_db")


@pytest.fixture
def cp():
    return Harness(V16ChargePoint, ChargingStationFactory(identity="CP-F"))


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("not json", [4, "-1", "FormationViolation"]),
        ('{"a": 1}', [4, "-1", "FormationViolation"]),
        ("[]", [4, "-1", "FormationViolation"]),
        ('[2, "x1", "Heartbeat"]', [4, "x1", "FormationViolation"]),
        ('[2, "x1", "Heartbeat", {}, 5]', [4, "x1", "FormationViolation"]),
        ('[2, "x1", "Heartbeat", []]', [4, "x1", "FormationViolation"]),
        ('[7, "x1", "Heartbeat", {}]', [4, "x1", "FormationViolation"]),
    ],
)
def test_rel_09_malformed_frames_answered(cp, frame, expected):
    answer = cp.feed(frame)
    assert answer[:3] == expected
    assert isinstance(answer[3], str) and 0 < len(answer[3]) <= 255
    assert answer[4] == {}
    # The connection is still usable afterwards.
    assert cp.call("Heartbeat", {}, "ok")[:2] == [3, "ok"]


@pytest.mark.parametrize(
    ("action", "payload", "code"),
    [
        ("NoSuchAction", {}, "NotImplemented"),
        ("Reset", {"type": "Hard"}, "NotSupported"),  # a CSMS->charger action sent by the charger
        ("BootNotification", {"chargePointVendor": "V"}, "OccurenceConstraintViolation"),
        ("BootNotification", {"chargePointVendor": "V", "chargePointModel": 7}, "TypeConstraintViolation"),
        (
            "BootNotification",
            {"chargePointVendor": "V" * 21, "chargePointModel": "M"},
            "PropertyConstraintViolation",
        ),
        (
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"},
            "PropertyConstraintViolation",
        ),
        (
            "BootNotification",
            {"chargePointVendor": "V", "chargePointModel": "M", "extra": 1},
            "FormationViolation",
        ),
        (
            "StartTransaction",
            {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "yesterday"},
            "PropertyConstraintViolation",
        ),
    ],
)
def test_rel_10_error_codes_v16(cp, action, payload, code):
    answer = cp.call(action, payload, "e1")
    assert answer[0:3] == [4, "e1", code]
    assert len(answer[3]) <= 255


@pytest.mark.parametrize(
    "frame",
    [
        '[2, "", "Heartbeat", {}]',
        '[2, 17, "Heartbeat", {}]',
        '[2, null, "Heartbeat", {}]',
        '[2, "' + "x" * 37 + '", "Heartbeat", {}]',
    ],
)
def test_rel_11_bad_message_id_rejected_and_nothing_processed(cp, frame):
    answer = cp.feed(
        frame.replace(
            'Heartbeat", {}',
            'StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}',
        )
    )
    assert answer[0:3] == [4, "-1", "FormationViolation"]
    assert StatusChange.objects.count() == 0


def test_rel_11_message_id_of_36_chars_is_fine(cp):
    unique_id = "x" * 36
    assert cp.call("Heartbeat", {}, unique_id)[0:2] == [3, unique_id]


def test_rel_14_duplicate_call_id_not_processed_twice(cp):
    frame = [
        2,
        "dup",
        "StatusNotification",
        {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    ]
    first = cp.feed(frame)
    second = cp.feed(frame)
    assert first == second == [3, "dup", {}]
    assert StatusChange.objects.count() == 1


def test_rel_15_result_for_unknown_id_logged_and_ignored(cp, caplog):
    with caplog.at_level(logging.INFO, logger="cpms.ocpp.chargepoint"):
        assert cp.feed('[3, "never-asked", {}]') is None
        assert cp.feed('[4, "never-asked", "GenericError", "x", {}]') is None
    assert "answer for unknown call id never-asked ignored" in caplog.text
    assert cp.call("Heartbeat", {}, "ok")[:2] == [3, "ok"]


def test_malformed_call_result_is_dropped_not_answered(cp):
    assert cp.feed('[3, "only-two"]') is None


def test_nul_bytes_are_replaced_before_anything_is_stored():
    call = framing.parse('[2, "n1", "Authorize", {"idTag": "A\\u0000B"}]')
    assert call.payload == {"idTag": "A\ufffdB"}


def test_call_error_description_is_capped():
    frame = framing.call_error("1", "GenericError", "x" * 1000)
    assert len(framing.parse(frame).description) == 255


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("StatusNotification", {"connectorId": -1, "errorCode": "NoError", "status": "Available"}),
        ("StatusNotification", {"connectorId": 10**12, "errorCode": "NoError", "status": "Available"}),
        (
            "MeterValues",
            {
                "connectorId": -3,
                "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "1"}]}],
            },
        ),
        (
            "StartTransaction",
            {"connectorId": 2**40, "idTag": "T", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"},
        ),
    ],
)
def test_out_of_range_numbers_are_property_violations_not_database_errors(cp, action, payload):
    answer = cp.call(action, payload, "n1")
    assert answer[0:3] == [4, "n1", "PropertyConstraintViolation"]
