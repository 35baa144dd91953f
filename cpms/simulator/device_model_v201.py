"""The device model of a simulated OCPP 2.0.1 charging station and the calls that read and change it:
Get/SetVariables (B05, B06), GetBaseReport and GetReport (B07, B08, answered with NotifyReport), and
monitoring (N: SetVariableMonitoring, ClearVariableMonitoring, SetMonitoringBase, SetMonitoringLevel,
GetMonitoringReport, answered with NotifyMonitoringReport).

The model is small: (component, variable) -> the Actual attribute, components without instance or EVSE.
Monitors are kept and reported; the simulator never fires them (no NotifyEvent).

`DeviceModelV201` is mixed into ChargerV201 (charger_v201.py), which brings `charger`, `state`
(V201State), `_call` and `_pending`.
"""

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action

from cpms.simulator.charger import SimulatedCharger
from cpms.simulator.client import MODEL, VENDOR, Setting
from cpms.simulator.meter import ocpp_timestamp, utc_now

DATA_TYPES = {"int": "integer", "bool": "boolean", "str": "string", "list": "MemberList"}
HEARTBEAT_INTERVAL = ("OCPPCommCtrlr", "HeartbeatInterval")
TX_UPDATED_INTERVAL = ("SampledDataCtrlr", "TxUpdatedInterval")
AUTHORIZE_REMOTE_START = ("AuthCtrlr", "AuthorizeRemoteStart")
MONITORING_BASE = ("MonitoringCtrlr", "ActiveMonitoringBase")
MONITORING_LEVEL = ("MonitoringCtrlr", "ActiveMonitoringLevel")
# NotifyReport and NotifyMonitoringReport carry at most this many items each (tbc on all but the last).
REPORT_ITEMS_PER_MESSAGE = 20
# B07: SummaryInventory reports the state of the components.
SUMMARY_VARIABLES = frozenset({"AvailabilityState", "Available", "Enabled", "Problem"})
THRESHOLD_MONITORS = frozenset({"UpperThreshold", "LowerThreshold"})
MONITOR_CRITERIA = {
    "ThresholdMonitoring": THRESHOLD_MONITORS,
    "DeltaMonitoring": frozenset({"Delta"}),
    "PeriodicMonitoring": frozenset({"Periodic", "PeriodicClockAligned"}),
}


def default_variables(charger: SimulatedCharger) -> dict[tuple[str, str], Setting]:
    """A small device model: (component, variable) -> the Actual attribute."""
    return {
        ("ChargingStation", "Model"): Setting(MODEL, readonly=True),
        ("ChargingStation", "VendorName"): Setting(VENDOR, readonly=True),
        ("ChargingStation", "AvailabilityState"): Setting("Available", readonly=True),
        ("SecurityCtrlr", "Identity"): Setting(charger.config.identity, readonly=True),
        HEARTBEAT_INTERVAL: Setting(str(int(charger.heartbeat_interval_s)), kind="int"),
        # B09/A05: the connection-profile slots in the order tried after a reset (SetNetworkProfile fills them;
        # slot 0 stands for the configured connection and holds no profile).
        ("OCPPCommCtrlr", "NetworkConfigurationPriority"): Setting("0"),
        # An integer on the wire; a sub-second simulator interval shows as 1.
        TX_UPDATED_INTERVAL: Setting(str(max(1, math.ceil(charger.meter_interval_s))), kind="int"),
        ("SampledDataCtrlr", "TxUpdatedMeasurands"): Setting(
            "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC", kind="list"
        ),
        ("SampledDataCtrlr", "TxEndedMeasurands"): Setting("Energy.Active.Import.Register,SoC", kind="list"),
        AUTHORIZE_REMOTE_START: Setting("false", kind="bool"),
        ("TxCtrlr", "StopTxOnEVSideDisconnect"): Setting("true", readonly=True, kind="bool"),
        ("TxCtrlr", "EVConnectionTimeOut"): Setting("60", kind="int"),
        ("LocalAuthListCtrlr", "Enabled"): Setting("true", readonly=True, kind="bool"),
        ("ReservationCtrlr", "Enabled"): Setting("true", readonly=True, kind="bool"),
        ("SmartChargingCtrlr", "Enabled"): Setting("true", readonly=True, kind="bool"),
        ("DisplayMessageCtrlr", "Enabled"): Setting("true", readonly=True, kind="bool"),
        ("MonitoringCtrlr", "Enabled"): Setting("true", readonly=True, kind="bool"),
        # Changed by SetMonitoringBase and SetMonitoringLevel, not by SetVariables.
        MONITORING_BASE: Setting("All", readonly=True),
        MONITORING_LEVEL: Setting("9", readonly=True, kind="int"),
    }


