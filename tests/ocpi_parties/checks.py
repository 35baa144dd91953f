"""Checks of the OCPI 2.2.1 objects a CPO sends (pushed or pulled), from the specification's object tables:
required fields (cardinality 1 and +), types, lengths, enums, and the formats of 16 Types.

`object_problems(kind, obj)` returns what is wrong, in words (an empty list: nothing). Kinds: "Location",
"EVSE", "Connector", "Tariff", "Session", "CDR", "Token", "CommandResponse", "CommandResult", "ClientInfo".
Only what the specification states is checked; optional fields are checked when present.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# 16.2 DateTime: RFC 3339 in UTC, 'Z' or no designator, optional fractional seconds; "+00:00 is not the same
# as UTC" and other patterns are not allowed.
DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z?$")
LATITUDE_RE = re.compile(r"^-?[0-9]{1,2}\.[0-9]{5,7}$")  # 8.4.13 GeoLocation
LONGITUDE_RE = re.compile(r"^-?[0-9]{1,3}\.[0-9]{5,7}$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")  # ISO 4217

EVSE_STATUS = {
    "AVAILABLE",
    "BLOCKED",
    "CHARGING",
    "INOPERATIVE",
    "OUTOFORDER",
    "PLANNED",
    "REMOVED",
    "RESERVED",
    "UNKNOWN",
}  # 8.4.22
CONNECTOR_FORMAT = {"SOCKET", "CABLE"}  # 8.4.4
CONNECTOR_TYPE = {
    "CHADEMO",
    "CHAOJI",
    *(f"DOMESTIC_{letter}" for letter in "ABCDEFGHIJKLMNO"),
    "GBT_AC",
    "GBT_DC",
    "IEC_60309_2_single_16",
    "IEC_60309_2_three_16",
    "IEC_60309_2_three_32",
    "IEC_60309_2_three_64",
    "IEC_62196_T1",
    "IEC_62196_T1_COMBO",
    "IEC_62196_T2",
    "IEC_62196_T2_COMBO",
    "IEC_62196_T3A",
    "IEC_62196_T3C",
    "NEMA_5_20",
    "NEMA_6_30",
    "NEMA_6_50",
    "NEMA_10_30",
    "NEMA_10_50",
    "NEMA_14_30",
    "NEMA_14_50",
    "PANTOGRAPH_BOTTOM_UP",
    "PANTOGRAPH_TOP_DOWN",
    "TESLA_R",
    "TESLA_S",
}  # 8.4.5 ConnectorType
POWER_TYPE = {"AC_1_PHASE", "AC_2_PHASE", "AC_2_PHASE_SPLIT", "AC_3_PHASE", "DC"}  # 8.4.19
SESSION_STATUS = {"ACTIVE", "COMPLETED", "INVALID", "PENDING", "RESERVATION"}  # 9.4.2
AUTH_METHOD = {"AUTH_REQUEST", "COMMAND", "WHITELIST"}  # 10.4.1
CDR_DIMENSION = {
    "CURRENT",
    "ENERGY",
    "ENERGY_EXPORT",
    "ENERGY_IMPORT",
    "MAX_CURRENT",
    "MIN_CURRENT",
    "MAX_POWER",
    "MIN_POWER",
    "PARKING_TIME",
    "POWER",
    "RESERVATION_TIME",
    "STATE_OF_CHARGE",
    "TIME",
}  # 10.4.3
SESSION_ONLY_DIMENSION = {"CURRENT", "ENERGY_EXPORT", "ENERGY_IMPORT", "POWER", "STATE_OF_CHARGE"}
TARIFF_DIMENSION = {"ENERGY", "FLAT", "PARKING_TIME", "TIME"}  # 11.4.2
TARIFF_TYPE = {"AD_HOC_PAYMENT", "PROFILE_CHEAP", "PROFILE_FAST", "PROFILE_GREEN", "REGULAR"}  # 11.4.4
TOKEN_TYPE = {"AD_HOC_USER", "APP_USER", "OTHER", "RFID"}  # 12.4.4
WHITELIST_TYPE = {"ALWAYS", "ALLOWED", "ALLOWED_OFFLINE", "NEVER"}  # 12.4.5
COMMAND_RESPONSE_TYPE = {"NOT_SUPPORTED", "REJECTED", "ACCEPTED", "UNKNOWN_SESSION"}  # 13.4.1
COMMAND_RESULT_TYPE = {
    "ACCEPTED",
    "CANCELED_RESERVATION",
    "EVSE_OCCUPIED",
    "EVSE_INOPERATIVE",
    "FAILED",
    "NOT_SUPPORTED",
    "REJECTED",
    "TIMEOUT",
    "UNKNOWN_RESERVATION",
}  # 13.4.2
CONNECTION_STATUS = {"CONNECTED", "OFFLINE", "PLANNED", "SUSPENDED"}  # 15.5.1
ROLE = {"CPO", "EMSP", "HUB", "NAP", "NSP", "OTHER", "SCSP"}  # 16.6


class _Checker:
    def __init__(self, where: str):
        self.where = where
        self.problems: list[str] = []

    def add(self, path: str, text: str) -> None:
        self.problems.append(f"{self.where}.{path}: {text}" if path else f"{self.where}: {text}")

    def field(self, obj: dict, name: str, check: Callable[[str, Any], None], *, required: bool) -> None:
        if obj.get(name) is None:
            if required:
                self.add(name, "required, missing")
            return
        check(name, obj[name])

    # value checks; `path` names the value in the messages

    def string(self, max_len: int, *, ci: bool = False) -> Callable[[str, Any], None]:
        def check(path: str, value: Any) -> None:
            if not isinstance(value, str):
                self.add(path, f"not a string: {value!r}")
            elif len(value) > max_len:
                self.add(path, f"longer than {max_len}: {value!r}")
            elif ci and not all(0x20 <= ord(c) < 0x7F for c in value):
                self.add(path, f"CiString with non-printable-ASCII characters: {value!r}")

        return check

    def regex(self, pattern: re.Pattern, what: str) -> Callable[[str, Any], None]:
        def check(path: str, value: Any) -> None:
            if not isinstance(value, str) or not pattern.match(value):
                self.add(path, f"not a {what}: {value!r}")

        return check

    def datetime(self) -> Callable[[str, Any], None]:
        return self.regex(DATETIME_RE, "DateTime in UTC (16.2)")

    def enum(self, values: set[str]) -> Callable[[str, Any], None]:
        def check(path: str, value: Any) -> None:
            if value not in values:
                self.add(path, f"not one of {sorted(values)}: {value!r}")

        return check

    def number(self, path: str, value: Any) -> None:
        # 16.4: numbers are JSON numbers (a string "1.50" is not one).
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(path, f"not a JSON number (16.4): {value!r}")

    def integer(self, path: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, f"not an integer: {value!r}")

    def boolean(self, path: str, value: Any) -> None:
        if not isinstance(value, bool):
            self.add(path, f"not a boolean: {value!r}")

    def listing(
        self, check: Callable[[str, Any], None], *, at_least_one: bool = False
    ) -> Callable[[str, Any], None]:
        def run(path: str, value: Any) -> None:
            if not isinstance(value, list):
                self.add(path, f"not a list: {value!r}")
                return
            if at_least_one and not value:
                self.add(path, "an empty list where one or more are required")
            for index, item in enumerate(value):
                check(f"{path}[{index}]", item)

        return run

    def obj(self, fields: list[tuple[str, Callable[[str, Any], None], bool]]) -> Callable[[str, Any], None]:
        """A nested object: (name, check, required) per field."""

        def check(path: str, value: Any) -> None:
            if not isinstance(value, dict):
                self.add(path, f"not an object: {value!r}")
                return
            for name, field_check, required in fields:
                if value.get(name) is None:
                    if required:
                        self.add(f"{path}.{name}" if path else name, "required, missing")
                    continue
                field_check(f"{path}.{name}" if path else name, value[name])

        return check

    # OCPI classes

    def price(self) -> Callable[[str, Any], None]:  # 16.5
        return self.obj([("excl_vat", self.number, True), ("incl_vat", self.number, False)])

    def display_text(self) -> Callable[[str, Any], None]:  # 16.3
        return self.obj([("language", self.string(2), True), ("text", self.string(512), True)])

    def geo(self) -> Callable[[str, Any], None]:
        return self.obj(
            [
                ("latitude", self.regex(LATITUDE_RE, "GeoLocation latitude (8.4.13)"), True),
                ("longitude", self.regex(LONGITUDE_RE, "GeoLocation longitude (8.4.13)"), True),
            ]
        )

    def connector(self) -> Callable[[str, Any], None]:  # 8.3.3
        return self.obj(
            [
                ("id", self.string(36, ci=True), True),
                ("standard", self.enum(CONNECTOR_TYPE), True),
                ("format", self.enum(CONNECTOR_FORMAT), True),
                ("power_type", self.enum(POWER_TYPE), True),
                ("max_voltage", self.integer, True),
                ("max_amperage", self.integer, True),
                ("max_electric_power", self.integer, False),
                ("tariff_ids", self.listing(self.string(36, ci=True)), False),
                ("last_updated", self.datetime(), True),
            ]
        )

    def evse(self) -> Callable[[str, Any], None]:  # 8.3.2
        return self.obj(
            [
                ("uid", self.string(36, ci=True), True),
                ("evse_id", self.string(48, ci=True), False),
                ("status", self.enum(EVSE_STATUS), True),
                ("capabilities", self.listing(self.string(64)), False),
                ("connectors", self.listing(self.connector(), at_least_one=True), True),
                ("coordinates", self.geo(), False),
                ("last_updated", self.datetime(), True),
            ]
        )

    def location(self) -> Callable[[str, Any], None]:  # 8.3.1
        return self.obj(
            [
                ("country_code", self.string(2, ci=True), True),
                ("party_id", self.string(3, ci=True), True),
                ("id", self.string(36, ci=True), True),
                ("publish", self.boolean, True),
                ("name", self.string(255), False),
                ("address", self.string(45), True),
                ("city", self.string(45), True),
                ("postal_code", self.string(10), False),
                ("state", self.string(20), False),
                ("country", self.regex(re.compile(r"^[A-Z]{3}$"), "ISO 3166-1 alpha-3 code"), True),
                ("coordinates", self.geo(), True),
                ("evses", self.listing(self.evse()), False),
                ("time_zone", self.string(255), True),
                ("charging_when_closed", self.boolean, False),
                ("last_updated", self.datetime(), True),
            ]
        )

    def price_component(self) -> Callable[[str, Any], None]:  # 11.4.3
        return self.obj(
            [
                ("type", self.enum(TARIFF_DIMENSION), True),
                ("price", self.number, True),
                ("vat", self.number, False),
                ("step_size", self.integer, True),
            ]
        )

    def tariff(self) -> Callable[[str, Any], None]:  # 11.3.1
        element = self.obj(
            [("price_components", self.listing(self.price_component(), at_least_one=True), True)]
        )
        return self.obj(
            [
                ("country_code", self.string(2, ci=True), True),
                ("party_id", self.string(3, ci=True), True),
                ("id", self.string(36, ci=True), True),
                ("currency", self.regex(CURRENCY_RE, "ISO 4217 currency"), True),
                ("type", self.enum(TARIFF_TYPE), False),
                ("tariff_alt_text", self.listing(self.display_text()), False),
                ("min_price", self.price(), False),
                ("max_price", self.price(), False),
                ("elements", self.listing(element, at_least_one=True), True),
                ("start_date_time", self.datetime(), False),
                ("end_date_time", self.datetime(), False),
                ("last_updated", self.datetime(), True),
            ]
        )

    def cdr_token(self) -> Callable[[str, Any], None]:  # 10.4.5
        return self.obj(
            [
                ("country_code", self.string(2, ci=True), True),
                ("party_id", self.string(3, ci=True), True),
                ("uid", self.string(36, ci=True), True),
                ("type", self.enum(TOKEN_TYPE), True),
                ("contract_id", self.string(36, ci=True), True),
            ]
        )

    def charging_period(self, *, in_cdr: bool) -> Callable[[str, Any], None]:  # 10.4.6
        dimensions = CDR_DIMENSION - SESSION_ONLY_DIMENSION if in_cdr else CDR_DIMENSION
        dimension = self.obj([("type", self.enum(dimensions), True), ("volume", self.number, True)])
        return self.obj(
            [
                ("start_date_time", self.datetime(), True),
                ("dimensions", self.listing(dimension, at_least_one=True), True),
                ("tariff_id", self.string(36, ci=True), False),
            ]
        )

    def session(self) -> Callable[[str, Any], None]:  # 9.3.1
        return self.obj(
            [
                ("country_code", self.string(2, ci=True), True),
                ("party_id", self.string(3, ci=True), True),
                ("id", self.string(36, ci=True), True),
                ("start_date_time", self.datetime(), True),
                ("end_date_time", self.datetime(), False),
                ("kwh", self.number, True),
                ("cdr_token", self.cdr_token(), True),
                ("auth_method", self.enum(AUTH_METHOD), True),
                ("authorization_reference", self.string(36, ci=True), False),
                ("location_id", self.string(36, ci=True), True),
                ("evse_uid", self.string(36, ci=True), True),
                ("connector_id", self.string(36, ci=True), True),
                ("meter_id", self.string(255), False),
                ("currency", self.regex(CURRENCY_RE, "ISO 4217 currency"), True),
                ("charging_periods", self.listing(self.charging_period(in_cdr=False)), False),
                ("total_cost", self.price(), False),
                ("status", self.enum(SESSION_STATUS), True),
                ("last_updated", self.datetime(), True),
            ]
        )

    def cdr_location(self) -> Callable[[str, Any], None]:  # 10.4.4
        return self.obj(
            [
                ("id", self.string(36, ci=True), True),
                ("name", self.string(255), False),
                ("address", self.string(45), True),
                ("city", self.string(45), True),
                ("postal_code", self.string(10), False),
                ("country", self.regex(re.compile(r"^[A-Z]{3}$"), "ISO 3166-1 alpha-3 code"), True),
                ("coordinates", self.geo(), True),
                ("evse_uid", self.string(36, ci=True), True),
                ("evse_id", self.string(48, ci=True), True),
                ("connector_id", self.string(36, ci=True), True),
                ("connector_standard", self.enum(CONNECTOR_TYPE), True),
                ("connector_format", self.enum(CONNECTOR_FORMAT), True),
                ("connector_power_type", self.enum(POWER_TYPE), True),
            ]
        )

    def cdr(self) -> Callable[[str, Any], None]:  # 10.3.1
        return self.obj(
            [
                ("country_code", self.string(2, ci=True), True),
                ("party_id", self.string(3, ci=True), True),
                ("id", self.string(39, ci=True), True),
                ("start_date_time", self.datetime(), True),
                ("end_date_time", self.datetime(), True),
                ("session_id", self.string(36, ci=True), False),
                ("cdr_token", self.cdr_token(), True),
                ("auth_method", self.enum(AUTH_METHOD), True),
                ("authorization_reference", self.string(36, ci=True), False),
                ("cdr_location", self.cdr_location(), True),
                ("meter_id", self.string(255), False),
                ("currency", self.regex(CURRENCY_RE, "ISO 4217 currency"), True),
                ("tariffs", self.listing(self.tariff()), False),
                (
                    "charging_periods",
                    self.listing(self.charging_period(in_cdr=True), at_least_one=True),
                    True,
                ),
                ("total_cost", self.price(), True),
                ("total_fixed_cost", self.price(), False),
                ("total_energy", self.number, True),
                ("total_energy_cost", self.price(), False),
                ("total_time", self.number, True),
                ("total_time_cost", self.price(), False),
                ("total_parking_time", self.number, False),
                ("total_parking_cost", self.price(), False),
                ("total_reservation_cost", self.price(), False),
                ("remark", self.string(255), False),
                ("invoice_reference_id", self.string(39, ci=True), False),
                ("credit", self.boolean, False),
                ("credit_reference_id", self.string(39, ci=True), False),
                ("last_updated", self.datetime(), True),
            ]
        )

    def token(self) -> Callable[[str, Any], None]:  # 12.3.2
        return self.obj(
            [
                ("country_code", self.string(2, ci=True), True),
                ("party_id", self.string(3, ci=True), True),
                ("uid", self.string(36, ci=True), True),
                ("type", self.enum(TOKEN_TYPE), True),
                ("contract_id", self.string(36, ci=True), True),
                ("visual_number", self.string(64), False),
                ("issuer", self.string(64), True),
                ("group_id", self.string(36, ci=True), False),
                ("valid", self.boolean, True),
                ("whitelist", self.enum(WHITELIST_TYPE), True),
                ("language", self.string(2), False),
                ("last_updated", self.datetime(), True),
            ]
        )

    def command_response(self) -> Callable[[str, Any], None]:  # 13.3.2
        return self.obj(
            [
                ("result", self.enum(COMMAND_RESPONSE_TYPE), True),
                ("timeout", self.integer, True),
                ("message", self.listing(self.display_text()), False),
            ]
        )

    def command_result(self) -> Callable[[str, Any], None]:  # 13.3.3
        return self.obj(
            [
                ("result", self.enum(COMMAND_RESULT_TYPE), True),
                ("message", self.listing(self.display_text()), False),
            ]
        )

    def client_info(self) -> Callable[[str, Any], None]:  # 15.4.1
        return self.obj(
            [
                ("party_id", self.string(3, ci=True), True),
                ("country_code", self.string(2, ci=True), True),
                ("role", self.enum(ROLE), True),
                ("status", self.enum(CONNECTION_STATUS), True),
                ("last_updated", self.datetime(), True),
            ]
        )


_KINDS = {
    "Location": "location",
    "EVSE": "evse",
    "Connector": "connector",
    "Tariff": "tariff",
    "Session": "session",
    "CDR": "cdr",
    "Token": "token",
    "CommandResponse": "command_response",
    "CommandResult": "command_result",
    "ClientInfo": "client_info",
}

# The object a module's list (GET on its Sender interface) holds.
MODULE_KINDS = {
    "locations": "Location",
    "tariffs": "Tariff",
    "sessions": "Session",
    "cdrs": "CDR",
    "tokens": "Token",
}


def object_problems(kind: str, obj: Any, *, where: str | None = None, partial: bool = False) -> list[str]:
    """What is wrong with `obj` as an OCPI 2.2.1 `kind` object. `partial`: a PATCH body, whose own fields
    may be left out (the objects inside it are whole)."""
    where = where or kind
    checker = _Checker(where)
    getattr(checker, _KINDS[kind])()("", obj)
    if not partial:
        return checker.problems
    top_level_missing = re.compile(rf"^{re.escape(where)}\.[a-z_]+: required, missing$")
    return [p for p in checker.problems if not top_level_missing.match(p)]


def missing_required(problems: list[str]) -> bool:
    """Whether some required field is missing (the object cannot be used)."""
    return any(p.endswith("required, missing") or p.endswith(": not an object: None") for p in problems)
