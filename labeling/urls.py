from django.urls import path

from . import generation_views, manage_views
from .assignment import views
from .datasets import views as export_views
from .quality import views as review_views

urlpatterns = [
    path("", views.home, name="home"),
    path("next/", views.next_task, name="next-task"),
    path("queues/<int:queue_id>/next/", views.next_task, name="queue-next-task"),
    path("tasks/<int:assignment_id>/", views.task, name="task"),
    path("tasks/<int:assignment_id>/submit/", views.task_submit, name="task-submit"),
    path("tasks/<int:assignment_id>/skip/", views.task_skip, name="task-skip"),
    path("preview/", views.markdown_preview, name="markdown-preview"),
    path("manage/queues/", manage_views.queue_list, name="manage-queues"),
    path("manage/queues/new/", manage_views.queue_edit, name="manage-queue-new"),
    path("manage/queues/<int:queue_id>/", manage_views.queue_detail, name="manage-queue"),
    path("manage/queues/<int:queue_id>/edit/", manage_views.queue_edit, name="manage-queue-edit"),
    path("manage/queues/<int:queue_id>/toggle/", manage_views.queue_toggle, name="manage-queue-toggle"),
    path("manage/queues/<int:queue_id>/import/", manage_views.queue_import, name="manage-queue-import"),
    path("manage/queues/<int:queue_id>/agreement/", manage_views.queue_agreement, name="manage-queue-agreement"),
    path("manage/queues/<int:queue_id>/agreement.csv", manage_views.queue_agreement_csv,
         name="manage-queue-agreement-csv"),
    path("manage/imports/<int:job_id>/", manage_views.import_detail, name="manage-import"),
    path("manage/queues/<int:queue_id>/review/", review_views.review_list, name="manage-review"),
    path("manage/queues/<int:queue_id>/review/bulk/", review_views.review_bulk, name="manage-review-bulk"),
    path("manage/queues/<int:queue_id>/review/<int:prompt_id>/", review_views.prompt_detail,
         name="manage-review-prompt"),
    path("manage/queues/<int:queue_id>/review/<int:prompt_id>/action/", review_views.prompt_action,
         name="manage-review-action"),
    path("ml/generation/", generation_views.generation_list, name="ml-generation-jobs"),
    path("ml/generation/<int:job_id>/", generation_views.generation_detail, name="ml-generation-job"),
    path("ml/exports/", export_views.export_list, name="ml-exports"),
    path("ml/exports/<int:snapshot_id>/", export_views.export_detail, name="ml-export"),
    path("ml/exports/<int:snapshot_id>/download/", export_views.export_download, name="ml-export-download"),
    path("ml/exports/<int:snapshot_id>/card/", export_views.export_card, name="ml-export-card"),
]
