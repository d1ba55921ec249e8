from django.urls import path

from .assignment import views as assignment_views
from .datasets import views as dataset_views
from .quality import views as quality_views
from .queues import views as queue_views

urlpatterns = [
    path("", assignment_views.home, name="home"),
    path("next/", assignment_views.next_task, name="next-task"),
    path("queues/<int:queue_id>/next/", assignment_views.next_task, name="queue-next-task"),
    path("tasks/<int:assignment_id>/", assignment_views.task, name="task"),
    path("tasks/<int:assignment_id>/submit/", assignment_views.task_submit, name="task-submit"),
    path("tasks/<int:assignment_id>/skip/", assignment_views.task_skip, name="task-skip"),
    path("preview/", assignment_views.markdown_preview, name="markdown-preview"),
    path("manage/queues/", queue_views.queue_list, name="manage-queues"),
    path("manage/queues/new/", queue_views.queue_edit, name="manage-queue-new"),
    path("manage/queues/<int:queue_id>/", queue_views.queue_detail, name="manage-queue"),
    path("manage/queues/<int:queue_id>/edit/", queue_views.queue_edit, name="manage-queue-edit"),
    path("manage/queues/<int:queue_id>/toggle/", queue_views.queue_toggle, name="manage-queue-toggle"),
    path("manage/queues/<int:queue_id>/import/", queue_views.queue_import, name="manage-queue-import"),
    path("manage/queues/<int:queue_id>/agreement/", quality_views.queue_agreement, name="manage-queue-agreement"),
    path("manage/queues/<int:queue_id>/agreement.csv", quality_views.queue_agreement_csv,
         name="manage-queue-agreement-csv"),
    path("manage/imports/<int:job_id>/", queue_views.import_detail, name="manage-import"),
    path("manage/queues/<int:queue_id>/review/", quality_views.review_list, name="manage-review"),
    path("manage/queues/<int:queue_id>/review/bulk/", quality_views.review_bulk, name="manage-review-bulk"),
    path("manage/queues/<int:queue_id>/review/<int:prompt_id>/", quality_views.prompt_detail,
         name="manage-review-prompt"),
    path("manage/queues/<int:queue_id>/review/<int:prompt_id>/action/", quality_views.prompt_action,
         name="manage-review-action"),
    path("ml/exports/", dataset_views.export_list, name="ml-exports"),
    path("ml/exports/<int:snapshot_id>/", dataset_views.export_detail, name="ml-export"),
    path("ml/exports/<int:snapshot_id>/download/", dataset_views.export_download, name="ml-export-download"),
    path("ml/exports/<int:snapshot_id>/card/", dataset_views.export_card, name="ml-export-card"),
]
