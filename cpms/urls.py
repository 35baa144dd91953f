from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from cpms.views import home

urlpatterns = [
    path("", home, name="home"),
    path("admin/", admin.site.urls),
    path("portal/", include("cpms.portal.urls")),
    path("", include("stations.urls")),
    path("", include("cpms.pay.urls")),
    path("ocpi/", include("cpms.ocpi.urls")),
    path("api/v1/", include("cpms.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
