from django.urls import path

from billing.api.kpis import KpiSummaryApi, RoiApi

urlpatterns = [
    path("kpis/", KpiSummaryApi.as_view(), name="kpi-summary"),
    path("roi/", RoiApi.as_view(), name="roi"),
]
