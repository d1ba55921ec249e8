from django.urls import path

from . import evaluation_views, generation_views, policy_views, views

urlpatterns = [
    path("ml/datasets/", views.dataset_list, name="ml-datasets"),
    path("ml/datasets/<int:dataset_id>/", views.dataset_detail, name="ml-dataset"),
    path("ml/runs/", views.run_list, name="ml-runs"),
    path("ml/runs/<int:run_id>/", views.run_detail, name="ml-run"),
    path("ml/runs/<int:run_id>/progress/", views.run_progress, name="ml-run-progress"),
    path("ml/runs/<int:run_id>/cancel/", views.run_cancel, name="ml-run-cancel"),
    path("ml/models/", views.model_list, name="ml-models"),
    path("ml/models/<int:model_id>/activate/", views.model_activate, name="ml-model-activate"),
    path("ml/policies/", policy_views.policy_list, name="ml-policies"),
    path("ml/policies/<int:policy_id>/", policy_views.policy_detail, name="ml-policy"),
    path("ml/policies/<int:policy_id>/retire/", policy_views.policy_retire, name="ml-policy-retire"),
    path("ml/sft/", policy_views.sft_list, name="ml-sft-runs"),
    path("ml/sft/<int:run_id>/", policy_views.sft_detail, name="ml-sft-run"),
    path("ml/sft/<int:run_id>/progress/", policy_views.sft_progress, name="ml-sft-run-progress"),
    path("ml/sft/<int:run_id>/cancel/", policy_views.sft_cancel, name="ml-sft-run-cancel"),
    path("ml/policy-runs/", policy_views.policy_run_list, name="ml-policy-runs"),
    path("ml/policy-runs/<int:run_id>/", policy_views.policy_run_detail, name="ml-policy-run"),
    path("ml/policy-runs/<int:run_id>/progress/", policy_views.policy_run_progress, name="ml-policy-run-progress"),
    path("ml/policy-runs/<int:run_id>/cancel/", policy_views.policy_run_cancel, name="ml-policy-run-cancel"),
    path("ml/generation/", generation_views.generation_list, name="ml-generation-jobs"),
    path("ml/generation/<int:job_id>/", generation_views.generation_detail, name="ml-generation-job"),
    # Evaluation rounds
    path("ml/evaluation/", evaluation_views.evaluation_list, name="ml-evaluation-rounds"),
    path("ml/evaluation/<int:round_id>/", evaluation_views.evaluation_detail, name="ml-evaluation-round"),
]
