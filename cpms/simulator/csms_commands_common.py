"""CSMS-initiated calls a simulated charger answers the same way in OCPP 1.6 (security whitepaper) and
2.0.1: GetLog, InstallCertificate, DeleteCertificate, CancelReservation. Mixed into CsmsCommandsV16 and
CsmsCommandsV201, which name their version's message classes in `calls` / `results` (ocpp.v16 or
ocpp.v201 `call` / `call_result`); the action names are the same in both versions."""

from types import ModuleType
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on

from cpms.simulator.transfers import UploadRequest, log_file_name, log_upload, simulated_log

if TYPE_CHECKING:
    from cpms.simulator.charger import SimulatedCharger
    from cpms.simulator.csms_commands_v16 import CommandStateV16
    from cpms.simulator.csms_commands_v201 import CommandStateV201


class CsmsCommandsCommon:
    calls: ModuleType
    results: ModuleType
    # What an @on handler decided, by call id, for its @after hook (a file name, a freed connector).
    _pending: dict[str, Any]
    # Set by the charger class this is mixed into (its RecordingClient and its own __init__).
    charger: "SimulatedCharger"
    state: "CommandStateV16 | CommandStateV201"
    if TYPE_CHECKING:  # RecordingClient's, later in the charger's bases: declared here, not defined

        async def _call(self, payload: Any) -> Any: ...

    # --- logs (whitepaper N01 / 2.0.1 N01) -------------------------------------------------------------

    @on("GetLog")
    def on_get_log(self, log: dict, log_type: str, request_id: int, call_unique_id: str, **kwargs):
        file_name = log_file_name(self.charger.config.identity, log_type)
        self._pending[call_unique_id] = file_name
        status = "AcceptedCanceled" if self.state.log.running else "Accepted"
        return self.results.GetLog(status=status, filename=file_name)

    @after("GetLog")
    def after_get_log(
        self,
        log: dict,
        log_type: str,
        request_id: int,
        call_unique_id: str,
        retries: int | None = None,
        retry_interval=None,
        **kwargs,
    ):
        job = self.state.log
        request = UploadRequest(
            location=log["remote_location"],
            file_name=self._pending.pop(call_unique_id),
            content=simulated_log(self.charger, kind=log_type),
            request_id=request_id,
            retries=retries,
            retry_interval_s=retry_interval,
        )

        async def notify(status: str) -> None:
            await self._call(self.calls.LogStatusNotification(status=status, request_id=request_id))

        job.start(
            self.charger,
            log_upload(
                self.charger,
                job,
                notify,
                request,
                kind="log",
                failed="UploadFailure",
                denied="PermissionDenied",
            ),
            request_id=request_id,
        )

    # --- certificates (whitepaper M03, M05 / 2.0.1 M03, M05) -------------------------------------------

    @on("InstallCertificate")
    def on_install_certificate(self, certificate_type: str, certificate: str, **kwargs):
        installed = self.state.certificates.install(certificate_type, certificate)
        return self.results.InstallCertificate(status="Accepted" if installed else "Rejected")

    @on("DeleteCertificate")
    def on_delete_certificate(self, certificate_hash_data: dict, **kwargs):
        deleted = self.state.certificates.delete(certificate_hash_data)
        return self.results.DeleteCertificate(status="Accepted" if deleted else "NotFound")

    # --- reservations (1.6 5.1 / 2.0.1 H02) -----------------------------------------------------------

    @on("CancelReservation")
    def on_cancel_reservation(self, reservation_id: int, call_unique_id: str, **kwargs):
        connector = self.charger.cancel_reservation(reservation_id)
        if connector is None:
            return self.results.CancelReservation(status="Rejected")
        self._pending[call_unique_id] = connector
        return self.results.CancelReservation(status="Accepted")

    @after("CancelReservation")
    def after_cancel_reservation(self, call_unique_id: str, **kwargs):
        connector = self._pending.pop(call_unique_id, None)
        if connector is not None:
            self.charger.spawn(self.charger.availability_notify(connector.connector_id))
