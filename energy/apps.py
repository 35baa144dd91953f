from django.apps import AppConfig


class EnergyConfig(AppConfig):
    """Site topology, load balancing and smart charging (filled in by the energy issue)."""

    name = "energy"
