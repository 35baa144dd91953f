"""The OCPP 1.6J CSMS-initiated calls beyond Core, answered by a simulated charger: Firmware Management
(UpdateFirmware, GetDiagnostics), Local Auth List Management, Reservation, Smart Charging, and the
Improved Security whitepaper (ExtendedTriggerMessage, GetLog, SignedUpdateFirmware, certificates).

`CsmsCommandsV16` is mixed into ChargerV16 (charger_v16.py), which brings `charger`, `state` (V16State),
`_call` and `_send_triggered`. As everywhere in the simulator, the @on handler decides and answers; what
the answer leads to (downloads, uploads, status notifications) starts in the @after hook as a task.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action

from cpms.simulator import smart_charging
from cpms.simulator.certificates import SIGN_TRIGGERS, CertificateStore, pem_blocks
from cpms.simulator.csms_commands_common import CsmsCommandsCommon
from cpms.simulator.local_list import LocalList
from cpms.simulator.meter import ocpp_timestamp, parse_time
from cpms.simulator.transfers import (
    FirmwareRequest,
    Job,
    UploadRequest,
    firmware_update,
    log_file_name,
    log_upload,
    simulated_log,
)

# ExtendedTriggerMessage (whitepaper). FirmwareStatusNotification asks for the signed update's
# status (SignedFirmwareStatusNotification); SignChargePointCertificate for a new key and its CSR (A02).
EXTENDED_TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "LogStatusNotification",
        "MeterValues",
        "SignChargePointCertificate",
        "StatusNotification",
    }
)


@dataclasses.dataclass
class CommandStateV16:
    """What the commands of this module keep across connections (part of V16State)."""

    local_list: LocalList = dataclasses.field(default_factory=LocalList)
    certificates: CertificateStore = dataclasses.field(default_factory=CertificateStore)
    firmware: Job = dataclasses.field(default_factory=Job)
    signed_firmware: Job = dataclasses.field(default_factory=Job)
    diagnostics: Job = dataclasses.field(default_factory=Job)
    log: Job = dataclasses.field(default_factory=Job)


class CsmsCommandsV16(CsmsCommandsCommon):
    calls = call
    results = call_result

    # What an @on handler decided, by call id, for its @after hook: the file name of GetDiagnostics and
    # GetLog, the connector a CancelReservation freed.
    _pending: dict[str, Any]
    # Set by ChargerV16.
    state: CommandStateV16
    _send_triggered: Callable[[str, int | None], None]

    # --- firmware (OCPP 1.6 5.19, 4.5; whitepaper L01) ------------------------------------------------

    @on(Action.update_firmware)
    def on_update_firmware(self, location: str, retrieve_date: str, **kwargs):
        return call_result.UpdateFirmware()

    @after(Action.update_firmware)
    def after_update_firmware(
        self, location: str, retrieve_date: str, retries: int | None = None, retry_interval=None, **kwargs
    ):
        job = self.state.firmware
        request = FirmwareRequest(
            location=location,
            retrieve_at=parse_time(retrieve_date),
            retries=retries,
            retry_interval_s=retry_interval,
        )

        async def notify(status: str) -> None:
            await self._call(call.FirmwareStatusNotification(status=status))

        job.start(
            self.charger,
            firmware_update(self.charger, job, notify, request, kind="firmware", detailed=False),
        )

    def _signed_update_status(self, firmware: dict) -> str:
        if not pem_blocks(firmware["signing_certificate"]):
            return "InvalidCertificate"
        return "AcceptedCanceled" if self.state.signed_firmware.running else "Accepted"

    @on(Action.signed_update_firmware)
    def on_signed_update_firmware(self, request_id: int, firmware: dict, **kwargs):
        return call_result.SignedUpdateFirmware(status=self._signed_update_status(firmware))

    @after(Action.signed_update_firmware)
    def after_signed_update_firmware(
        self, request_id: int, firmware: dict, retries: int | None = None, retry_interval=None, **kwargs
    ):
        if self._signed_update_status(firmware) == "InvalidCertificate":
            return
        job = self.state.signed_firmware
        request = FirmwareRequest(
            location=firmware["location"],
            request_id=request_id,
            retrieve_at=parse_time(firmware["retrieve_date_time"]),
            install_at=parse_time(firmware.get("install_date_time")),
            retries=retries,
            retry_interval_s=retry_interval,
            signed=True,
        )

        async def notify(status: str) -> None:
            await self._call(call.SignedFirmwareStatusNotification(status=status, request_id=request_id))

        job.start(
            self.charger,
            firmware_update(self.charger, job, notify, request, kind="signed_firmware", detailed=True),
            request_id=request_id,
        )

    # --- diagnostics and logs (OCPP 1.6 5.9, 4.4; whitepaper N01) ---------------------------------------

    @on(Action.get_diagnostics)
    def on_get_diagnostics(self, location: str, call_unique_id: str, **kwargs):
        file_name = log_file_name(self.charger.config.identity, "diagnostics")
        self._pending[call_unique_id] = file_name
        return call_result.GetDiagnostics(file_name=file_name)

    @after(Action.get_diagnostics)
    def after_get_diagnostics(
        self, location: str, call_unique_id: str, retries: int | None = None, retry_interval=None, **kwargs
    ):
        job = self.state.diagnostics
        request = UploadRequest(
            location=location,
            file_name=self._pending.pop(call_unique_id),
            content=simulated_log(self.charger, kind="diagnostics"),
            retries=retries,
            retry_interval_s=retry_interval,
        )

        async def notify(status: str) -> None:
            await self._call(call.DiagnosticsStatusNotification(status=status))

        job.start(
            self.charger,
            log_upload(self.charger, job, notify, request, kind="diagnostics", failed="UploadFailed"),
        )

    # --- ExtendedTriggerMessage (whitepaper) -----------------------------------------------------------

    def _extended_trigger_status(self, requested_message: str, connector_id: int | None) -> str:
        if requested_message not in EXTENDED_TRIGGERABLE:
            return "NotImplemented"
        if connector_id not in (None, 0) and connector_id not in self.charger.connectors:
            return "Rejected"
        return "Accepted"

    @on(Action.extended_trigger_message)
    def on_extended_trigger_message(self, requested_message: str, connector_id: int | None = None, **kwargs):
        status = self._extended_trigger_status(requested_message, connector_id)
        return call_result.ExtendedTriggerMessage(status=status)

    @after(Action.extended_trigger_message)
    def after_extended_trigger_message(
        self, requested_message: str, connector_id: int | None = None, **kwargs
    ):
        if self._extended_trigger_status(requested_message, connector_id) != "Accepted":
            return
        if requested_message == "FirmwareStatusNotification":
            status, request_id = self.state.signed_firmware.current
            self.charger.spawn(
                self._call(call.SignedFirmwareStatusNotification(status=status, request_id=request_id))
            )
        elif requested_message == "LogStatusNotification":
            status, request_id = self.state.log.current
            self.charger.spawn(self._call(call.LogStatusNotification(status=status, request_id=request_id)))
        elif requested_message == "SignChargePointCertificate":
            # A02: a new key and its CSR; the current certificate stays in use until CertificateSigned.
            csr = self.state.certificates.csr_new(
                SIGN_TRIGGERS[requested_message],
                identity=self.charger.config.identity,
                organization=self.charger.config.organization,
            )
            self.charger.spawn(self._call(call.SignCertificate(csr=csr)))
        else:
            self._send_triggered(requested_message, connector_id)

    # --- certificates (whitepaper use cases M03..M05, A02) -----------------------------------------

    @on(Action.get_installed_certificate_ids)
    def on_get_installed_certificate_ids(self, certificate_type: str, **kwargs):
        found = self.state.certificates.of_types([certificate_type])
        if not found:
            return call_result.GetInstalledCertificateIds(status="NotFound")
        return call_result.GetInstalledCertificateIds(
            status="Accepted", certificate_hash_data=[c.hash_data for c in found]
        )

    @on(Action.certificate_signed)
    def on_certificate_signed(self, certificate_chain: str, **kwargs):
        accepted = self.state.certificates.accept_signed("ChargePointCertificate", certificate_chain)
        return call_result.CertificateSigned(status="Accepted" if accepted else "Rejected")

    # --- local authorization list (OCPP 1.6 5.10, 5.15) ----------------------------------------------

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **kwargs):
        return call_result.GetLocalListVersion(list_version=self.state.local_list.version)

    @on(Action.send_local_list)
    def on_send_local_list(
        self, list_version: int, update_type: str, local_authorization_list: list | None = None, **kwargs
    ):
        entries = [(item["id_tag"], item.get("id_tag_info")) for item in local_authorization_list or []]
        status = self.state.local_list.update(
            version=list_version, full=update_type == "Full", entries=entries
        )
        return call_result.SendLocalList(status=status)

    # --- reservations (OCPP 1.6 5.1, 5.13) -----------------------------------------------------------

    @on(Action.reserve_now)
    def on_reserve_now(self, connector_id: int, expiry_date: str, id_tag: str, reservation_id: int, **kwargs):
        if connector_id == 0:
            # ReserveConnectorZeroSupported is false.
            return call_result.ReserveNow(status="Rejected")
        expires_at = parse_time(expiry_date)
        if expires_at is None:
            return call_result.ReserveNow(status="Rejected")
        status, _ = self.charger.reserve(
            reservation_id=reservation_id, connector_id=connector_id, id_tag=id_tag, expires_at=expires_at
        )
        return call_result.ReserveNow(status=status)

    @after(Action.reserve_now)
    def after_reserve_now(self, connector_id: int, reservation_id: int, **kwargs):
        connector = self.charger.connectors.get(connector_id)
        reservation = connector.reservation if connector is not None else None
        if connector is not None and reservation is not None and reservation.reservation_id == reservation_id:
            self.charger.spawn(self.charger.reservation_begin(connector))

    # --- smart charging (OCPP 1.6 5.5, 5.7, 5.16) ------------------------------------------------------

    def _profile_status(self, connector_id: int, profile: dict) -> str:
        purpose = profile["charging_profile_purpose"]
        if connector_id != 0 and connector_id not in self.charger.connectors:
            return "Rejected"
        if purpose == "ChargePointMaxProfile" and connector_id != 0:
            return "Rejected"
        if purpose == "TxProfile":
            # 5.16: a TxProfile without a transaction on its connector is rejected.
            connector = self.charger.connectors.get(connector_id)
            session = connector.session if connector is not None else None
            if session is None or session.record.transaction_id is None:
                return "Rejected"
            wanted = profile.get("transaction_id")
            if wanted is not None and str(wanted) != session.record.transaction_id:
                return "Rejected"
        return "Accepted"

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict, **kwargs):
        status = self._profile_status(connector_id, cs_charging_profiles)
        if status == "Accepted":
            self.charger.charging_profiles.install(
                smart_charging.from_v16(connector_id, cs_charging_profiles)
            )
        return call_result.SetChargingProfile(status=status)

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(
        self,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
        **kwargs,
    ):
        profiles = self.charger.charging_profiles
        if id is not None:
            found = profiles.matching(profile_ids=[id])
        else:
            found = profiles.matching(
                evse_id=connector_id, purpose=charging_profile_purpose, stack_level=stack_level
            )
        cleared = profiles.clear(found)
        return call_result.ClearChargingProfile(status="Accepted" if cleared else "Unknown")

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None, **kwargs
    ):
        if connector_id != 0 and connector_id not in self.charger.connectors:
            return call_result.GetCompositeSchedule(status="Rejected")
        composite = self.charger.charging_profiles.composite(
            evse_id=connector_id,
            duration_s=duration,
            unit=charging_rate_unit,
            transaction_start=self.charger.transaction_start(connector_id),
        )
        if composite is None:
            return call_result.GetCompositeSchedule(status="Rejected")
        start = ocpp_timestamp(composite.start)
        return call_result.GetCompositeSchedule(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=start,
            charging_schedule={
                "duration": composite.duration_s,
                "start_schedule": start,
                "charging_rate_unit": composite.unit,
                "charging_schedule_period": smart_charging.periods_payload(composite),
            },
        )
