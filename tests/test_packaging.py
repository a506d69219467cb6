"""What the project imports is what it declares: a fresh environment has all of it."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata

import pytest
from conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

OWN = {"lab", "conftest", "wandb_records"} | {
    p.stem for folder in ("tests", "scripts") for p in (REPO / folder).glob("*.py")
}  # the test modules, and the scripts' helpers (scripts/measure.py) beside them
# the reference implementations' own top-level packages (Mammoth's and LAMDA-PILOT's), which
# scripts/parity_ptm_*.py import from a checkout, in the reference's own environment
REFERENCE_PACKAGES = {"models", "utils", "backbone", "datasets"}


def imported_modules(folder: str) -> set[str]:
    """The top-level names of every absolute import in the .py files under `folder`."""
    names = set()
    for path in (REPO / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    others = REFERENCE_PACKAGES if folder == "scripts" else set()
    return names - OWN - others - set(sys.stdlib_module_names) - {"__future__"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    """The distributions pyproject.toml asks for, the dev and docs extras included (make
    install installs both)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = project["dependencies"] + extras["dev"] + extras["docs"]
    return {normalise(re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0]) for r in requirements}


def test_every_imported_package_is_declared():
    provided_by = metadata.packages_distributions()
    undeclared = {}
    for folder in ("lab", "scripts", "tests"):
        for module in imported_modules(folder):
            distributions = {normalise(d) for d in provided_by.get(module, [])}
            if not distributions & declared():
                undeclared[module] = sorted(distributions) or "not installed"
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {undeclared}"
