"""Setup files agree with each other: pyproject.toml vs environment.yml, README vs CI."""
import re
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAME = {"torch": "pytorch"}  # pip name -> conda-forge name, where they differ


def _split(req: str):
    req = req.split(";")[0].strip()
    m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def pip_requirements():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = meta["dependencies"] + meta["optional-dependencies"]["test"]
    return {CONDA_NAME.get(n, n): spec for n, spec in map(_split, reqs)}


def conda_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_part = [d for d in env["dependencies"] if isinstance(d, dict)]
    out = {n: spec for n, spec in map(_split, deps) if n not in ("python", "pip")}
    return out, env, pip_part


def test_environment_yml_matches_pyproject():
    pip_reqs = pip_requirements()
    conda_reqs, env, pip_part = conda_requirements()
    assert "conda-forge" in env["channels"]
    missing = sorted(set(pip_reqs) - set(conda_reqs))
    extra = sorted(set(conda_reqs) - set(pip_reqs))
    assert not missing, f"in pyproject.toml but not environment.yml: {missing}"
    assert not extra, f"in environment.yml but not pyproject.toml: {extra}"
    differ = {n: (pip_reqs[n], conda_reqs[n]) for n in pip_reqs if pip_reqs[n] != conda_reqs[n]}
    assert not differ, f"version specs differ (pyproject, environment.yml): {differ}"
    assert pip_part and "-e ." in pip_part[0]["pip"], "environment.yml must install the project via pip"


def test_python_requirement_agrees():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert meta["requires-python"] == ">=3.10"
    assert "python>=3.10" in env["dependencies"]


def quick_start_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S).group(1)
    return [ln.split("#")[0].strip() for ln in block.splitlines() if ln.split("#")[0].strip()]


def test_readme_opens_with_two_commands_and_ci_runs_the_second():
    cmds = quick_start_commands()
    assert len(cmds) == 2, f"README quick start must hold exactly two commands, found {cmds}"
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.strip().startswith("#")]
    runs = [ln for ln in ci if not ln.startswith(("set ", "cd "))]
    assert runs == [cmds[1]], f".ci/run must run the README's test command {cmds[1]!r}, runs {runs}"


def test_setup_keeps_torch_and_pins_the_cpu_wheel():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "torch==2.13.0" in setup and "import torch" in setup
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_spec = next(d for d in deps if d.startswith("torch"))
    # a lower bound 2.13.0 satisfies, so pip keeps an installed torch instead of upgrading
    assert re.fullmatch(r"torch>=2\.\d+", torch_spec)
