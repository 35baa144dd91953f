from django.apps import AppConfig


class OcpiConfig(AppConfig):
    name = "cpms.ocpi"
    label = "ocpi"
    verbose_name = "Roaming (OCPI)"
    default_auto_field = "django.db.models.BigAutoField"
