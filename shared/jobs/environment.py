"""What every Azure ML job of this project runs on: the environment built from the pinned training requirements,
and the code uploaded with the job (the `shared/` package, whose `python -m` entries the commands name).

Shared by the training component (`publish`) and the drift pipeline (`drift_pipeline`), so both run the same
environment: one name, one image, one conda file."""

import shutil
import tempfile
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
ENVIRONMENT_NAME = "bankmarketing-train"


def training_requirements(root: Path = PROJECT_ROOT) -> list[str]:
    lines = (root / "requirements-train.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith(("#", "-r"))]


def conda_file(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    return {"name": ENVIRONMENT_NAME, "channels": ["conda-forge"],
            "dependencies": ["python=3.11", "pip", {"pip": training_requirements(root)}]}


def environment():
    """The jobs' Azure ML environment: BASE_IMAGE with the pinned training requirements."""
    from azure.ai.ml.entities import Environment

    return Environment(name=ENVIRONMENT_NAME, image=BASE_IMAGE, conda_file=conda_file(),
                       description="pinned from requirements-train.txt")


def stage_code(root: Path = PROJECT_ROOT) -> Path:
    """Only `shared/` runs in the step: upload that, not the venv or node_modules."""
    target = Path(tempfile.mkdtemp(prefix="retrain-code-"))
    shutil.copytree(root / "shared", target / "shared", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target
