"""environment.yml (conda users) and pyproject.toml (pip users) must install the same packages."""

import re
import tomllib

import yaml

from conftest import ROOT


def _name(req: str) -> str:
    return re.split(r"[<>=!~ ;\[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_side = {_name(r): r.replace(" ", "") for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_block = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_side = {_name(r): r.replace(" ", "") for r in pip_block}
    assert conda_side.keys() == pip_side.keys(), (
        f"only in environment.yml: {sorted(conda_side.keys() - pip_side.keys())}; "
        f"only in pyproject.toml: {sorted(pip_side.keys() - conda_side.keys())}"
    )
    # same version constraints too, not just the same names
    assert conda_side == pip_side
    assert "python=3.11" in env["dependencies"]
