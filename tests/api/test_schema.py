import yaml
from django.core.management import call_command


def test_schema_validates_without_warnings(db, tmp_path):
    target = tmp_path / "schema.yaml"
    # --fail-on-warn raises CommandError on any generator warning (an untyped field, a guessed serializer).
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    assert sorted(schema["paths"]) == [
        "/api/v1/audit-records/",
        "/api/v1/cdrs/",
        "/api/v1/cdrs/{id}/",
        "/api/v1/cdrs/{id}/credits/",
        "/api/v1/certificate-authorities/",
        "/api/v1/certificate-authorities/import/",
        "/api/v1/certificate-authorities/{id}/rollout/",
        "/api/v1/commands/",
        "/api/v1/commands/{id}/",
        "/api/v1/configuration-templates/",
        "/api/v1/configuration-templates/{id}/",
        "/api/v1/configuration-templates/{id}/apply/",
        "/api/v1/exports/",
        "/api/v1/exports/{id}/",
        "/api/v1/exports/{id}/download/",
        "/api/v1/exports/{kind}.csv",
        "/api/v1/firmware-campaigns/",
        "/api/v1/firmware-campaigns/{id}/",
        "/api/v1/firmware-files/",
        "/api/v1/firmware-files/{id}/",
        "/api/v1/grid-nodes/{id}/",
        "/api/v1/grid-nodes/{id}/schedule/",
        "/api/v1/grid-nodes/{id}/signals/",
        "/api/v1/id-tokens/",
        "/api/v1/id-tokens/{id}/",
        "/api/v1/incidents/",
        "/api/v1/incidents/{id}/",
        "/api/v1/incidents/{id}/acknowledge/",
        "/api/v1/incidents/{id}/resolve/",
        "/api/v1/jobs/",
        "/api/v1/jobs/read-configuration/",
        "/api/v1/jobs/{id}/",
        "/api/v1/kpis/",
        "/api/v1/organisations/",
        "/api/v1/organisations/{id}/payment-settings/",
        "/api/v1/payments/",
        "/api/v1/payments/{id}/",
        "/api/v1/payments/{id}/refund/",
        "/api/v1/reservations/",
        "/api/v1/reservations/{id}/",
        "/api/v1/reservations/{id}/cancel/",
        "/api/v1/roaming/parties/",
        "/api/v1/roaming/partners/",
        "/api/v1/roaming/partners/{id}/",
        "/api/v1/roaming/partners/{id}/outbox/",
        "/api/v1/roaming/partners/{id}/register/",
        "/api/v1/roaming/partners/{id}/resume/",
        "/api/v1/roaming/partners/{id}/retry-refused/",
        "/api/v1/roaming/partners/{id}/rotate/",
        "/api/v1/roaming/partners/{id}/suspend/",
        "/api/v1/roaming/partners/{id}/sync/",
        "/api/v1/roaming/partners/{id}/token-a/",
        "/api/v1/roaming/partners/{id}/unregister/",
        "/api/v1/roi/",
        "/api/v1/security-events/",
        "/api/v1/session-anomalies/",
        "/api/v1/sessions/",
        "/api/v1/sessions/{id}/",
        "/api/v1/sessions/{id}/cost/",
        "/api/v1/sessions/{id}/events/",
        "/api/v1/sessions/{id}/meter-values/",
        "/api/v1/sites/",
        "/api/v1/sites/{id}/",
        "/api/v1/sites/{id}/access-rules/",
        "/api/v1/sites/{id}/energy-prices/",
        "/api/v1/sites/{id}/energy/",
        "/api/v1/sites/{id}/grid-nodes/",
        "/api/v1/sites/{id}/waitlist/",
        "/api/v1/stations/",
        "/api/v1/stations/{identity}/",
        "/api/v1/stations/{identity}/certificates/",
        "/api/v1/stations/{identity}/certificates/renew/",
        "/api/v1/stations/{identity}/certificates/{id}/revoke/",
        "/api/v1/stations/{identity}/charging-profiles/",
        "/api/v1/stations/{identity}/commands/",
        "/api/v1/stations/{identity}/commands/change-availability/",
        "/api/v1/stations/{identity}/commands/clear-cache/",
        "/api/v1/stations/{identity}/commands/data-transfer/",
        "/api/v1/stations/{identity}/commands/display-payment-url/",
        "/api/v1/stations/{identity}/commands/get-configuration/",
        "/api/v1/stations/{identity}/commands/remote-start/",
        "/api/v1/stations/{identity}/commands/remote-stop/",
        "/api/v1/stations/{identity}/commands/reset/",
        "/api/v1/stations/{identity}/commands/set-configuration/",
        "/api/v1/stations/{identity}/commands/trigger-message/",
        "/api/v1/stations/{identity}/commands/unlock/",
        "/api/v1/stations/{identity}/diagnostics/",
        "/api/v1/stations/{identity}/events/",
        "/api/v1/stations/{identity}/evses/{evse_id}/electrical/",
        "/api/v1/stations/{identity}/evses/{evse_id}/profile-check/",
        "/api/v1/stations/{identity}/firmware-update/",
        "/api/v1/stations/{identity}/firmware-updates/",
        "/api/v1/stations/{identity}/local-list/",
        "/api/v1/stations/{identity}/local-list/sync/",
        "/api/v1/stations/{identity}/ocpp/{action}/",
        "/api/v1/stations/{identity}/security-events/",
        "/api/v1/stations/{identity}/security-profile/upgrade/",
        "/api/v1/stations/{identity}/status-history/",
        "/api/v1/stations/{identity}/uploads/",
        "/api/v1/stations/{identity}/variables/",
        "/api/v1/tariff-assignments/",
        "/api/v1/tariff-assignments/{id}/",
        "/api/v1/tariffs/",
        "/api/v1/tariffs/{id}/",
        "/api/v1/tariffs/{id}/versions/",
        "/api/v1/tariffs/{id}/versions/{version}/",
        "/api/v1/uploads/{id}/file/",
        "/api/v1/users/",
        "/api/v1/users/{id}/",
        "/api/v1/waitlist-entries/{id}/",
    ]
    assert sorted(schema["paths"]["/api/v1/stations/{identity}/"]) == ["get", "patch"]
    assert sorted(schema["paths"]["/api/v1/sessions/{id}/"]) == ["get"]
    station_in = schema["components"]["schemas"]["StationInputRequest"]["properties"]
    assert station_in["password"]["writeOnly"] is True
    station_out = schema["components"]["schemas"]["StationOutput"]["properties"]
    assert "password" not in station_out
    session_params = {p["name"] for p in schema["paths"]["/api/v1/sessions/"]["get"]["parameters"]}
    assert session_params == {
        "station",
        "site",
        "started_after",
        "started_before",
        "status",
        "limit",
        "offset",
    }
    # What stations and sessions reported: read-only lists, paginated, with their filters.
    record_lists = {
        "/api/v1/stations/{identity}/variables/": {"identity", "component", "variable", "evse_id"},
        "/api/v1/stations/{identity}/security-events/": {
            "identity",
            "kind",
            "created_after",
            "created_before",
        },
        "/api/v1/security-events/": {"station", "kind", "created_after", "created_before"},
        "/api/v1/stations/{identity}/events/": {"identity", "kind", "received_after", "received_before"},
        "/api/v1/stations/{identity}/status-history/": {
            "identity",
            "evse_id",
            "received_after",
            "received_before",
        },
        "/api/v1/sessions/{id}/meter-values/": {"id", "measurand"},
        "/api/v1/sessions/{id}/events/": {"id"},
        "/api/v1/session-anomalies/": {"station", "kind", "reviewed"},
    }
    for path, filters in record_lists.items():
        assert sorted(schema["paths"][path]) == ["get"], path
        params = {p["name"] for p in schema["paths"][path]["get"]["parameters"]}
        assert params == filters | {"limit", "offset"}, path


def test_schema_and_docs_are_served(db, client):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


def test_api_root_lists_collections_without_data(client):
    response = client.get("/api/v1/")
    assert response.status_code == 200
    body = response.json()
    assert body["stations"] == "http://testserver/api/v1/stations/"
    assert body["sessions"] == "http://testserver/api/v1/sessions/"
    assert body["schema"] == "http://testserver/api/schema/"
    assert set(body) == {
        "organisations",
        "sites",
        "stations",
        "id_tokens",
        "sessions",
        "security_events",
        "session_anomalies",
        "schema",
        "docs",
    }
