import yaml
from django.core.management import call_command


def test_schema_validates_without_warnings(db, tmp_path):
    target = tmp_path / "schema.yaml"
    # --fail-on-warn raises CommandError on any generator warning (an untyped field, a guessed serializer).
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    assert sorted(schema["paths"]) == [
        "/api/v1/id-tokens/",
        "/api/v1/id-tokens/{id}/",
        "/api/v1/organisations/",
        "/api/v1/sessions/",
        "/api/v1/sessions/{id}/",
        "/api/v1/sites/",
        "/api/v1/sites/{id}/",
        "/api/v1/stations/",
        "/api/v1/stations/{identity}/",
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


def test_schema_and_docs_are_served(db, client):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
