"""The OCPP 2.0.1 CSMS-initiated calls beyond provisioning and transactions, answered by a simulated
charging station: firmware (L: UpdateFirmware, PublishFirmware, UnpublishFirmware), logs (N01 GetLog),
certificates (M), reservations (H), the local authorization list (D), smart charging (K), display
messages (O), CostUpdated (I), CustomerInformation (N09) and SetNetworkProfile (B09).

`CsmsCommandsV201` is mixed into ChargerV201 (charger_v201.py), which brings `charger`, `state`
(V201State), `_call` and `_pending`. The @on handler decides and answers; what the answer leads to
(downloads, uploads, notifications, reports) starts in the @after hook as a task.
"""

import asyncio
import hashlib
import re
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from ocpp.routing import after, on
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action

from cpms.simulator import smart_charging
from cpms.simulator.certificates import CertificateStore, hash_data, pem_blocks
from cpms.simulator.charger import Endpoint, SimulatedCharger
from cpms.simulator.csms_commands_common import CsmsCommandsCommon
from cpms.simulator.local_list import LocalList
from cpms.simulator.meter import ocpp_timestamp, parse_time, utc_now
from cpms.simulator.transfers import (
    FirmwareRequest,
    Job,
    download,
    firmware_update,
)

MAX_DISPLAY_MESSAGES = 10
# SetNetworkProfile: the slots the station has (NetworkConfigurationPriority would list them).
NETWORK_SLOTS = range(0, 10)
NETWORK_VERSIONS = frozenset({"OCPP16", "OCPP20"})
NETWORK_PRIORITY = ("OCPPCommCtrlr", "NetworkConfigurationPriority")
CHARGING_STATION_CERTIFICATE = "ChargingStationCertificate"
CHARGING_LIMIT_SOURCE = "CSO"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class CommandStateV201:
    """What the commands of this module keep across connections (part of V201State)."""

    local_list: LocalList = field(default_factory=LocalList)
    certificates: CertificateStore = field(default_factory=CertificateStore)
    firmware: Job = field(default_factory=Job)
    publish: Job = field(default_factory=Job)
    log: Job = field(default_factory=Job)
    # PublishFirmware: md5 checksum (lowercase) -> the URI the local controller serves it at.
    published: dict[str, str] = field(default_factory=dict)
    # The checksum of the publication under way.
    publishing: str | None = None
    # SetDisplayMessage: id -> MessageInfo as received (snake_case).
    display_messages: dict[int, dict] = field(default_factory=dict)
    # SetNetworkProfile: slot -> connectionData as received.
    network_profiles: dict[int, dict] = field(default_factory=dict)
    # CostUpdated: transaction id -> the running total cost.
    costs: dict[str, float] = field(default_factory=dict)

    def endpoint_after_reset(self, charger: SimulatedCharger) -> Endpoint | None:
        """Where the charger connects after a reset (B09, A05.FR.05): the connection profile in the first slot
        of OCPPCommCtrlr.NetworkConfigurationPriority (a device-model variable: V201State holds both), its
        URL and securityProfile, and for 3 the signed ChargingStationCertificate with its key. None: a slot
        with no profile set, or the same endpoint (nothing changes)."""
        priority = self.variables.get(NETWORK_PRIORITY)  # type: ignore[attr-defined]
        first = (priority.value if priority else "").split(",")[0].strip()
        profile = self.network_profiles.get(int(first)) if first.isdigit() else None
        if profile is None:
            return None
        url, level = profile["ocpp_csms_url"], int(profile["security_profile"])
        if url == charger.endpoint.url and level == charger.endpoint.security_profile:
            return None
        if level < 3:
            return Endpoint(url=url, security_profile=level)
        files = self.certificates.client_files(CHARGING_STATION_CERTIFICATE, charger.certificate_dir())
        cert_file, key_file = (str(files[0]), str(files[1])) if files else (None, None)
        return Endpoint(url=url, security_profile=3, cert_file=cert_file, key_file=key_file)


