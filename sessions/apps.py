from django.apps import AppConfig


class ChargingConfig(AppConfig):
    """Charging sessions. Labelled `charging`: django.contrib.sessions owns the label `sessions`."""

    name = "sessions"
    label = "charging"
    verbose_name = "Charging sessions and id tokens"
