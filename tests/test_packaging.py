"""pyproject.toml and environment.yml name the same dependencies."""
import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def test_environment_yml_agrees_with_pyproject():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = set(pyproject["dependencies"]).union(*pyproject["optional-dependencies"].values())
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip) - {"-e ."} == wanted
    py = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    major_minor = py.split("=")[1]
    low = re.search(r">=\s*([\d.]+)", pyproject["requires-python"]).group(1)
    assert tuple(map(int, major_minor.split("."))) >= tuple(map(int, low.split(".")))


def test_the_test_extra_brings_what_the_tests_start():
    """CI installs ``.[test,ray,faiss]``; tests/test_lab.py starts JupyterLab as ``make lab`` does."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "jupyterlab>=4" in extras["test"] and extras["lab"] == ["jupyterlab>=4"]
