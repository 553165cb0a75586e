"""Scenario schema: every shipped file validates, every key is documented, cross-field checks."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from mesaopt.model.errors import ScenarioError
from mesaopt.model.scenario import Scenario
from mesaopt.model.scenario_files import load_scenario

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "scenarios" / "baseline.toml"


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_validates(path):
    scenario = load_scenario(path)
    assert scenario.network.n_agents >= 1


def test_baseline_sets_or_mentions_every_key():
    """Every schema key (but the sweep section) appears in baseline.toml, set or in a comment."""
    text = BASELINE.read_text(encoding="utf-8")
    for section, field in Scenario.model_fields.items():
        if section == "sweep":
            continue
        assert section in text, section
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))[0]
        for key in _fields(inner) if hasattr(inner, "model_fields") else []:
            last = key.rsplit(".", 1)[-1]
            pattern = rf"\b{last}\b\s*=|\.{last}\]"
            assert re.search(pattern, text), f"{section}.{key} not in baseline.toml"
    assert tomllib.loads(text)["principals"][0]["selection"]["n"] == 16


def test_json_schema_is_serialisable():
    schema = Scenario.model_json_schema()
    assert "principals" in json.dumps(schema)


def _fields(model, prefix=""):
    """Dotted names of every leaf field of a pydantic section."""
    for name, field in model.model_fields.items():
        yield f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            yield from _fields(annotation, f"{prefix}{name}.")


def test_reference_documents_every_key():
    reference = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    for section, field in Scenario.model_fields.items():
        assert f"[{section}]" in reference or f"[[{section}]]" in reference, section
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))[0]
        if hasattr(inner, "model_fields"):
            for key in _fields(inner):
                last = key.rsplit(".", 1)[-1]
                assert f"`{key}" in reference or f"`{last}`" in reference, f"{section}.{key}"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        # a fixed beta != 0 on a measured channel with infinite-variance noise
        (['channels.0.noise={dist="student_t", df=1.5}', "principals.1.contract.beta=0.3"], 1),
        # "optimal" designed by a principal that cannot see the heavy-tailed gaming channel
        (['channels.2.noise={dist="student_t", df=2}', "principals.1.contract.beta=0"], 0),
        # the same channel turned heavy-tailed by a regime change (partial noise table merges)
        (['regimes.0.channel="gaming"', 'regimes.0.set={noise={df=1.0, dist="student_t"}}'], 0),
    ],
)
def test_infinite_risk_premia_are_refused(overrides, key):
    with pytest.raises(ScenarioError) as info:
        load_scenario(BASELINE, overrides)
    assert info.value.key == f"principals.{key}.contract.beta"
    assert "infinite risk premium" in info.value.message


def test_risk_neutral_agents_or_zero_beta_may_face_heavy_tails():
    load_scenario(
        BASELINE, ['channels.2.noise={dist="student_t", df=1.5}', "agents.risk_aversion=0"]
    )
    perceived = ['channels.1.noise={dist="student_t", df=1.5}', "principals.1.contract.beta=0"]
    from mesaopt.model.model import MesaOptModel

    model = MesaOptModel(load_scenario(BASELINE, [*perceived, "network.n_agents=100"]))
    assert model.principals[0].beta == 0.0  # "optimal" sees the infinite variance: no incentive
