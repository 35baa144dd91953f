"""Portal URLs of billing: revenue, exports and site prices (namespace `portal`)."""

from django.urls import path

from billing.views import finance, site_access

urlpatterns = [
    path("revenue/", finance.revenue_page, name="revenue"),
    path("exports/", finance.exports_page, name="exports"),
    path("exports/jobs/<int:pk>/row/", finance.export_job_row, name="export-job-row"),
    path("prices/", finance.site_prices_page, name="site-prices"),
    path("prices/site/<int:site_id>/", finance.site_prices_site_page, name="site-prices-site"),
    path("prices/site/<int:site_id>/access/", site_access.site_access_rules_post, name="site-access-rules"),
]
