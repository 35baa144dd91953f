from django.urls import path

from billing.api.views import (
    CdrCreditListApi,
    CdrDetailApi,
    CdrListApi,
    SessionCostApi,
    SiteEnergyPriceListApi,
    TariffAssignmentDetailApi,
    TariffAssignmentListApi,
    TariffDetailApi,
    TariffListApi,
    TariffVersionDetailApi,
    TariffVersionListApi,
)

urlpatterns = [
    path("tariffs/", TariffListApi.as_view(), name="tariff-list"),
    path("tariffs/<int:pk>/", TariffDetailApi.as_view(), name="tariff-detail"),
    path("tariffs/<int:pk>/versions/", TariffVersionListApi.as_view(), name="tariff-version-list"),
    path(
        "tariffs/<int:pk>/versions/<int:version>/",
        TariffVersionDetailApi.as_view(),
        name="tariff-version-detail",
    ),
    path("tariff-assignments/", TariffAssignmentListApi.as_view(), name="tariff-assignment-list"),
    path(
        "tariff-assignments/<int:pk>/", TariffAssignmentDetailApi.as_view(), name="tariff-assignment-detail"
    ),
    path("sites/<int:pk>/energy-prices/", SiteEnergyPriceListApi.as_view(), name="site-energy-price-list"),
    path("cdrs/", CdrListApi.as_view(), name="cdr-list"),
    path("cdrs/<int:pk>/", CdrDetailApi.as_view(), name="cdr-detail"),
    path("cdrs/<int:pk>/credits/", CdrCreditListApi.as_view(), name="cdr-credit-list"),
    path("sessions/<int:pk>/cost/", SessionCostApi.as_view(), name="session-cost"),
]
