"""docs/reliability.md case 17: property-based fuzzing from the `ocpp` package's JSON schemas.

For every action a charger may send, payloads generated from the version's request schema are fed to the
handler. Each answer must be a CALLRESULT that validates against the response schema, or a CALLERROR with
a code of that version; never an uncaught exception, and never InternalError (which would mean a handler
or the database choked on schema-valid input).
"""

import functools
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis_jsonschema import from_schema

from cpms.ocpp.v16.handlers import V16ChargePoint
from cpms.ocpp.v21.handlers import V21ChargePoint
from cpms.ocpp.v201.handlers import V201ChargePoint
from cpms.ocpp_wire import schemas
from tests.factories import ChargingStationFactory
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

pytestmark = pytest.mark.usefixtures("inline_db")

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "10"))
# hypothesis-jsonschema needs seconds per example for these deep schemas; each still gets a few.
SLOW_SCHEMAS = {
    "ReportChargingProfiles",
    "NotifyEVChargingSchedule",
    "NotifyChargingLimit",
    "NotifyMonitoringReport",
    "NotifyEvent",
}
# 2.1's ReportChargingProfiles schema takes hypothesis-jsonschema over a minute per run; its handler is the
# same recorder as 2.0.1's, which is fuzzed.
SKIP = {("2.1", "ReportChargingProfiles")}
CASES = [
    (cls, action)
    for cls in (V16ChargePoint, V201ChargePoint, V21ChargePoint)
    for action in sorted(cls.handlers)
    if (cls.version, action) not in SKIP
]


def _inline_refs(node, definitions: dict):
    """Replace "#/definitions/X" references by their target: the OCPP schemas are not recursive, and
    hypothesis-jsonschema resolves references again on every draw (minutes per schema otherwise)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref is not None:
            return _inline_refs(definitions[ref.rsplit("/", 1)[-1]], definitions)
        inlined = {k: _inline_refs(v, definitions) for k, v in node.items() if k != "definitions"}
        if inlined.get("type") == "array":
            # Short arrays: the handlers treat items alike, and long nested arrays make generation slow.
            inlined["maxItems"] = min(inlined.get("maxItems", 3), 3)
        return inlined
    if isinstance(node, list):
        return [_inline_refs(v, definitions) for v in node]
    return node


@functools.cache
def request_strategy(version: str, action: str):
    path = schemas._SCHEMA_DIRS[version] / f"{schemas.request_schema(version, action)}.json"
    schema = json.loads(path.read_text(encoding="utf-8-sig"))
    for key in ("$id", "id", "$schema", "comment"):
        schema.pop(key, None)
    return from_schema(_inline_refs(schema, schema.get("definitions", {})))


@pytest.mark.parametrize(("cp_class", "action"), CASES, ids=[f"{c.version}-{a}" for c, a in CASES])
def test_rel_17_fuzz_every_handler(cp_class, action):
    cp = Harness(cp_class, ChargingStationFactory())
    codes = set(cp_class.error_codes.values()) - {"InternalError"}

    # Derandomized so CI is reproducible; HYPOTHESIS_EXAMPLES=500 for a deeper local run.
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=EXAMPLES <= 20,
        suppress_health_check=list(HealthCheck),
    )
    @given(payload=request_strategy(cp_class.version, action))
    def check(payload):
        answer = cp.call(action, payload, "fz")
        assert answer[1] == "fz"
        if answer[0] == 3:
            schemas.validate(cp_class.version, schemas.response_schema(action), answer[2])
        else:
            assert answer[0] == 4 and answer[2] in codes, answer

    check()
