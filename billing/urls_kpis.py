"""Portal pages of the KPIs and the ROI view (namespace `portal`, via cpms/portal_urls.py)."""

from django.urls import path

from billing.views.kpis import kpis_page, roi_page

urlpatterns = [
    path("kpis/", kpis_page, name="kpis"),
    path("roi/", roi_page, name="roi"),
]
