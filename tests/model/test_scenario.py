"""Scenario schema: every shipped file validates, every key is documented, cross-field checks."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesaopt.model.errors import ScenarioError
from mesaopt.model.scenario import (
    MAX_COEFFICIENT,
    MIN_COST,
    MIN_DF,
    Scenario,
    agent_counts,
    estimated_bytes,
)
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


HEAVY = 'noise={dist="student_t", df=1.5}'
#: lab ("optimal", capacity 1) alone pays on the proxy: regulated's fixed beta is set to 0.
LAB_ONLY = "principals.1.contract.beta=0"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        # a fixed beta != 0 on a measured channel with infinite-variance noise
        ([f"channels.0.{HEAVY}", "principals.1.contract.beta=0.3"], 1),
        # "optimal" designed by a principal that cannot see the heavy-tailed gaming channel
        (['channels.2.noise={dist="student_t", df=2}', LAB_ONLY], 0),
        # the same channel turned heavy-tailed by a regime change (partial noise table merges)
        (
            [
                'regimes.0.channel="gaming"',
                'regimes.0.set={noise={df=1.0, dist="student_t"}}',
                "regimes.0.at=3",
            ],
            0,
        ),
        # a channel lab perceives turned heavy-tailed by a regime: lab's world model still shows
        # a finite variance, so "optimal" keeps its beta != 0 (this ran with -inf welfare)
        (
            [
                'regimes.0.channel="output"',
                'regimes.0.set={noise={df=2, dist="student_t"}}',
                "regimes.0.at=3",
                LAB_ONLY,
            ],
            0,
        ),
        # heavy-tailed and perceived, then normal, which a federated update refits (beta != 0),
        # then heavy-tailed again
        (
            [
                f"channels.0.{HEAVY}",
                'regimes=[{at=5, channel="output", set={noise={dist="normal"}}}, '
                '{at=9, channel="output", set={noise={dist="student_t", df=1.5}}}]',
                "principals.0.federated.every=6",
                LAB_ONLY,
            ],
            0,
        ),
        # heavy-tailed but unmeasured from the start, measured after a regime
        (
            [
                f"channels.1.{HEAVY}",
                "channels.1.metric=0",
                "regimes.0.set={metric=1.0}",
                "regimes.0.at=3",
                LAB_ONLY,
            ],
            0,
        ),
        # heavy-tailed and perceived, then moved beyond lab's capacity, which a federated update
        # refits: lab then designs without the channel
        (
            [
                f"channels.1.{HEAVY}",
                "regimes.0.set={level=2}",
                "regimes.0.at=3",
                "principals.0.federated.every=5",
                LAB_ONLY,
            ],
            0,
        ),
        # no variance at first (scale 0), infinite once a regime gives it a scale
        (
            [
                'channels.0.noise={dist="student_t", df=1.5, scale=0.0}',
                'regimes=[{at=3, channel="output", set={noise={scale=1.0}}}]',
                LAB_ONLY,
            ],
            0,
        ),
    ],
)
def test_infinite_risk_premia_are_refused(overrides, key, monkeypatch):
    with pytest.raises(ScenarioError) as info:
        load_scenario(BASELINE, overrides)
    assert info.value.key == f"principals.{key}.contract.beta"
    assert "infinite risk premium" in info.value.message
    # and rightly: with the check off, the contract design fails at build, or the run's
    # welfare is not finite within 12 steps
    import mesaopt.model.scenario as scenario_module
    from mesaopt.model.model import MesaOptModel

    monkeypatch.setattr(scenario_module, "_check_finite_risk", lambda scenario: None)
    steps = []
    scenario = load_scenario(BASELINE, [*overrides, "network.n_agents=200", "run.steps=12"])
    try:
        model = MesaOptModel(
            scenario,
            recorder=lambda table, rows: (
                steps.append(pd.DataFrame(rows)) if table == "steps" else 0
            ),
        )
    except ValueError as err:  # a fixed beta != 0 facing infinite variance from the start
        assert "infinite metric noise variance" in str(err)
        return
    with np.errstate(all="ignore"):
        model.run_for(12)
    table = pd.concat(steps)
    welfare = table.query("principal != 'all'")["welfare"].to_numpy()
    assert not np.isfinite(welfare).all()


def test_risk_neutral_agents_or_zero_beta_may_face_heavy_tails():
    load_scenario(
        BASELINE, ['channels.2.noise={dist="student_t", df=1.5}', "agents.risk_aversion=0"]
    )
    perceived = ['channels.1.noise={dist="student_t", df=1.5}', "principals.1.contract.beta=0"]
    from mesaopt.model.model import MesaOptModel

    model = MesaOptModel(load_scenario(BASELINE, [*perceived, "network.n_agents=100"]))
    assert model.principals[0].beta == 0.0  # "optimal" sees the infinite variance: no incentive


#: Scenarios the check lets through, each with what keeps every step's premium finite.
SAFE = {
    "a perceived heavy tail that regimes keep": [
        f"channels.1.{HEAVY}",
        'regimes=[{at=3, channel="quality", set={cost=0.5, noise={scale=2.0}}}]',
    ],
    "no federated update: lab's first model, heavy-tailed, is its only one": [
        f"channels.0.{HEAVY}",
        'regimes=[{at=2, channel="output", set={noise={dist="normal"}}}, '
        '{at=4, channel="output", set={noise={dist="student_t", df=1.5}}}]',
    ],
    "moved beyond capacity, but no federated update tells lab": [
        f"channels.1.{HEAVY}",
        'regimes=[{at=2, channel="quality", set={level=2}}]',
    ],
    "two changes in one step: no step sees the normal noise in between": [
        f"channels.0.{HEAVY}",
        "principals.0.federated.every=1",
        'regimes=[{at=3, channel="output", set={noise={dist="normal"}}}, '
        '{at=3, channel="output", set={noise={dist="student_t", df=1.5}}}]',
    ],
    "another perceived heavy tail keeps every design at beta = 0": [
        f"channels.0.{HEAVY}",
        "principals.0.federated.every=2",
        'regimes=[{at=3, channel="quality", set={noise={dist="student_t", df=1.2}}}]',
    ],
    "a heavy tail after the last step": [
        'regimes=[{at=500, channel="output", set={noise={dist="student_t", df=1.5}}}]',
    ],
    "a fixed beta on a scale-0 heavy-tailed channel (no variance)": [
        'channels.0.noise={dist="student_t", df=1.5, scale=0.0}',
        "principals.1.contract.beta=0.3",
    ],
}


@pytest.mark.parametrize("overrides", SAFE.values(), ids=SAFE.keys())
def test_what_the_check_lets_through_runs_finite(overrides):
    """Accepted, and every steps row of a short run is finite (the rule is not conservative)."""
    from mesaopt.model.model import MesaOptModel

    steps = []
    scenario = load_scenario(
        BASELINE,
        [*overrides, "principals.1.contract.beta=0", "network.n_agents=200", "run.steps=6"]
        if "principals.1.contract.beta=0.3" not in overrides
        else [*overrides, "network.n_agents=200", "run.steps=6"],
    )
    model = MesaOptModel(
        scenario,
        recorder=lambda table, rows: steps.append(pd.DataFrame(rows)) if table == "steps" else 0,
    )
    model.run_for(6)
    table = pd.concat(steps)
    assert np.isfinite(table[["welfare", "utility", "profit"]].to_numpy()).all()


# ------------------------------------------------------------ bounds (issue 15)

# Every input the fuzzing of issue 15 found to overflow, crash or write inf/NaN: each is now
# refused by validation, naming its key.
OUT_OF_BOUNDS = [
    ("channels.3.noise={dist='student_t', df=2.0000001, scale=1e300}", "channels.3.noise.scale"),
    ("channels.3.level=9223372036854775808", "channels.3.level"),
    ("principals.0.capacity=9223372036854775808", "principals.0.capacity"),
    ("channels.0.cost=5e-324", "channels.0.cost"),
    ("channels.0.externality=1e308", "channels.0.externality"),
    ("channels.0.value=-1e300", "channels.0.value"),
    ("channels.3.noise.df=1e-300", "channels.3.noise.df"),
    ("principals.0.contract.beta=1e200", "principals.0.contract.beta"),
    ("principals.0.share=1e308", "principals.0.share"),
    ("agents.goals.scale=1e300", "agents.goals.scale"),
    ("run.steps=99999999999999999999999", "run.steps"),
    ("run.seed=9223372036854775808", "run.seed"),
    ("network.n_agents=1e12", "network.n_agents"),
    # near 2**63 the split by share overflowed int64 and the memory estimate went negative
    ("network.n_agents=9223372036854775806", "network.n_agents"),
    ("agents.power=1e9", "agents.power"),
]


@pytest.mark.parametrize(("override", "key"), OUT_OF_BOUNDS, ids=[k for _, k in OUT_OF_BOUNDS])
def test_values_out_of_bounds_are_refused_naming_the_key(override, key):
    with pytest.raises(ScenarioError) as info:
        load_scenario(BASELINE, [override])
    assert info.value.key == key and "\n" not in str(info.value)


def test_the_bounds_hold_every_shipped_value_with_room():
    """Shipped scenarios stay a factor >= 1e4 inside the coefficient and cost bounds."""
    for path in sorted((ROOT / "scenarios").glob("*.toml")):
        scenario = load_scenario(path)
        for channel in scenario.channels:
            assert abs(channel.value) * 1e4 <= MAX_COEFFICIENT
            assert channel.cost >= 1e4 * MIN_COST
            assert channel.noise.df >= MIN_DF


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["network.n_agents=2e9"], "network.n_agents"),  # ~1.5 KB per agent: 3 TB
        (["network.n_agents=100000", "network.k=99998"], "network.k"),  # 1e10 entries
        (["principals.0.selection.n=1e11"], "principals.0.selection.n"),
        (["principals.0.selection.eval_samples=100000000"], "principals.0.selection.eval_samples"),
        (["network.topology='sbm'", "network.n_agents=3000000", "network.p_in=1"], "network.p_in"),
    ],
    ids=["agents", "degree", "selection", "episodes", "sbm"],
)
def test_runs_that_cannot_fit_in_memory_are_refused(overrides, key):
    with pytest.raises(ScenarioError) as info:
        load_scenario(BASELINE, overrides)
    assert info.value.key == key and "GiB of memory" in info.value.message


def test_memory_estimate_of_the_largest_benchmarked_run_fits_its_measurement():
    """1e6 agents (BENCHMARKS.md: peak RSS 1.37 GB) is estimated within a small factor of it."""
    scenario = load_scenario(BASELINE, ["network.n_agents=1000000"])
    estimate = estimated_bytes(scenario, agent_counts(scenario))
    assert 1.37e9 <= estimate <= 4 * 1.37e9


def test_a_principal_with_no_agents_is_refused():
    with pytest.raises(ScenarioError) as info:
        load_scenario(BASELINE, ["principals.0.share=1e-9", "network.n_agents=60"])
    assert info.value.key == "principals.0.share"
    assert "'lab' would get 0 of the 60 agents" in info.value.message
    counts = agent_counts(
        load_scenario(BASELINE, ["principals.0.share=0.005", "network.n_agents=60"])
    )
    assert counts == [1, 59]  # 0.59 of an agent: the largest remainder gets it


@settings(max_examples=200, deadline=None)
@given(
    shares=st.lists(st.floats(1e-3, 1e6), min_size=1, max_size=6),
    n=st.integers(6, 10**7),
)
def test_agent_counts_is_a_largest_remainder_split(shares, n):
    """Counts sum to n_agents and each is within one agent of its exact share."""
    scenario = SimpleNamespace(
        principals=[SimpleNamespace(share=s) for s in shares],
        network=SimpleNamespace(n_agents=n),
    )
    counts = agent_counts(scenario)
    exact = [s / sum(shares) * n for s in shares]
    assert sum(counts) == n
    assert all(abs(c - e) < 1 + 1e-9 * max(1.0, e) for c, e in zip(counts, exact, strict=True))


def test_huge_equal_weights_are_a_fair_choice():
    """Weights [1e308, 1e308] once overflowed their sum ("Probabilities do not sum to 1")."""
    scenario = load_scenario(BASELINE, ["agents.capacity={values=[1, 2], weights=[1e308, 1e308]}"])
    assert scenario.agents.capacity.probabilities() == [0.5, 0.5]
    from mesaopt.model.model import MesaOptModel

    MesaOptModel(
        load_scenario(
            BASELINE,
            ["agents.capacity={values=[1, 2], weights=[1e308, 1e308]}", "network.n_agents=60"],
        )
    )


def test_a_network_no_run_can_build_is_named_before_its_memory():
    """k ≥ n_agents is the error, whatever memory such a graph would take."""
    with pytest.raises(ScenarioError) as info:
        load_scenario(BASELINE, ["network.n_agents=20000", "network.k=30000"])
    assert info.value.key == "network.k" and "needs k < n_agents (20000)" in info.value.message


def test_a_ulimit_just_above_physical_memory_still_leaves_room_for_the_threads(monkeypatch):
    """A limit between physical memory and physical memory plus the threads' margin left the
    whole of physical memory to the run (review): what a run may use is the smaller of the two."""
    import resource

    from mesaopt.model import memory

    total = memory.os.sysconf("SC_PAGE_SIZE") * memory.os.sysconf("SC_PHYS_PAGES")
    limit = total + 100 * 2**20
    monkeypatch.setattr(memory.resource, "getrlimit", lambda which: (limit, limit))
    assert memory.available_bytes() == limit - memory.address_space_margin() < total
    assert "ulimit -v" in memory.memory_limit_name()
    unlimited = resource.RLIM_INFINITY
    monkeypatch.setattr(memory.resource, "getrlimit", lambda which: (unlimited, unlimited))
    assert memory.available_bytes() == total


@pytest.mark.parametrize(
    ("soft", "threads", "named"),
    [
        (None, None, "this machine's memory"),
        (
            2**30,
            None,
            "what this process's address-space limit (ulimit -v) leaves to the run once its 2 "
            "kernel threads have their 0.188 GiB",
        ),
        (
            2**33,
            "90",  # too many threads, not too large a scenario (fuzzing pass)
            "what this process's address-space limit (ulimit -v) leaves to the run once its 90 "
            "kernel threads (MESAOPT_THREADS) have their 5.69 GiB",
        ),
    ],
)
def test_the_memory_refusal_names_the_limit_it_met(monkeypatch, soft, threads, named):
    import resource

    from mesaopt.model import memory

    limit = resource.RLIM_INFINITY if soft is None else soft
    monkeypatch.setattr(memory.resource, "getrlimit", lambda which: (limit, limit))
    monkeypatch.setattr(memory, "thread_count", lambda: int(threads or 2))
    if threads:
        monkeypatch.setenv("MESAOPT_THREADS", threads)
    else:
        monkeypatch.delenv("MESAOPT_THREADS", raising=False)
    assert memory.memory_limit_name() == named
    with pytest.raises(ScenarioError) as info:
        load_scenario(BASELINE, ["network.n_agents=2e9"])
    assert f"; {named} is " in info.value.message
