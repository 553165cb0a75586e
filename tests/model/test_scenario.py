"""Scenario schema: loading, overrides, and one-line errors that name the key and the file."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from mesaopt.model.errors import ScenarioError
from mesaopt.model.scenario import (
    Scenario,
    apply_override,
    default_text,
    load_raw,
    load_scenario,
    parse_override,
)

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "scenarios" / "baseline.toml"


def test_embedded_default_is_the_documented_baseline():
    assert default_text() == BASELINE.read_text(encoding="utf-8")
    assert load_scenario(None) == load_scenario(BASELINE)


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


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("network.k=-1", "network.k"),
        ("channels.0.cost=-1", "channels.0.cost"),
        ("channels.0.cost=nan", "channels.0.cost"),
        ("channels.2.value=inf", "channels.2.value"),
        ('principals.0.contract.beta="best"', "principals.0.contract.beta"),
        ("principals.0.selection.n=0", "principals.0.selection.n"),
        ("principals.1.audit.rate=1.5", "principals.1.audit.rate"),
        ("run.bogus=1", "run.bogus"),
        ("principals.5.share=1", "principals.5"),
        ("agents.effort_substitution=1.0", "agents.effort_substitution"),
        ("principals.0.values.nope=1", "principals.0.values.nope"),
        ("regimes.0.channel=nope", "regimes.0.channel"),
        ("regimes.0.set.color=1", "regimes.0.set"),
        ("regimes.0.set.cost=-2", "regimes.0.set.cost"),
        ('network.topology="torus"', "network.topology"),
        ("agents.capacity.weights=[1]", "agents.capacity.weights"),
        ("agents.capacity=-1", "agents.capacity"),
        ("agents.power=0", "agents.power"),
        ('network.topology="edgelist"', "network.path"),
        ('channels.1.name="output"', "channels"),
        ("run.steps=1.5", "run.steps"),
        ("metrics.trans_cosine=2", "metrics.trans_cosine"),
        ("agents.goals.mean.bad=1", "agents.goals.mean.bad"),
        ('channels.0.noise.dist="cauchy"', "channels.0.noise.dist"),
        ("channels.0.noise.df=0", "channels.0.noise.df"),
    ],
)
def test_bad_values_name_their_key_and_file(override, key):
    with pytest.raises(ScenarioError) as info:
        load_scenario(BASELINE, [override])
    err = info.value
    assert err.key == key
    assert err.source == str(BASELINE)
    line = err.one_line()
    assert "\n" not in line and line.startswith(f"{BASELINE}: {key}: ")


def test_missing_file_and_bad_toml_name_the_file(tmp_path):
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nsteps = 3\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(bad)
    assert info.value.source == str(bad) and "TOML" in info.value.message


def test_overrides_parse_toml_literals():
    assert parse_override("run.steps=12") == ("run.steps", 12)
    assert parse_override("principals.0.contract.beta=optimal") == (
        "principals.0.contract.beta",
        "optimal",
    )
    assert parse_override('a.b="x y"') == ("a.b", "x y")
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a.b={ dist = 'laplace' }") == ("a.b", {"dist": "laplace"})
    with pytest.raises(ScenarioError):
        parse_override("no-equals-sign")


def test_list_items_are_overridden_by_index():
    scenario = load_scenario(BASELINE, ["principals.0.contract.beta=0.3", "channels.1.cost=2"])
    assert scenario.principals[0].contract.beta == 0.3
    assert scenario.channels[1].cost == 2.0
    data, _ = load_raw(BASELINE)
    with pytest.raises(ScenarioError, match="cannot set a key inside a plain value"):
        apply_override(data, "run.steps.deep", 1)


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
