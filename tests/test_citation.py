"""CITATION.cff is valid Citation File Format 1.2.0 metadata that matches the package."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CITATION = ROOT / "CITATION.cff"
ESSAY = "Mesa-Optimizers and Over-optimization Failure"

#: The keys CFF 1.2.0 requires of every citation file.
REQUIRED = {"cff-version", "message", "title", "authors"}


def _citation() -> dict:
    return yaml.safe_load(CITATION.read_text(encoding="utf-8"))


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_the_citation_file_has_the_required_keys():
    citation = _citation()
    assert REQUIRED <= set(citation), sorted(REQUIRED - set(citation))
    assert citation["cff-version"] == "1.2.0"
    assert citation["type"] == "software"
    authors = citation["authors"]
    assert authors and all("name" in a or "family-names" in a for a in authors), authors


def test_the_citation_matches_the_package():
    citation, project = _citation(), _project()
    assert str(citation["version"]) == project["version"]
    assert citation["license"] == project["license"]


def test_the_citation_references_the_essay():
    references = _citation()["references"]
    essay = [ref for ref in references if ref["title"].startswith(ESSAY)]
    assert len(essay) == 1, [ref["title"] for ref in references]
    assert {a.get("family-names") for a in essay[0]["authors"]} == {"Manheim"}
    assert essay[0]["year"] == 2019
