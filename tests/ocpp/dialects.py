"""The same charger behaviour spoken in each OCPP version, so scenarios are written once.

Each dialect turns an intent (boot, authorize, start, meter, stop) into the version's CALL and reads the
answer back into version-neutral values."""

from datetime import datetime

from cpms.ocpp.mappers import format_datetime
from cpms.ocpp.v16.handlers import V16ChargePoint
from cpms.ocpp.v21.handlers import V21ChargePoint
from cpms.ocpp.v201.handlers import V201ChargePoint


def energy_sample(wh: int, context: str = "Sample.Periodic") -> dict:
    return {"value": wh, "measurand": "Energy.Active.Import.Register", "context": context}


class V16:
    name = "1.6"
    cp_class = V16ChargePoint
    unknown_token_status = "Invalid"

    def __init__(self):
        self.tx_ids: dict[str, int] = {}

    def boot(self) -> tuple[str, dict]:
        return "BootNotification", {
            "chargePointVendor": "Acme",
            "chargePointModel": "Dual",
            "firmwareVersion": "9.1",
        }

    def authorize(self, tag: str) -> tuple[str, dict]:
        return "Authorize", {"idTag": tag}

    @staticmethod
    def token_status(answer: list) -> str:
        return answer[2]["idTagInfo"]["status"]

    def start(self, key: str, tag: str, wh: int, at: datetime, evse: int = 1) -> tuple[str, dict]:
        return "StartTransaction", {
            "connectorId": evse,
            "idTag": tag,
            "meterStart": wh,
            "timestamp": format_datetime(at),
        }

    def started(self, key: str, answer: list) -> str:
        self.tx_ids[key] = answer[2]["transactionId"]
        return str(self.tx_ids[key])

    def start_token_status(self, answer: list) -> str:
        return answer[2]["idTagInfo"]["status"]

    def meter(self, key: str, wh: int, at: datetime, evse: int = 1) -> tuple[str, dict]:
        sample = {**energy_sample(wh), "value": str(wh), "unit": "Wh"}
        return "MeterValues", {
            "connectorId": evse,
            "transactionId": self.tx_ids[key],
            "meterValue": [{"timestamp": format_datetime(at), "sampledValue": [sample]}],
        }

    def stop(self, key: str, wh: int, at: datetime, evse: int = 1) -> tuple[str, dict]:
        return "StopTransaction", {
            "transactionId": self.tx_ids[key],
            "meterStop": wh,
            "timestamp": format_datetime(at),
            "reason": "EVDisconnected",
        }


class V201:
    name = "2.0.1"
    cp_class = V201ChargePoint
    unknown_token_status = "Unknown"

    def __init__(self):
        self.seq: dict[str, int] = {}

    def boot(self) -> tuple[str, dict]:
        return "BootNotification", {
            "chargingStation": {"vendorName": "Acme", "model": "Dual", "firmwareVersion": "9.1"},
            "reason": "PowerUp",
        }

    def authorize(self, tag: str) -> tuple[str, dict]:
        return "Authorize", {"idToken": {"idToken": tag, "type": "ISO14443"}}

    @staticmethod
    def token_status(answer: list) -> str:
        return answer[2]["idTokenInfo"]["status"]

    def _event(
        self, key: str, event_type: str, trigger: str, at: datetime, evse: int, wh: int, context: str, **extra
    ):
        seq = self.seq.get(key, -1) + 1
        self.seq[key] = seq
        return "TransactionEvent", {
            "eventType": event_type,
            "timestamp": format_datetime(at),
            "triggerReason": trigger,
            "seqNo": seq,
            "transactionInfo": {"transactionId": key, **extra.pop("info", {})},
            "evse": {"id": evse, "connectorId": 1},
            "meterValue": [{"timestamp": format_datetime(at), "sampledValue": [energy_sample(wh, context)]}],
            **extra,
        }

    def start(self, key: str, tag: str, wh: int, at: datetime, evse: int = 1) -> tuple[str, dict]:
        return self._event(
            key,
            "Started",
            "Authorized",
            at,
            evse,
            wh,
            "Transaction.Begin",
            idToken={"idToken": tag, "type": "ISO14443"},
            info={"chargingState": "Charging"},
        )

    def started(self, key: str, answer: list) -> str:
        return key

    def start_token_status(self, answer: list) -> str:
        return answer[2]["idTokenInfo"]["status"]

    def meter(self, key: str, wh: int, at: datetime, evse: int = 1) -> tuple[str, dict]:
        return self._event(key, "Updated", "MeterValuePeriodic", at, evse, wh, "Sample.Periodic")

    def stop(self, key: str, wh: int, at: datetime, evse: int = 1) -> tuple[str, dict]:
        return self._event(
            key,
            "Ended",
            "EVCommunicationLost",
            at,
            evse,
            wh,
            "Transaction.End",
            info={"stoppedReason": "EVDisconnected"},
        )


class V21(V201):
    name = "2.1"
    cp_class = V21ChargePoint


DIALECTS = [V16, V201, V21]
