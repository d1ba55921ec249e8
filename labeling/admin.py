"""Django admin (/django-admin/) for superusers: raw access to the labeling tables."""
from django.contrib import admin

from .models import Answer, Assignment, ImportJob, Prompt, Queue, Task


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ["name", "task_kind", "priority", "is_open", "demonstration_overlap", "ranking_overlap"]
    filter_horizontal = ["labelers", "labeler_groups"]


class AnswerInline(admin.TabularInline):
    model = Answer
    extra = 0


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["pk", "queue", "external_id", "priority", "created_at"]
    list_filter = ["queue"]
    search_fields = ["external_id", "text"]
    inlines = [AnswerInline]


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["pk", "prompt", "kind", "overlap", "submitted_count"]
    list_filter = ["kind", "prompt__queue"]
    raw_id_fields = ["prompt"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["pk", "task", "labeler", "status", "leased_at", "lease_expires_at", "time_spent_ms"]
    list_filter = ["status", "task__kind"]
    raw_id_fields = ["task", "labeler"]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["pk", "queue", "original_name", "status", "created_count", "existing_count", "created_at"]
    readonly_fields = ["errors"]
