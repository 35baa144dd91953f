"""Plain HTTP endpoints for chargers (not the API): firmware downloads and diagnostics/log uploads."""

urlpatterns: list = []
