"""The environment files agree: pyproject's pins = environment.yml's = constraints.txt's."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pins(lines):
    out = {}
    for line in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;#]+)\s*", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def pyproject_pins():
    p = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = list(p["project"]["dependencies"])
    for extra in p["project"]["optional-dependencies"].values():
        reqs += extra
    unpinned = [r for r in reqs if "==" not in r]
    assert not unpinned, f"every requirement is pinned exactly: {unpinned}"
    return pins(reqs)


def test_environment_yml_mirrors_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins(pip_section) == pyproject_pins()


def test_constraints_contain_every_pin():
    constraints = pins((ROOT / "constraints.txt").read_text().splitlines())
    for name, version in pyproject_pins().items():
        assert constraints.get(name) == version, f"constraints.txt pins {name}=={constraints.get(name)}, pyproject {version}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
