from django.db import models


class AssignmentLevel(models.TextChoices):
    """Where a tariff is assigned. Precedence, most specific first (billing/services/tariffs.py):
    an id token or its group (optionally narrowed to a site or station) > station > site > organisation."""

    ORGANISATION = "organisation", "Organisation"
    SITE = "site", "Site"
    STATION = "station", "Station"
    ID_TOKEN_GROUP = "id_token_group", "Id token or group"


class ExportKind(models.TextChoices):
    SESSIONS = "sessions", "Sessions with their price"
    CDRS = "cdrs", "Charge detail records and credits"
    REVENUE_SITES = "revenue_sites", "Revenue, energy cost and margin per site per month"
    REVENUE_PORTS = "revenue_ports", "Revenue, energy cost and margin per port per month"


class ExportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
