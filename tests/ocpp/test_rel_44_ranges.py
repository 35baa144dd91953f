"""docs/reliability.md case 44, at the boundary: a value that passes the OCPP schema but that the database
cannot hold is answered with a CALLERROR for that message alone, and nothing of the message is stored. Values
a real charger sends (negative export power, large energy registers, tiny fractions) are stored as they
are."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from cpms.ocpp.mappers import format_datetime
from cpms.ocpp.v16.handlers import V16ChargePoint
from cpms.ocpp.v21.handlers import V21ChargePoint
from cpms.ocpp.v201.handlers import V201ChargePoint
from sessions.models import ChargingSession, MeterValue, TransactionEvent
from stations.models import DeviceVariable
from tests.factories import ChargingStationFactory, IdTokenFactory
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

pytestmark = pytest.mark.usefixtures("inline_db")


def ts(seconds: int = 0) -> str:
    return format_datetime(timezone.now().replace(microsecond=0) - timedelta(minutes=2, seconds=-seconds))


def out_of_range(shown: str) -> str:
    return f"sampledValue.value: {shown} is out of range (the magnitude must be below 10^14)"


@pytest.fixture
def station():
    station = ChargingStationFactory(identity="CP-44")
    IdTokenFactory(organisation=station.organisation, value="GOOD")
    return station


def test_limits_follow_the_meter_value_column():
    from cpms.ocpp import ranges

    # MeterValue.value is DECIMAL(20, 6): 14 digits before the point, 6 after.
    limits = (ranges.VALUE_LIMIT, ranges.VALUE_PLACES)
    assert limits == (Decimal(10) ** 14, 6)


# --- OCPP 1.6 -------------------------------------------------------------------------------------------
def v16_meter_values(*values: str, unit: str = "Wh", transaction_id: int | None = None) -> dict:
    payload: dict = {
        "connectorId": 1,
        "meterValue": [
            {"timestamp": ts(i), "sampledValue": [{"value": value, "unit": unit}]}
            for i, value in enumerate(values)
        ],
    }
    if transaction_id is not None:
        payload["transactionId"] = transaction_id
    return payload


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("1e400", "1e400"),
        ("9223372036854775808", "9223372036854775808"),  # 2^63
        ("-100000000000000", "-100000000000000"),  # -10^14
        ("99999999999999.9999995", "99999999999999.9999995"),  # rounds to 10^14 in the column
        ("1" * 60, "1" * 40),
    ],
)
def test_rel_44_v16_meter_value_out_of_range_answered_alone(station, value, shown):
    cp = Harness(V16ChargePoint, station)
    answer = cp.call("MeterValues", v16_meter_values("1000", value))
    assert answer == [4, "m1", "PropertyConstraintViolation", out_of_range(shown), {}]
    assert len(answer[3]) <= 255
    assert MeterValue.objects.count() == 0  # not even the message's good value
    # The connection goes on: the next message is stored.
    assert cp.call("MeterValues", v16_meter_values("1000"), "m2") == [3, "m2", {}]
    assert list(MeterValue.objects.values_list("value", flat=True)) == [Decimal("1000")]


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("-22000.5", Decimal("-22000.5")),  # power exported to the grid
        ("99999999999999.999999", Decimal("99999999999999.999999")),  # the largest the column holds
        ("0.1234565", Decimal("0.123457")),  # more places than the column: rounded as PostgreSQL rounds
        ("1E-20000", Decimal("0")),  # a fraction PostgreSQL refuses to parse ("overflows numeric format")
        ("0." + "0" * 17000 + "1", Decimal("0")),
        ("NaN", None),  # not a number: kept as no value (the frame log has it), as before
    ],
)
def test_rel_44_v16_meter_values_a_charger_may_send_are_stored(station, value, stored):
    cp = Harness(V16ChargePoint, station)
    assert cp.call("MeterValues", v16_meter_values(value)) == [3, "m1", {}]
    assert list(MeterValue.objects.values_list("value", flat=True)) == [stored]


def test_rel_44_v16_large_kwh_register_reaches_the_session_in_wh(station):
    cp = Harness(V16ChargePoint, station)
    started = cp.call(
        "StartTransaction", {"connectorId": 1, "idTag": "GOOD", "meterStart": 0, "timestamp": ts()}
    )
    tx = started[2]["transactionId"]
    payload = v16_meter_values("99999999999999", unit="kWh", transaction_id=tx)
    assert cp.call("MeterValues", payload, "m2") == [3, "m2", {}]
    session = ChargingSession.objects.get()
    assert session.meter_last_wh == 99_999_999_999_999_000  # fits the BigInteger column


def test_rel_44_v16_stop_transaction_with_out_of_range_data_stores_nothing(station):
    cp = Harness(V16ChargePoint, station)
    started = cp.call(
        "StartTransaction", {"connectorId": 1, "idTag": "GOOD", "meterStart": 0, "timestamp": ts()}
    )
    stop = {
        "transactionId": started[2]["transactionId"],
        "meterStop": 5000,
        "timestamp": ts(30),
        "transactionData": [{"timestamp": ts(20), "sampledValue": [{"value": "1e400"}]}],
    }
    assert cp.call("StopTransaction", stop, "m2") == [
        4,
        "m2",
        "PropertyConstraintViolation",
        out_of_range("1e400"),
        {},
    ]
    session = ChargingSession.objects.get()
    assert (session.status, session.meter_stop_wh, MeterValue.objects.count()) == ("active", None, 0)


# --- OCPP 2.0.1 and 2.1 ---------------------------------------------------------------------------------
VERSIONS = pytest.mark.parametrize("cp_class", [V201ChargePoint, V21ChargePoint], ids=["2.0.1", "2.1"])


def sampled(value, **unit) -> dict:
    sample: dict = {"value": value}
    if unit:
        sample["unitOfMeasure"] = unit
    return sample


def v201_meter_values(*samples: dict, evse_id=1) -> dict:
    return {"evseId": evse_id, "meterValue": [{"timestamp": ts(), "sampledValue": list(samples)}]}


def tx_event(event_type: str, seq, *samples: dict, evse_id=1) -> dict:
    payload: dict = {
        "eventType": event_type,
        "timestamp": ts(seq),
        "triggerReason": "Authorized" if event_type == "Started" else "MeterValuePeriodic",
        "seqNo": seq,
        "transactionInfo": {"transactionId": "TX-44"},
        "evse": {"id": evse_id, "connectorId": 1},
    }
    if samples:
        payload["meterValue"] = [{"timestamp": ts(seq), "sampledValue": list(samples)}]
    return payload


@VERSIONS
@pytest.mark.parametrize(
    ("sample", "shown"),
    [
        (sampled(1e300), "1e+300"),
        (sampled(-1.5e14), "-150000000000000.0"),
        (sampled(5, multiplier=2**31 - 1), "5 x 10^2147483647"),
        (sampled(1e9, multiplier=5), "1000000000.0 x 10^5"),
    ],
)
def test_rel_44_v201_meter_value_out_of_range_answered_alone(station, cp_class, sample, shown):
    cp = Harness(cp_class, station)
    answer = cp.call("MeterValues", v201_meter_values(sampled(1000), sample))
    assert answer == [4, "m1", "PropertyConstraintViolation", out_of_range(shown), {}]
    assert MeterValue.objects.count() == 0


@VERSIONS
def test_rel_44_v201_transaction_event_out_of_range_stores_nothing_of_it(station, cp_class):
    cp = Harness(cp_class, station)
    assert cp.call("TransactionEvent", tx_event("Started", 0, sampled(100)), "a")[0] == 3
    answer = cp.call("TransactionEvent", tx_event("Updated", 1, sampled(1e300)), "b")
    assert answer == [4, "b", "PropertyConstraintViolation", out_of_range("1e+300"), {}]
    assert list(TransactionEvent.objects.values_list("seq_no", flat=True)) == [0]
    assert list(MeterValue.objects.values_list("value", flat=True)) == [Decimal("100")]
    # The charger's next event is taken as usual.
    assert cp.call("TransactionEvent", tx_event("Updated", 2, sampled(250)), "c") == [3, "c", {}]
    assert ChargingSession.objects.get().meter_last_wh == 250


@VERSIONS
@pytest.mark.parametrize(
    ("sample", "stored"),
    [
        (sampled(-7400.25, unit="W"), Decimal("-7400.25")),  # export
        (sampled(123456789.5, unit="kWh", multiplier=3), Decimal("123456789500")),
        (sampled(5, multiplier=-(2**31)), Decimal("0")),  # PostgreSQL refuses 5E-2147483648 as numeric
        (sampled(1e-300), Decimal("0")),
    ],
)
def test_rel_44_v201_meter_values_a_charger_may_send_are_stored(station, cp_class, sample, stored):
    cp = Harness(cp_class, station)
    assert cp.call("MeterValues", v201_meter_values(sample)) == [3, "m1", {}]
    assert list(MeterValue.objects.values_list("value", flat=True)) == [stored]


@VERSIONS
def test_rel_44_v201_unit_longer_than_the_column_is_kept_shortened(station, cp_class):
    # UnitOfMeasure.unit allows 20 characters; the column holds 16 (the frame log keeps the whole unit).
    cp = Harness(cp_class, station)
    assert cp.call("MeterValues", v201_meter_values(sampled(3, unit="VendorSpecificUnit20"))) == [3, "m1", {}]
    assert list(MeterValue.objects.values_list("unit", "value")) == [("VendorSpecificUn", Decimal("3"))]


@VERSIONS
def test_rel_44_v201_integers_written_as_decimals_are_stored_as_integers(station, cp_class):
    # JSON Schema draft 6 (the 2.0.1 schemas) counts 1.0 as an integer; PostgreSQL's integer columns refuse it
    # when written by COPY.
    cp = Harness(cp_class, station)
    assert cp.call("TransactionEvent", tx_event("Started", 0.0, sampled(100), evse_id=1.0), "a")[0] == 3
    assert cp.call("TransactionEvent", tx_event("Updated", 1.0, sampled(200), evse_id=1.0), "b") == [
        3,
        "b",
        {},
    ]
    assert cp.call("MeterValues", v201_meter_values(sampled(7), evse_id=2.0), "c") == [3, "c", {}]
    assert list(TransactionEvent.objects.values_list("seq_no", flat=True)) == [0, 1]
    assert list(MeterValue.objects.order_by("id").values_list("evse_id", "value")) == [
        (1, Decimal("100")),
        (1, Decimal("200")),
        (2, Decimal("7")),
    ]


@VERSIONS
def test_rel_44_v201_device_model_limit_beyond_the_column_is_kept_as_no_limit(station, cp_class):
    # Chargers report "no limit" as the largest float (3.4e38); the column holds less than 10^14.
    cp = Harness(cp_class, station)
    report = {
        "requestId": 1,
        "generatedAt": ts(),
        "seqNo": 0,
        "reportData": [
            {
                "component": {"name": "SmartChargingCtrlr"},
                "variable": {"name": "LimitChangeSignificance"},
                "variableAttribute": [{"type": "Actual", "value": "0.1"}],
                "variableCharacteristics": {
                    "dataType": "decimal",
                    "minLimit": -3.4e38,
                    "maxLimit": 3.4e38,
                    "supportsMonitoring": False,
                },
            }
        ],
    }
    assert cp.call("NotifyReport", report) == [3, "m1", {}]
    variable = DeviceVariable.objects.get()
    assert (variable.value, variable.min_limit, variable.max_limit) == ("0.1", None, None)


# --- Integers: the schemas' 32-bit bounds (cpms.ocpp_wire.schemas) hold every integer column on the path ---
@pytest.mark.parametrize(
    ("cp_class", "action", "payload", "field"),
    [
        (
            V16ChargePoint,
            "StartTransaction",
            {"connectorId": 1, "idTag": "GOOD", "meterStart": 2**63, "timestamp": "2026-01-01T00:00:00Z"},
            "meterStart",
        ),
        (
            V16ChargePoint,
            "StopTransaction",
            {"transactionId": 2**63, "meterStop": 1, "timestamp": "2026-01-01T00:00:00Z"},
            "transactionId",
        ),
        (
            V16ChargePoint,
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": 2**31,
                "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "1"}]}],
            },
            "transactionId",
        ),
        (
            V201ChargePoint,
            "MeterValues",
            {
                "evseId": 2**63,
                "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": 1}]}],
            },
            "evseId",
        ),
        (
            V201ChargePoint,
            "TransactionEvent",
            {
                "eventType": "Updated",
                "timestamp": "2026-01-01T00:00:00Z",
                "triggerReason": "MeterValuePeriodic",
                "seqNo": 2**64,
                "transactionInfo": {"transactionId": "TX-44"},
            },
            "seqNo",
        ),
    ],
)
def test_rel_44_integers_beyond_32_bits_answered_alone(station, cp_class, action, payload, field):
    answer = Harness(cp_class, station).call(action, payload)
    assert answer == [
        4,
        "m1",
        "PropertyConstraintViolation",
        f"{field}: data.{field} must be smaller than or equal to 2147483647",
        {"field": field},
    ]
    assert (ChargingSession.objects.count(), MeterValue.objects.count()) == (0, 0)
