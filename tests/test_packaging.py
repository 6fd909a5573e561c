"""Packaging that keeps installing: the SPDX license string (setuptools >= 77 builds it
without a deprecation warning), a default per-test time limit, and environment.yml in
step with pyproject.toml's lower bounds."""
import re

import tomllib
import yaml

from tests.conftest import REPO, SLOW_TIMEOUT_S

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _bound(requirement: str) -> tuple[str, str]:
    """('filelock', '>=3.30') of 'filelock>=3.30' (extras and environment markers dropped,
    name normalised)."""
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", requirement)
    return m.group(1).lower().replace("_", "-"), m.group(3).split("#")[0].split(";")[0].strip()


def test_license_is_an_spdx_string_and_the_backend_supports_it():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert not any(c.startswith("License ::") for c in PYPROJECT["project"].get("classifiers", []))
    requires = dict(_bound(r) for r in PYPROJECT["build-system"]["requires"])
    version = tuple(int(x) for x in requires["setuptools"].removeprefix(">=").split("."))
    assert version >= (77,), requires  # PEP 639 license expressions: setuptools 77


def test_environment_yml_has_every_dependency_with_the_same_lower_bound():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    listed = {}
    for dep in env["dependencies"]:
        for item in (dep["pip"] if isinstance(dep, dict) else [dep]):
            if not item.startswith("-"):
                name, bound = _bound(item)
                listed[name] = bound
    project = PYPROJECT["project"]
    # the runtime ones, and the test runner's (ipykernel, nbclient come with jupyterlab)
    needed = list(project["dependencies"]) + [
        d for d in project["optional-dependencies"]["dev"]
        if _bound(d)[0] in ("pytest", "pytest-timeout", "hypothesis", "jupytext", "ruff")]
    for requirement in needed:
        name, bound = _bound(requirement)
        assert name in listed, f"{name} is in pyproject.toml but not in environment.yml"
        assert listed[name] == bound, (name, bound, listed[name])


def test_every_test_has_a_time_limit():
    ini = PYPROJECT["tool"]["pytest"]["ini_options"]
    assert 60 <= int(ini["timeout"]) <= 900
    assert SLOW_TIMEOUT_S > int(ini["timeout"])
    assert any(m.startswith("timeout") for m in ini["markers"])
