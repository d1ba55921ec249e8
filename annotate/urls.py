from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("labeling.urls")),
    path("", include("rewardtrain.urls")),
    path("", include("annotate.api_urls")),
    path("django-admin/", admin.site.urls),
]
