"""rewardtrain.ml imports no Django and no app: every module of it, imported in a fresh process, loads neither."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Imports every module of the package (found on disk, so a new module is checked too) and prints what
# got loaded of the forbidden top-level packages, and which rewardtrain modules outside rewardtrain.ml.
SCRIPT = """
import importlib, json, pkgutil, sys
import rewardtrain.ml
names = sorted(m.name for m in pkgutil.iter_modules(rewardtrain.ml.__path__, "rewardtrain.ml."))
for name in names:
    importlib.import_module(name)
forbidden = {"django", "labeling", "annotate", "core"}
print(json.dumps({
    "modules": names,
    "forbidden": sorted(m for m in sys.modules if m.split(".")[0] in forbidden),
    "app": sorted(m for m in sys.modules if m.startswith("rewardtrain.") and not m.startswith("rewardtrain.ml")),
}))
"""


def test_the_ml_core_imports_no_django_and_no_app():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"} | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "rewardtrain.ml.train" in result["modules"] and "rewardtrain.ml.sampling" in result["modules"]
    assert result["forbidden"] == [], result["forbidden"]
    assert result["app"] == [], result["app"]
