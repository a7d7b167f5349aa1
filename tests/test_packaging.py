"""Our generic top-level names (api, agents, ...) must be ours alone in the environment."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

TOP_LEVEL = ("api", "agents", "sequences", "prompts", "evals")
ROOT = Path(__file__).resolve().parent.parent


def test_no_other_distribution_provides_our_packages() -> None:
    providers = importlib.metadata.packages_distributions()
    clashes = {name: providers.get(name, []) for name in TOP_LEVEL}
    assert all(dists == ["dripline"] for dists in clashes.values()), clashes


def test_distribution_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "dripline"
    assert "Private :: Do Not Upload" in project["classifiers"]
    assert project["requires-python"] == ">=3.11"
    assert importlib.metadata.version("dripline") == project["version"]


def test_agents_package_is_empty() -> None:
    # langsmith probes `import agents`; it must have no side effects.
    assert (ROOT / "agents" / "__init__.py").read_text() == ""


def test_example_sequence_ships_with_the_package() -> None:
    from importlib.resources import files

    assert (files("sequences") / "examples" / "trial-onboarding.yaml").is_file()
    assert (files("prompts") / "layouts" / "basic.mjml").is_file()