class CsmsCommandsV201(CsmsCommandsCommon):
    calls = call
    results = call_result
    state: CommandStateV201  # set by ChargerV201

    # --- firmware (L01, L02) ---------------------------------------------------------------------------

    def _update_status(self, firmware: dict) -> str:
        certificate = firmware.get("signing_certificate")
        if certificate is not None and not pem_blocks(certificate):
            return "InvalidCertificate"
        # L01: a new request cancels the update under way (AcceptedCanceled).
        return "AcceptedCanceled" if self.state.firmware.running else "Accepted"

    @on(Action.update_firmware)
    def on_update_firmware(self, request_id: int, firmware: dict, **kwargs):
        return call_result.UpdateFirmware(status=self._update_status(firmware))

    @after(Action.update_firmware)
    def after_update_firmware(
        self, request_id: int, firmware: dict, retries: int | None = None, retry_interval=None, **kwargs
    ):
        if self._update_status(firmware) == "InvalidCertificate":
            return
        job = self.state.firmware
        request = FirmwareRequest(
            location=firmware["location"],
            request_id=request_id,
            retrieve_at=parse_time(firmware["retrieve_date_time"]),
            install_at=parse_time(firmware.get("install_date_time")),
            retries=retries,
            retry_interval_s=retry_interval,
            signed=firmware.get("signature") is not None,
        )

        async def notify(status: str) -> None:
            await self._call(call.FirmwareStatusNotification(status=status, request_id=request_id))

        job.start(
            self.charger,
            firmware_update(self.charger, job, notify, request, kind="firmware", detailed=True),
            request_id=request_id,
        )

    # --- publishing firmware on a local controller (L03, L04) ------------------------------------------

    @on(Action.publish_firmware)
    def on_publish_firmware(self, location: str, checksum: str, request_id: int, **kwargs):
        return call_result.PublishFirmware(status="Accepted")

    @after(Action.publish_firmware)
    def after_publish_firmware(
        self,
        location: str,
        checksum: str,
        request_id: int,
        retries: int | None = None,
        retry_interval=None,
        **kwargs,
    ):
        request = FirmwareRequest(
            location=location, request_id=request_id, retries=retries, retry_interval_s=retry_interval
        )
        self.state.publishing = checksum.lower()
        self.state.publish.start(
            self.charger, self._publish(request, checksum.lower()), request_id=request_id
        )

    async def _publish(self, request: FirmwareRequest, checksum: str) -> None:
        """Downloading, Downloaded, ChecksumVerified (the file's MD5 is `checksum`), Published with the
        URI it is served at; or DownloadFailed, InvalidChecksum."""
        job = self.state.publish

        async def notify(status: str, location: list[str] | None = None) -> None:
            await self._call(
                call.PublishFirmwareStatusNotification(
                    status=status, location=location, request_id=request.request_id
                )
            )

        try:
            await job.report(notify, "Downloading")
            transfer, ok = await download(self.charger, request, kind="publish_firmware")
            if not ok:
                await job.report(notify, "DownloadFailed")
                return
            await job.report(notify, "Downloaded")
            if transfer.md5 != checksum:
                await job.report(notify, "InvalidChecksum")
                return
            await job.report(notify, "ChecksumVerified")
            name = urlsplit(request.location).path.rsplit("/", 1)[-1] or "firmware.bin"
            identity = _SAFE.sub("_", self.charger.config.identity)
            uri = f"http://{identity.lower()}.local/firmware/{quote(name)}"
            self.state.published[checksum] = uri
            job.status = "Published"
            await notify("Published", [uri])
        finally:
            # Unless a newer PublishFirmware replaced this one (it runs as the job's task now).
            if self.state.publish.task is asyncio.current_task():
                self.state.publishing = None

    @on(Action.unpublish_firmware)
    def on_unpublish_firmware(self, checksum: str, **kwargs):
        checksum = checksum.lower()
        if self.state.publish.running and self.state.publishing == checksum:
            return call_result.UnpublishFirmware(status="DownloadOngoing")
        if self.state.published.pop(checksum, None) is None:
            return call_result.UnpublishFirmware(status="NoFirmware")
        return call_result.UnpublishFirmware(status="Unpublished")

    # --- certificates (M03, M04, M05, A02) -------------------------------------------------------------

    @on(Action.get_installed_certificate_ids)
    def on_get_installed_certificate_ids(self, certificate_type: list[str] | None = None, **kwargs):
        store = self.state.certificates
        chains = [
            {"certificate_type": c.certificate_type, "certificate_hash_data": c.hash_data}
            for c in store.of_types(certificate_type)
        ]
        v2g_chain = store.signed.get("V2GCertificate")
        if v2g_chain and (not certificate_type or "V2GCertificateChain" in certificate_type):
            chains.append(
                {
                    "certificate_type": "V2GCertificateChain",
                    "certificate_hash_data": hash_data(pem_blocks(v2g_chain)[0]),
                }
            )
        if not chains:
            return call_result.GetInstalledCertificateIds(status="NotFound")
        return call_result.GetInstalledCertificateIds(status="Accepted", certificate_hash_data_chain=chains)

    @on(Action.certificate_signed)
    def on_certificate_signed(self, certificate_chain: str, certificate_type: str | None = None, **kwargs):
        kind = certificate_type or "ChargingStationCertificate"
        accepted = self.state.certificates.accept_signed(kind, certificate_chain)
        return call_result.CertificateSigned(status="Accepted" if accepted else "Rejected")

    # --- reservations (H01, H02) -----------------------------------------------------------------------

    @on(Action.reserve_now)
    def on_reserve_now(
        self,
        id: int,
        expiry_date_time: str,
        id_token: dict,
        call_unique_id: str,
        evse_id: int | None = None,
        **kwargs,
    ):
        expires_at = parse_time(expiry_date_time)
        if expires_at is None or (evse_id is not None and evse_id not in self.charger.connectors):
            return call_result.ReserveNow(status="Rejected")
        status, connector = self.charger.reserve(
            reservation_id=id, connector_id=evse_id, id_tag=id_token["id_token"], expires_at=expires_at
        )
        if connector is not None:
            self._pending[call_unique_id] = connector
        return call_result.ReserveNow(status=status)

    @after(Action.reserve_now)
    def after_reserve_now(self, call_unique_id: str, **kwargs):
        connector = self._pending.pop(call_unique_id, None)
        if connector is not None:
            self.charger.spawn(self.charger.reservation_begin(connector))

    async def reservation_ended(self, reservation_id: int) -> None:
        await self._call(
            call.ReservationStatusUpdate(reservation_id=reservation_id, reservation_update_status="Expired")
        )

    # --- local authorization list (D01, D02) -----------------------------------------------------------

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **kwargs):
        return call_result.GetLocalListVersion(version_number=self.state.local_list.version)

    @on(Action.send_local_list)
    def on_send_local_list(
        self, version_number: int, update_type: str, local_authorization_list: list | None = None, **kwargs
    ):
        entries = [
            (item["id_token"]["id_token"], item.get("id_token_info"))
            for item in local_authorization_list or []
        ]
        status = self.state.local_list.update(
            version=version_number, full=update_type == "Full", entries=entries
        )
        return call_result.SendLocalList(status=status)

    # --- smart charging (K01, K08, K09, K10) -----------------------------------------------------------

    def _profile_status(self, evse_id: int, profile: dict) -> str:
        purpose = profile["charging_profile_purpose"]
        if evse_id != 0 and evse_id not in self.charger.connectors:
            return "Rejected"
        if purpose == "ChargingStationExternalConstraints":
            return "Rejected"  # set by an external system, never by the CSMS (K01)
        if purpose == "ChargingStationMaxProfile" and evse_id != 0:
            return "Rejected"
        if purpose == "TxProfile":
            # A TxProfile names a transaction running on its EVSE.
            connector = self.charger.connectors.get(evse_id)
            session = connector.session if connector is not None else None
            if session is None or profile.get("transaction_id") != session.record.transaction_id:
                return "Rejected"
        return "Accepted"

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict, **kwargs):
        status = self._profile_status(evse_id, charging_profile)
        if status == "Accepted":
            self.charger.charging_profiles.install(smart_charging.from_v201(evse_id, charging_profile))
        return call_result.SetChargingProfile(status=status)

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(
        self, charging_profile_id: int | None = None, charging_profile_criteria: dict | None = None, **kwargs
    ):
        profiles = self.charger.charging_profiles
        if charging_profile_id is not None:
            found = profiles.matching(profile_ids=[charging_profile_id])
        else:
            criteria = charging_profile_criteria or {}
            found = profiles.matching(
                evse_id=criteria.get("evse_id"),
                purpose=criteria.get("charging_profile_purpose"),
                stack_level=criteria.get("stack_level"),
            )
        cleared = profiles.clear(found)
        return call_result.ClearChargingProfile(status="Accepted" if cleared else "Unknown")

    @on(Action.get_charging_profiles)
    def on_get_charging_profiles(
        self,
        request_id: int,
        charging_profile: dict,
        call_unique_id: str,
        evse_id: int | None = None,
        **kwargs,
    ):
        sources = charging_profile.get("charging_limit_source")
        found = []
        if not sources or CHARGING_LIMIT_SOURCE in sources:
            found = self.charger.charging_profiles.matching(
                profile_ids=charging_profile.get("charging_profile_id"),
                evse_id=evse_id,
                purpose=charging_profile.get("charging_profile_purpose"),
                stack_level=charging_profile.get("stack_level"),
            )
        if not found:
            return call_result.GetChargingProfiles(status="NoProfiles")
        self._pending[call_unique_id] = found
        return call_result.GetChargingProfiles(status="Accepted")

    @after(Action.get_charging_profiles)
    def after_get_charging_profiles(self, request_id: int, call_unique_id: str, **kwargs):
        found = self._pending.pop(call_unique_id, None)
        if found is not None:
            self.charger.spawn(self._report_charging_profiles(request_id, found))

    async def _report_charging_profiles(self, request_id: int, profiles: list) -> None:
        """One ReportChargingProfiles per EVSE (K09: evseId is per message), tbc on all but the last."""
        by_evse: dict[int, list] = {}
        for profile in profiles:
            by_evse.setdefault(profile.evse_id, []).append(profile.payload)
        for number, (evse_id, payloads) in enumerate(sorted(by_evse.items())):
            await self._call(
                call.ReportChargingProfiles(
                    request_id=request_id,
                    charging_limit_source=CHARGING_LIMIT_SOURCE,
                    evse_id=evse_id,
                    charging_profile=payloads,
                    tbc=number < len(by_evse) - 1,
                )
            )

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(
        self, duration: int, evse_id: int, charging_rate_unit: str | None = None, **kwargs
    ):
        if evse_id != 0 and evse_id not in self.charger.connectors:
            return call_result.GetCompositeSchedule(status="Rejected")
        composite = self.charger.charging_profiles.composite(
            evse_id=evse_id,
            duration_s=duration,
            unit=charging_rate_unit,
            transaction_start=self.charger.transaction_start(evse_id),
        )
        if composite is None:
            return call_result.GetCompositeSchedule(status="Rejected")
        return call_result.GetCompositeSchedule(
            status="Accepted",
            schedule={
                "evse_id": evse_id,
                "duration": composite.duration_s,
                "schedule_start": ocpp_timestamp(composite.start),
                "charging_rate_unit": composite.unit,
                "charging_schedule_period": smart_charging.periods_payload(composite),
            },
        )

    # --- display messages (O01..O06) -------------------------------------------------------------------

    @on(Action.set_display_message)
    def on_set_display_message(self, message: dict, **kwargs):
        messages = self.state.display_messages
        transaction_id = message.get("transaction_id")
        if transaction_id is not None and self.charger.session_by_transaction(transaction_id) is None:
            return call_result.SetDisplayMessage(status="UnknownTransaction")
        if message["id"] not in messages and len(messages) >= MAX_DISPLAY_MESSAGES:
            return call_result.SetDisplayMessage(status="Rejected")
        messages[message["id"]] = message
        return call_result.SetDisplayMessage(status="Accepted")

    def _display_messages(self, id: list[int] | None, priority: str | None, state: str | None) -> list[dict]:
        return [
            m
            for m in self.state.display_messages.values()
            if (not id or m["id"] in id)
            and (priority is None or m["priority"] == priority)
            and (state is None or m.get("state") == state)
        ]

    @on(Action.get_display_messages)
    def on_get_display_messages(
        self, request_id: int, id: list[int] | None = None, priority: str | None = None, state=None, **kwargs
    ):
        found = self._display_messages(id, priority, state)
        return call_result.GetDisplayMessages(status="Accepted" if found else "Unknown")

    @after(Action.get_display_messages)
    def after_get_display_messages(
        self, request_id: int, id: list[int] | None = None, priority: str | None = None, state=None, **kwargs
    ):
        found = self._display_messages(id, priority, state)
        if found:
            self.charger.spawn(
                self._call(call.NotifyDisplayMessages(request_id=request_id, message_info=found, tbc=False))
            )

    @on(Action.clear_display_message)
    def on_clear_display_message(self, id: int, **kwargs):
        found = self.state.display_messages.pop(id, None) is not None
        return call_result.ClearDisplayMessage(status="Accepted" if found else "Unknown")

    # --- tariff and cost (I03), customer information (N09, N10), network profiles (B09) ---------------

    @on(Action.cost_updated)
    def on_cost_updated(self, total_cost: float, transaction_id: str, **kwargs):
        self.state.costs[transaction_id] = total_cost
        return call_result.CostUpdated()

    @on(Action.customer_information)
    def on_customer_information(
        self,
        request_id: int,
        report: bool,
        clear: bool,
        customer_certificate: dict | None = None,
        id_token: dict | None = None,
        customer_identifier: str | None = None,
        **kwargs,
    ):
        if customer_certificate is None and id_token is None and customer_identifier is None:
            return call_result.CustomerInformation(status="Invalid")
        return call_result.CustomerInformation(status="Accepted")

    @after(Action.customer_information)
    def after_customer_information(
        self,
        request_id: int,
        report: bool,
        clear: bool,
        customer_certificate: dict | None = None,
        id_token: dict | None = None,
        customer_identifier: str | None = None,
        **kwargs,
    ):
        if not report or (customer_certificate is None and id_token is None and customer_identifier is None):
            return
        data = self._customer_data(id_token["id_token"] if id_token else customer_identifier)
        self.charger.spawn(
            self._call(
                call.NotifyCustomerInformation(
                    data=data,
                    seq_no=0,
                    generated_at=ocpp_timestamp(utc_now()),
                    request_id=request_id,
                    tbc=False,
                )
            )
        )

    def _customer_data(self, customer: str | None) -> str:
        """What the station knows of a customer: their sessions and their local list entry. The simulator
        keeps nothing else about customers, so a clear request has nothing more to erase."""
        if customer is None:
            return "No customer data for this certificate."
        sessions = [s for s in self.charger.result.sessions if s.id_tag == customer]
        listed = customer in self.state.local_list.entries
        digest = hashlib.sha256(customer.encode()).hexdigest()[:12]
        data = (
            f"Customer {digest}: {len(sessions)} session(s) on this station; "
            f"{'in' if listed else 'not in'} the local authorization list."
        )
        return data[:512]

    @on(Action.set_network_profile)
    def on_set_network_profile(self, configuration_slot: int, connection_data: dict, **kwargs):
        if configuration_slot not in NETWORK_SLOTS or connection_data["ocpp_version"] not in NETWORK_VERSIONS:
            return call_result.SetNetworkProfile(status="Rejected")
        # A05: a lower security profile than the current one is never taken.
        if int(connection_data["security_profile"]) < self.charger.endpoint.security_profile:
            return call_result.SetNetworkProfile(status="Rejected")
        self.state.network_profiles[configuration_slot] = connection_data
        return call_result.SetNetworkProfile(status="Accepted")
