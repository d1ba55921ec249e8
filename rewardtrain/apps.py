from django.apps import AppConfig


class RewardtrainConfig(AppConfig):
    name = "rewardtrain"
    default_auto_field = "django.db.models.BigAutoField"
