"""Configuration templates and bulk jobs: the API, the job runner (with the fake charger of
tests/commands.py), idempotent reruns and denials."""

from datetime import timedelta

import pytest
from django.utils import timezone

from stations.enums import JobStatus
from stations.models import ChargingStation, Command, CommandJob, CommandJobTarget, ConfigurationTemplate
from stations.services.jobs import command_job_run
from tests.commands import TIMEOUT, CallError
from tests.factories import ChargingStationFactory

V16_SETTINGS = [
    {"key": "HeartbeatInterval", "value": "120"},
    {"key": "MeterValueSampleInterval", "value": 30},
]
V201_SETTINGS = [
    {"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval", "value": "120"},
    {"component": "EVSE", "variable": "Power", "value": "11000", "attributeType": "MaxSet", "evseId": 1},
]


@pytest.fixture
def fleet(world):
    """Org A: three connected 1.6 stations on site A1 (one of them the world's), one 2.0.1 station on A2."""
    ChargingStation.objects.filter(pk=world.station_a1.pk).update(is_connected=True, protocol="ocpp1.6")
    for n in (2, 3):
        ChargingStationFactory(
            identity=f"A1-CP{n}", site=world.site_a1, is_connected=True, protocol="ocpp1.6"
        )
    ChargingStation.objects.filter(pk=world.station_a2.pk).update(is_connected=True, protocol="ocpp2.0.1")
    return world


def create_template(api, user, org, protocol="ocpp1.6", settings=V16_SETTINGS, name="Fleet defaults"):
    return api(user).post(
        "/api/v1/configuration-templates/",
        {"organisation": org.pk, "name": name, "protocol": protocol, "settings": settings},
        format="json",
    )


