from django.apps import AppConfig


class BillingConfig(AppConfig):
    """Tariffs, CDRs and finance exports (filled in by the billing issue)."""

    name = "billing"
