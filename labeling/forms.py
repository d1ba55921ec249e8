from django import forms

from .models import GenerationJob, Queue


class GenerationJobForm(forms.ModelForm):
    class Meta:
        model = GenerationJob
        fields = ["queue", "model_name", "answers_per_prompt", "temperature", "top_p", "max_new_tokens", "seed"]
        labels = {"answers_per_prompt": "Answers per prompt (K)", "top_p": "Top-p", "max_new_tokens": "Max new tokens"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Sampled answers are there to be ranked; a demonstration-only queue has no use for them.
        self.fields["queue"].queryset = Queue.objects.exclude(task_kind=Queue.Kinds.DEMONSTRATION)
        self.fields["model_name"].initial = "smollm2"
