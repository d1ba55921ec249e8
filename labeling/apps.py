from django.apps import AppConfig
from django.core import checks


class LabelingConfig(AppConfig):
    name = "labeling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from .login_limits import check_client_ip_header

        checks.register(check_client_ip_header, checks.Tags.security, deploy=True)
