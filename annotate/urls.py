"""The project's URLs: each app's pages (core, labeling, rewardtrain), the API, the health check, Django's admin."""
from django.contrib import admin
from django.urls import include, path

from .health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("", include("core.urls")),
    path("", include("labeling.urls")),
    path("", include("rewardtrain.urls")),
    path("", include("annotate.api_urls")),
    path("django-admin/", admin.site.urls),
]