@dataclass
class Monitor:
    monitor_id: int
    # Component and variable as the CSMS named them (snake_case).
    component: dict
    variable: dict
    type: str
    value: float
    severity: int
    transaction: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return self.component["name"], self.variable["name"]

    def as_wire(self) -> dict:
        return {
            "id": self.monitor_id,
            "transaction": self.transaction,
            "value": self.value,
            "type": self.type,
            "severity": self.severity,
        }


@dataclass(kw_only=True)
class DeviceModelState:
    variables: dict[tuple[str, str], Setting]
    monitors: dict[int, Monitor] = field(default_factory=dict)
    next_monitor_id: int = 1


def _chunks(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)] or [[]]


def _matches(criteria: list[dict] | None, component: str, variable: str) -> bool:
    """GetReport/GetMonitoringReport componentVariable: a component (all its variables) or one variable.
    The simulator's components have no EVSE or instance, so a criterion naming one matches nothing."""
    if not criteria:
        return True
    for item in criteria:
        named = item["component"]
        if named["name"] != component or "evse" in named or "instance" in named:
            continue
        wanted = item.get("variable")
        if wanted is None or (wanted["name"] == variable and "instance" not in wanted):
            return True
    return False


class DeviceModelV201:
    # Set by ChargerV201 (its RecordingClient and its own __init__).
    charger: SimulatedCharger
    state: DeviceModelState
    _pending: dict[str, Any]
    if TYPE_CHECKING:  # RecordingClient's, later in the charger's bases: declared here, not defined

        async def _call(self, payload: Any) -> Any: ...

    # --- variables (B05, B06) --------------------------------------------------------------------------

    def _variable(self, item: dict) -> tuple[Setting | None, str]:
        """The setting a GetVariableData/SetVariableData names, or None and the status saying why."""
        if item.get("attribute_type", "Actual") != "Actual":
            return None, "NotSupportedAttributeType"
        component = item["component"]["name"]
        setting = self.state.variables.get((component, item["variable"]["name"]))
        if setting is None:
            known = any(name == component for name, _ in self.state.variables)
            return None, "UnknownVariable" if known else "UnknownComponent"
        return setting, "Accepted"

    @on(Action.get_variables)
    def on_get_variables(self, get_variable_data: list[dict], **kwargs):
        results = []
        for item in get_variable_data:
            setting, status = self._variable(item)
            result = _variable_result(item, status)
            if setting is not None:
                result["attribute_value"] = setting.value
            results.append(result)
        return call_result.GetVariables(get_variable_result=results)

    @on(Action.set_variables)
    def on_set_variables(self, set_variable_data: list[dict], **kwargs):
        results = []
        for item in set_variable_data:
            setting, status = self._variable(item)
            value = item["attribute_value"]
            if setting is not None and (setting.readonly or not setting.accepts(value)):
                status = "Rejected"
            elif setting is not None:
                setting.set(value)
                self._apply(item["component"]["name"], item["variable"]["name"], setting)
            results.append(_variable_result(item, status))
        return call_result.SetVariables(set_variable_result=results)

    def _apply(self, component: str, variable: str, setting: Setting) -> None:
        key = (component, variable)
        if key == HEARTBEAT_INTERVAL:
            self.charger.set_heartbeat_interval(int(setting.value))
        elif key == TX_UPDATED_INTERVAL and int(setting.value) > 0:
            self.charger.meter_interval_s = int(setting.value)
        elif key == AUTHORIZE_REMOTE_START:
            self.charger.authorize_remote_starts = setting.value == "true"

    # --- reports (B07, B08) ----------------------------------------------------------------------------

    def _report_data(self, selected: list[tuple[str, str]]) -> list[dict]:
        report = []
        for component, variable in selected:
            setting = self.state.variables[(component, variable)]
            report.append(
                {
                    "component": {"name": component},
                    "variable": {"name": variable},
                    "variableAttribute": [
                        {
                            "type": "Actual",
                            "value": setting.value,
                            "mutability": "ReadOnly" if setting.readonly else "ReadWrite",
                        }
                    ],
                    "variableCharacteristics": {
                        "dataType": DATA_TYPES[setting.kind],
                        "supportsMonitoring": True,
                    },
                }
            )
        return report

    async def _notify_report(self, request_id: int, report: list[dict]) -> None:
        chunks = _chunks(report, REPORT_ITEMS_PER_MESSAGE)
        generated_at = ocpp_timestamp(utc_now())
        for seq_no, chunk in enumerate(chunks):
            await self._call(
                call.NotifyReport(
                    request_id=request_id,
                    generated_at=generated_at,
                    seq_no=seq_no,
                    tbc=seq_no < len(chunks) - 1,
                    report_data=chunk or None,
                )
            )

    @on(Action.get_base_report)
    def on_get_base_report(self, request_id: int, report_base: str, call_unique_id: str, **kwargs):
        selected = [
            key
            for key, setting in self.state.variables.items()
            if report_base == "FullInventory"
            or (report_base == "ConfigurationInventory" and not setting.readonly)
            or (report_base == "SummaryInventory" and key[1] in SUMMARY_VARIABLES)
        ]
        self._pending[call_unique_id] = self._report_data(selected)
        return call_result.GetBaseReport(status="Accepted")

    @after(Action.get_base_report)
    def after_get_base_report(self, request_id: int, call_unique_id: str, **kwargs):
        self.charger.spawn(self._notify_report(request_id, self._pending.pop(call_unique_id)))

    @on(Action.get_report)
    def on_get_report(
        self,
        request_id: int,
        call_unique_id: str,
        component_criteria: list[str] | None = None,
        component_variable: list[dict] | None = None,
        **kwargs,
    ):
        # Every component of the simulator is Active, Available and Enabled, and none has a Problem.
        healthy = not component_criteria or bool({"Active", "Available", "Enabled"} & set(component_criteria))
        selected = [key for key in self.state.variables if healthy and _matches(component_variable, *key)]
        if not selected:
            return call_result.GetReport(status="EmptyResultSet")
        self._pending[call_unique_id] = self._report_data(selected)
        return call_result.GetReport(status="Accepted")

    @after(Action.get_report)
    def after_get_report(self, request_id: int, call_unique_id: str, **kwargs):
        report = self._pending.pop(call_unique_id, None)
        if report is not None:
            self.charger.spawn(self._notify_report(request_id, report))

    # --- monitoring (N) --------------------------------------------------------------------------------

    def _monitor_status(self, item: dict, setting: Setting | None, status: str) -> str:
        if setting is None:
            return status
        if item["type"] in THRESHOLD_MONITORS and setting.kind != "int":
            return "UnsupportedMonitorType"
        if not 0 <= item["severity"] <= 9:
            return "Rejected"
        monitor_id = item.get("id")
        if monitor_id is not None:
            # With an id the CSMS replaces that monitor; an id the station does not know is rejected.
            return "Accepted" if monitor_id in self.state.monitors else "Rejected"
        key = (item["component"]["name"], item["variable"]["name"])
        for monitor in self.state.monitors.values():
            if (monitor.key, monitor.type, monitor.severity) == (key, item["type"], item["severity"]):
                return "Duplicate"
        return "Accepted"

    @on(Action.set_variable_monitoring)
    def on_set_variable_monitoring(self, set_monitoring_data: list[dict], **kwargs):
        results = []
        for item in set_monitoring_data:
            setting, status = self._variable({"component": item["component"], "variable": item["variable"]})
            status = self._monitor_status(item, setting, status)
            result = {
                "status": status,
                "type": item["type"],
                "severity": item["severity"],
                "component": item["component"],
                "variable": item["variable"],
            }
            monitor_id = item.get("id")
            if status == "Accepted":
                if monitor_id is None:
                    monitor_id = self.state.next_monitor_id
                    self.state.next_monitor_id += 1
                self.state.monitors[monitor_id] = Monitor(
                    monitor_id=monitor_id,
                    component=item["component"],
                    variable=item["variable"],
                    type=item["type"],
                    value=item["value"],
                    severity=item["severity"],
                    transaction=item.get("transaction", False),
                )
            if monitor_id is not None:
                result["id"] = monitor_id
            results.append(result)
        return call_result.SetVariableMonitoring(set_monitoring_result=results)

    @on(Action.clear_variable_monitoring)
    def on_clear_variable_monitoring(self, id: list[int], **kwargs):
        results = []
        for monitor_id in id:
            found = self.state.monitors.pop(monitor_id, None) is not None
            results.append({"status": "Accepted" if found else "NotFound", "id": monitor_id})
        return call_result.ClearVariableMonitoring(clear_monitoring_result=results)

    @on(Action.set_monitoring_base)
    def on_set_monitoring_base(self, monitoring_base: str, **kwargs):
        # All: the preconfigured monitors (the simulator has none) and the custom ones stay. FactoryDefault
        # and HardWiredOnly: the custom monitors go (N03).
        if monitoring_base != "All":
            self.state.monitors.clear()
        self.state.variables[MONITORING_BASE].value = monitoring_base
        return call_result.SetMonitoringBase(status="Accepted")

    @on(Action.set_monitoring_level)
    def on_set_monitoring_level(self, severity: int, **kwargs):
        if not 0 <= severity <= 9:
            return call_result.SetMonitoringLevel(status="Rejected")
        self.state.variables[MONITORING_LEVEL].value = str(severity)
        return call_result.SetMonitoringLevel(status="Accepted")

    @on(Action.get_monitoring_report)
    def on_get_monitoring_report(
        self,
        request_id: int,
        call_unique_id: str,
        monitoring_criteria: list[str] | None = None,
        component_variable: list[dict] | None = None,
        **kwargs,
    ):
        types = (
            set().union(*(MONITOR_CRITERIA[c] for c in monitoring_criteria)) if monitoring_criteria else None
        )
        monitors = [
            m
            for m in self.state.monitors.values()
            if (types is None or m.type in types) and _matches(component_variable, *m.key)
        ]
        if not monitors:
            return call_result.GetMonitoringReport(status="EmptyResultSet")
        self._pending[call_unique_id] = monitors
        return call_result.GetMonitoringReport(status="Accepted")

    @after(Action.get_monitoring_report)
    def after_get_monitoring_report(self, request_id: int, call_unique_id: str, **kwargs):
        monitors = self._pending.pop(call_unique_id, None)
        if monitors is not None:
            self.charger.spawn(self._notify_monitoring_report(request_id, monitors))

    async def _notify_monitoring_report(self, request_id: int, monitors: list[Monitor]) -> None:
        by_variable: dict[tuple[str, str], list[Monitor]] = {}
        for monitor in monitors:
            by_variable.setdefault(monitor.key, []).append(monitor)
        data = [
            {
                "component": group[0].component,
                "variable": group[0].variable,
                "variable_monitoring": [m.as_wire() for m in group],
            }
            for group in by_variable.values()
        ]
        chunks = _chunks(data, REPORT_ITEMS_PER_MESSAGE)
        generated_at = ocpp_timestamp(utc_now())
        for seq_no, chunk in enumerate(chunks):
            await self._call(
                call.NotifyMonitoringReport(
                    request_id=request_id,
                    seq_no=seq_no,
                    generated_at=generated_at,
                    monitor=chunk,
                    tbc=seq_no < len(chunks) - 1,
                )
            )


def _variable_result(item: dict, status: str) -> dict:
    """A GetVariableResult/SetVariableResult for the request item `item` (snake_case, as handlers get it)."""
    result = {"attribute_status": status, "component": item["component"], "variable": item["variable"]}
    if "attribute_type" in item:
        result["attribute_type"] = item["attribute_type"]
    return result
