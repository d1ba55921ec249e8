"""The page where ML staff make, list and revoke the tokens their scripts use on /api/v1/."""
from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from .models import ApiToken
from .roles import ML, role_required
from .tokens import issue_token, revoke_token


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. “nightly export script”.")


@never_cache  # the page that shows a new key must not be kept by a browser or proxy
@role_required(ML)
def token_list(request):
    form = TokenForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        # Rendered rather than redirected: the key is shown this once and stored nowhere else.
        _, new_key = issue_token(user=request.user, name=form.cleaned_data["name"])
        form = TokenForm()
    tokens = ApiToken.objects.filter(user=request.user)
    return render(request, "core/tokens.html", {"form": form, "tokens": tokens, "new_key": new_key})


@require_POST
@role_required(ML)
def token_revoke(request, token_id: int):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    revoke_token(token=token, user=request.user)
    messages.success(request, f"Token “{token.name}” is revoked; requests with it now get 401.")
    return redirect("ml-tokens")
