"""The layering is checked: `lint-imports` with the contracts of .importlinter holds on the tree, and fails,
naming the contract, when an import breaks one (annotate -> rewardtrain -> labeling -> core; rewardtrain.ml
imports no Django and no app). docs/architecture.md describes the layers."""
import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
PACKAGES = ("annotate", "core", "labeling", "rewardtrain")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(where: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(where / ".importlinter")],
        cwd=where, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def contract_names() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    return [config[section]["name"] for section in config.sections() if section.startswith("importlinter:contract:")]


def test_the_layering_holds():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in contract_names():
        assert f"{name} KEPT" in result.stdout


def test_the_ml_contract_names_every_module_of_rewardtrain_outside_ml():
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    forbidden = config["importlinter:contract:ml"]["forbidden_modules"].split()
    listed = {name for name in forbidden if name.startswith("rewardtrain.")}
    on_disk = {
        f"rewardtrain.{path.stem}"
        for path in (ROOT / "rewardtrain").iterdir()
        if path.stem not in {"__init__", "ml", "__pycache__"}
        and (path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists()))
    }
    assert listed == on_disk


def test_every_contract_fails_when_an_import_breaks_it(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    breaks = {
        "core/text.py": "import labeling.models",
        "labeling/ranking.py": "import rewardtrain.models",
        "rewardtrain/runs.py": "import annotate.settings",
        "rewardtrain/ml/loss.py": "import django.db",
        "annotate/health.py": "import labeling.models",
    }
    for module, line in breaks.items():
        with (tmp_path / module).open("a") as file:
            file.write(f"\n{line}  # breaks a contract\n")

    result = lint_imports(tmp_path)
    assert result.returncode != 0
    for name in contract_names():
        assert f"{name} BROKEN" in result.stdout, result.stdout