def test_template_is_applied_to_stations_by_a_job_with_per_station_results(
    api, fleet, fake_charger, django_capture_on_commit_callbacks, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    fake_charger.answers["ChangeConfiguration"] = {"status": "Accepted"}
    created = create_template(api, fleet.operator_a, fleet.org_a)
    assert created.status_code == 201, created.content
    ChargingStation.objects.filter(identity="A1-CP3").update(is_connected=False)

    with django_capture_on_commit_callbacks(execute=True):
        response = api(fleet.operator_a).post(
            f"/api/v1/configuration-templates/{created.json()['id']}/apply/",
            {"stations": ["A1-CP1", "A1-CP2", "A1-CP3"]},
            format="json",
        )
    assert response.status_code == 202, response.content
    job = api(fleet.operator_a).get(f"/api/v1/jobs/{response.json()['id']}/").json()
    assert (job["status"], job["total"], job["done_count"], job["failed_count"], job["progress"]) == (
        "done",
        3,
        2,
        1,
        1.0,
    )
    targets = {t["station"]: (t["status"], t["detail"]) for t in job["targets"]}
    assert targets == {
        "A1-CP1": ("ok", "ChangeConfiguration: Accepted; ChangeConfiguration: Accepted"),
        "A1-CP2": ("ok", "ChangeConfiguration: Accepted; ChangeConfiguration: Accepted"),
        "A1-CP3": ("failed", "ChangeConfiguration: Station A1-CP3 is not connected."),
    }
    sent = sorted(
        (identity, request["key"], request["value"]) for identity, _, request in fake_charger.received
    )
    assert sent == [
        ("A1-CP1", "HeartbeatInterval", "120"),
        ("A1-CP1", "MeterValueSampleInterval", "30"),
        ("A1-CP2", "HeartbeatInterval", "120"),
        ("A1-CP2", "MeterValueSampleInterval", "30"),
    ]
    assert Command.objects.filter(job_id=job["id"], source="job").count() == 5  # 4 answered + 1 NotConnected

    # A duplicate delivery while the job runs does nothing; a rerun of an orphaned job (its worker
    # killed) sends nothing twice either.
    CommandJob.objects.filter(pk=job["id"]).update(status=JobStatus.RUNNING, started_at=timezone.now())
    CommandJobTarget.objects.filter(job_id=job["id"], station__identity="A1-CP2").update(status="pending")
    assert command_job_run(job_id=job["id"]).done_count == 2
    assert len(fake_charger.received) == 4
    long_ago = timezone.now() - timedelta(hours=1)
    CommandJob.objects.filter(pk=job["id"]).update(started_at=long_ago)
    CommandJobTarget.objects.filter(job_id=job["id"]).update(finished_at=long_ago)
    rerun = command_job_run(job_id=job["id"])
    # A1-CP2 was pending, but its commands had been answered: their outcome is taken, nothing is re-sent.
    assert (rerun.status, rerun.done_count) == ("done", 3)
    assert len(fake_charger.received) == 4


def test_refusals_fail_the_station_with_what_was_refused(api, fleet, fake_charger):
    fake_charger.answers["SetVariables"] = {
        "setVariableResult": [
            {
                "attributeStatus": "Accepted",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
            },
            {"attributeStatus": "Rejected", "component": {"name": "EVSE"}, "variable": {"name": "Power"}},
        ]
    }
    template = create_template(
        api, fleet.operator_a, fleet.org_a, protocol="ocpp2.0.1", settings=V201_SETTINGS
    )
    response = api(fleet.operator_a).post(
        f"/api/v1/configuration-templates/{template.json()['id']}/apply/",
        {"site": fleet.site_a2.pk},
        format="json",
    )
    assert response.status_code == 202
    job = command_job_run(job_id=response.json()["id"])
    [target] = job.targets.all()
    assert (target.status, target.detail) == ("failed", "SetVariables: EVSE.Power Rejected")
    [(_, action, request)] = fake_charger.received
    assert action == "SetVariables"
    assert request["setVariableData"][1] == {
        "attributeValue": "11000",
        "component": {"name": "EVSE", "evse": {"id": 1}},
        "variable": {"name": "Power"},
        "attributeType": "MaxSet",
    }


def test_timeouts_and_callerrors_fail_their_station_only(api, fleet, fake_charger):
    template = create_template(api, fleet.operator_a, fleet.org_a, settings=[{"key": "K", "value": "v"}])
    response = api(fleet.operator_a).post(
        f"/api/v1/configuration-templates/{template.json()['id']}/apply/",
        {"stations": ["A1-CP1", "A1-CP2"]},
        format="json",
    )
    fake_charger.answers["ChangeConfiguration"] = CallError("InternalError", "flash full")
    command_job_run(job_id=response.json()["id"])
    details = sorted(CommandJob.objects.get().targets.values_list("status", "detail"))
    assert details == [("failed", "ChangeConfiguration: flash full")] * 2
    fake_charger.answers["ChangeConfiguration"] = TIMEOUT
    again = api(fleet.operator_a).post(
        f"/api/v1/configuration-templates/{template.json()['id']}/apply/",
        {"stations": ["A1-CP1"]},
        format="json",
    )
    job = command_job_run(job_id=again.json()["id"])
    assert list(job.targets.values_list("status", "detail")) == [("failed", "ChangeConfiguration: no answer")]


@pytest.mark.parametrize(
    "settings_value, protocol, fragment",
    [
        ([], "ocpp1.6", "non-empty"),
        ([{"key": "K"}], "ocpp1.6", "exactly 'key' and 'value'"),
        ([{"component": "C", "value": "1"}], "ocpp2.0.1", "required"),
        (
            [{"component": "C", "variable": "V", "value": "1", "colour": "red"}],
            "ocpp2.0.1",
            "unknown fields colour",
        ),
        (
            [{"component": "C", "variable": "V", "value": "1", "attributeType": "Nope"}],
            "ocpp2.0.1",
            "invalid",
        ),
        ([{"key": "K" * 51, "value": "v"}], "ocpp1.6", "invalid"),
    ],
)
def test_bad_templates_are_refused_with_the_reason(api, fleet, settings_value, protocol, fragment):
    response = create_template(api, fleet.operator_a, fleet.org_a, protocol=protocol, settings=settings_value)
    assert response.status_code == 400
    assert fragment in str(response.json())
    assert not ConfigurationTemplate.objects.exists()


def test_apply_refuses_stations_of_another_protocol_or_outside_scope(api, fleet, fake_charger):
    template = create_template(api, fleet.operator_a, fleet.org_a).json()
    apply_url = f"/api/v1/configuration-templates/{template['id']}/apply/"
    mismatch = api(fleet.operator_a).post(apply_url, {"stations": ["A2-CP1"]}, format="json")
    assert (mismatch.status_code, "not: A2-CP1" in mismatch.json()["detail"]) == (400, True)
    foreign = api(fleet.operator_a).post(apply_url, {"stations": ["B1-CP1"]}, format="json")
    assert (foreign.status_code, foreign.json()["detail"]) == (
        400,
        "Not stations you may command here: B1-CP1.",
    )
    both = api(fleet.operator_a).post(apply_url, {"stations": ["A1-CP1"], "site": 1}, format="json")
    assert both.status_code == 400
    assert not CommandJob.objects.exists()


def test_template_and_job_denials(api, fleet, fake_charger):
    template = create_template(api, fleet.operator_a, fleet.org_a).json()
    apply_url = f"/api/v1/configuration-templates/{template['id']}/apply/"
    # Another organisation, a site host (templates are organisation-wide), finance (no command).
    assert api(fleet.operator_b).get(f"/api/v1/configuration-templates/{template['id']}/").status_code == 404
    assert api(fleet.host_a1).post(apply_url, {"stations": ["A1-CP1"]}, format="json").status_code == 404
    assert api(fleet.finance_a).post(apply_url, {"stations": ["A1-CP1"]}, format="json").status_code == 403
    assert (
        api(fleet.finance_a)
        .patch(f"/api/v1/configuration-templates/{template['id']}/", {"name": "x"}, format="json")
        .status_code
        == 403
    )
    assert create_template(api, fleet.operator_b, fleet.org_a, name="theirs").status_code == 404
    assert create_template(api, fleet.finance_a, fleet.org_a, name="mine").status_code == 403
    assert list(ConfigurationTemplate.objects.values_list("name", flat=True)) == ["Fleet defaults"]
    assert not CommandJob.objects.exists()

    job = api(fleet.operator_a).post(apply_url, {"stations": ["A1-CP1"]}, format="json").json()
    assert api(fleet.operator_b).get(f"/api/v1/jobs/{job['id']}/").status_code == 404
    assert api(fleet.host_a1).get("/api/v1/jobs/").json()["results"] == []
    assert [j["id"] for j in api(fleet.finance_a).get("/api/v1/jobs/").json()["results"]] == [job["id"]]
    assert api(fleet.operator_b).get("/api/v1/jobs/").json()["results"] == []


def test_read_configuration_job_sends_each_version_its_read(api, fleet, fake_charger):
    fake_charger.answers["GetConfiguration"] = {
        "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "60"}]
    }
    response = api(fleet.operator_a).post(
        "/api/v1/jobs/read-configuration/",
        {"organisation": fleet.org_a.pk, "stations": ["A1-CP1", "A2-CP1"]},
        format="json",
    )
    assert response.status_code == 202, response.content
    job = command_job_run(job_id=response.json()["id"])
    assert (job.done_count, job.failed_count) == (2, 0)
    received = {identity: (action, request) for identity, action, request in fake_charger.received}
    assert received["A1-CP1"] == ("GetConfiguration", {})
    action, request = received["A2-CP1"]
    assert (action, request["reportBase"]) == ("GetBaseReport", "FullInventory")
    assert fleet.station_a1.device_variables.get(variable="HeartbeatInterval").value == "60"
