"""The kernel's pages: logging in and out, the audit log, API tokens (names and paths as before the move)."""
from django.contrib.auth import views as auth_views
from django.urls import path

from . import audit_views, token_views
from .login_limits import RateLimitedLoginView

urlpatterns = [
    path("login/", RateLimitedLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("manage/audit/", audit_views.audit_log, name="manage-audit"),
    path("ml/tokens/", token_views.token_list, name="ml-tokens"),
    path("ml/tokens/<int:token_id>/revoke/", token_views.token_revoke, name="ml-token-revoke"),
]
