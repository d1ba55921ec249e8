from django.apps import AppConfig
from django.core import checks


class CoreConfig(AppConfig):
    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from .login_limits import check_client_ip_header
        from .roles import connect_user_cache

        connect_user_cache()

        checks.register(check_client_ip_header, checks.Tags.security, deploy=True)
