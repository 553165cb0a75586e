"""Every figure function writes a non-empty PNG and SVG from a small run or sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from mesaopt.analysis import figures, sweep_figures
from mesaopt.analysis.agent_maps import force_layout, map_layout, plot_agent_map
from mesaopt.analysis.animation import animate_agent_map
from mesaopt.analysis.figures import CATEGORY_COLOURS
from mesaopt.analysis.run_folder import read_run
from mesaopt.analysis.sweep_figures import (
    MAX_EXCESS_KURTOSIS,
    HeavyTailReference,
    closed_form_condition,
    heavy_tail_reference,
    plot_overoptimization,
    plot_parameter_vs_metrics,
    read_sweep,
    selection_parameters,
    thinned_labels,
)
from mesaopt.model.scenario_files import load_scenario, to_toml_dict


def _written(path: Path) -> None:
    assert path.stat().st_size > 1000
    svg = path.with_suffix(".svg")
    assert svg.stat().st_size > 1000
    assert svg.read_text(encoding="utf-8").lstrip().startswith("<?xml")


def test_time_figures(run_dir: Path, tmp_path: Path) -> None:
    run = read_run(run_dir)
    _written(figures.plot_proxy_vs_value(run.steps, run.events, tmp_path / "pv.png", svg=True))
    _written(figures.plot_failure_map(run.steps, tmp_path / "fail.png", svg=True))
    _written(figures.plot_goodhart_breakdown(run.steps, run.events, tmp_path / "gh.png", svg=True))
    _written(figures.plot_loss_decomposition(run.steps, run.events, tmp_path / "lp.png", svg=True))


def test_the_regime_label_sits_above_every_line() -> None:
    """The label is drawn in a band at the top that the y range keeps free of data."""
    import matplotlib.pyplot as plt

    fig, (ax, shared) = plt.subplots(1, 2, sharey=True)
    step = np.arange(200)
    for axes, peak in ((ax, 100), (shared, 102)):  # both lines peak at the regime change
        axes.plot(step, np.exp(-(((step - peak) / 8.0) ** 2)))
        axes.axhline(0)
        figures._mark_regimes(axes, [100])
    fig.canvas.draw()
    for axes in (ax, shared):
        (label,) = axes.texts
        box = label.get_window_extent()
        for line in axes.get_lines():
            x, y = line.get_xdata(), line.get_ydata()
            if line.get_transform() is not axes.transData:  # the regime line itself
                continue
            points = axes.transData.transform(np.column_stack([x, y]))
            assert (points[:, 1] < box.y0).all()
        assert axes.get_ylim()[1] > 1.0
    plt.close(fig)


def test_the_group_view_legend_covers_no_bar(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mesaopt.analysis import agent_maps

    drawn = []
    monkeypatch.setattr(agent_maps, "save_figure", lambda fig, path, svg: drawn.append(fig))
    run = read_run(run_dir)
    agent_maps.plot_group_view(run.agents, run.network, tmp_path / "groups.png")
    (fig,) = drawn
    fig.canvas.draw()
    loss_ax = fig.axes[1]
    legend = loss_ax.get_legend().get_window_extent()
    for bar in loss_ax.patches:
        assert not legend.overlaps(bar.get_window_extent())
    assert legend.y1 < loss_ax.get_window_extent().y0  # below the axes, not inside them


def test_failure_table_weights_by_count(run_dir: Path) -> None:
    steps = read_run(run_dir).steps
    table = figures.failure_table(steps)
    row = table[(table["principal"] == "lab") & (table["category"] == "trans")].iloc[0]
    lab = steps[steps["principal"] == "lab"]
    expected = (lab["principal_loss_trans"].fillna(0) * lab["n_trans"]).sum() / lab["n_trans"].sum()
    assert row["principal_loss"] == pytest.approx(expected)


def test_flag_loss_table_weights_by_count_and_marks_flags_that_never_held(run_dir: Path) -> None:
    steps = read_run(run_dir).steps
    table = figures.flag_loss_table(steps).set_index(["principal", "flag"])
    lab = steps[steps["principal"] == "lab"]
    count = lab["flagged_trans"]
    expected = (lab["principal_loss_flagged_trans"].fillna(0) * count).sum() / count.sum()
    assert table.loc[("lab", "trans"), "principal_loss"] == pytest.approx(expected)
    assert table.loc[("lab", "trans"), "agents"] == pytest.approx(count.mean())
    assert (lab["flagged_deceptive"] == 0).all()  # no deceptive candidates in this run
    assert np.isnan(table.loc[("lab", "deceptive"), "principal_loss"])


def test_network_map_layout_is_seeded_and_cached(run_dir: Path, tmp_path: Path) -> None:
    network = read_run(run_dir).network
    first = map_layout(network, seed=3, cache_dir=tmp_path)
    assert len(list(tmp_path.glob(".layout-*.npy"))) == 1
    again = map_layout(network, seed=3, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.positions, again.positions)
    fresh = map_layout(network, seed=3)
    np.testing.assert_allclose(first.positions, fresh.positions)
    sample = map_layout(network, seed=3, max_nodes=50)
    assert sample.sampled and len(sample.nodes) == 50
    assert "random sample of 50 of 120 agents" in sample.caption()


def test_force_layout_pulls_neighbours_together() -> None:
    import scipy.sparse as sp

    n = 40  # two cliques joined by one edge
    rows, cols = np.triu_indices(20, 1)
    a = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tolil()
    a[rows + 20, cols + 20] = 1
    a[0, 20] = 1
    a = (a + a.T).tocsr()
    pos = force_layout(a, np.random.default_rng(0))
    within = np.linalg.norm(pos[:20].mean(0) - pos[:20], axis=1).mean()
    between = np.linalg.norm(pos[:20].mean(0) - pos[20:].mean(0))
    assert between > 2 * within


@pytest.mark.parametrize("which", ["run_dir", "grid_run_dir"])
def test_agent_maps(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    run = read_run(request.getfixturevalue(which))
    layout = map_layout(run.network, cache_dir=tmp_path)
    assert layout.kind == ("grid" if which == "grid_run_dir" else "network")
    path = plot_agent_map(
        run.agents,
        layout,
        tmp_path / "map.png",
        quantities=("category", "principal_loss", "effort_gaming", "principal"),
        svg=True,
    )
    _written(path)


def test_animation_gif(grid_run_dir: Path, tmp_path: Path) -> None:
    run = read_run(grid_run_dir)
    layout = map_layout(run.network)
    written = animate_agent_map(run.agents, layout, tmp_path / "a.gif", mp4=False)
    assert written == [tmp_path / "a.gif"]
    from PIL import Image

    with Image.open(written[0]) as gif:
        assert gif.n_frames == run.agents["step"].nunique()


def test_a_categorical_gif_keeps_every_legend_colour_exactly(tmp_path: Path) -> None:
    """Frames with thousands of colours and a small swatch of each category's: the adaptive
    palette of matplotlib's PillowWriter loses the swatches' colours (sub's sky blue and
    aligned's bluish green came out one teal); the fixed palette keeps every one exactly."""
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation
    from PIL import Image

    from mesaopt.analysis.animation import FixedPaletteGifWriter

    fig, ax = plt.subplots(figsize=(4, 3))
    rng = np.random.default_rng(0)

    def draw(_: int) -> list:
        ax.clear()
        ax.imshow(rng.random((60, 80, 3)), extent=(0, 8, 0, 6))
        for k, colour in enumerate(CATEGORY_COLOURS.values()):
            ax.add_patch(plt.Rectangle((0.2 + 1.2 * k, 6.3), 0.5, 0.5, color=colour, clip_on=False))
        ax.set(xlim=(0, 8), ylim=(0, 7))
        ax.axis("off")
        return []

    path = tmp_path / "swatches.gif"
    FuncAnimation(fig, draw, frames=2).save(path, writer=FixedPaletteGifWriter(fps=2), dpi=60)
    plt.close(fig)
    with Image.open(path) as gif:
        for index in range(gif.n_frames):
            gif.seek(index)
            present = {rgb for _, rgb in gif.convert("RGB").getcolors(maxcolors=1 << 16)}
            for colour in CATEGORY_COLOURS.values():
                assert tuple(round(255 * c) for c in to_rgb(colour)) in present, colour


def test_sweep_figures(sweep_dir: Path, tmp_path: Path) -> None:
    sweep = read_sweep(sweep_dir)
    assert sweep.parameters == ["principals.1.selection.n"]
    assert sweep.runs["run_id"].nunique() == 6
    keys = selection_parameters(sweep)
    assert keys == {"principals.1.selection.n": "regulated"}
    _written(plot_overoptimization(sweep, *next(iter(keys.items())), tmp_path / "o.png", svg=True))
    _written(
        plot_parameter_vs_metrics(sweep, "principals.1.selection.n", tmp_path / "p.png", svg=True)
    )
    parts = sweep_figures.LOSS_PART_METRICS
    _written(
        plot_parameter_vs_metrics(
            sweep, "principals.1.selection.n", tmp_path / "lp.png", metrics=parts, svg=True
        )
    )
    # the loss parts are each run's time means, like the other run metrics
    steps = read_run(sweep_dir / "runs" / "d1r0").steps
    lab = steps[steps["principal"] == "lab"]
    row = sweep.runs[(sweep.runs["run_id"] == "d1r0") & (sweep.runs["principal"] == "lab")]
    for metric in parts:
        assert row[metric].item() == pytest.approx(lab[metric].mean())
    # one candidate: no selection gain at all
    one = sweep.runs[
        (sweep.runs["principals.1.selection.n"] == 1) & (sweep.runs["principal"] == "regulated")
    ]
    assert np.allclose(one["true_gain"], 0) and np.allclose(one["measured_gain"], 0)


def test_sweep_reads_design_and_replicate(sweep_dir: Path) -> None:
    sweep = read_sweep(sweep_dir)
    lab = sweep.runs[sweep.runs["principal"] == "regulated"]
    assert sorted(set(zip(lab["design_id"], lab["replicate"], strict=True))) == [
        (d, r) for d in range(3) for r in range(2)
    ]
    assert sweep.missing == []
    # 12 steps: no federated update (every 25) and no regime change (step 15) happen
    assert sweep.closed_form["lab"] == "it trains on the metric and m ≠ v on some channel"
    # regulated scores extraction, whose t(df = 4) noise has no kurtosis: no Gaussian form
    assert "heavy-tailed" in sweep.closed_form["regulated"]
    assert sweep.heavy_tail == {"lab": None, "regulated": None}  # several scored channels


def test_closed_form_condition() -> None:
    """The score is true value + noise iff the training signal equals v on every channel."""
    regressional = to_toml_dict(load_scenario(Path("scenarios/regressional.toml")))
    assert regressional["principals"][0]["train_on"] == "metric"
    assert closed_form_condition(regressional, 0) is None  # m = v on its one channel
    values = dict(regressional, principals=[dict(regressional["principals"][0])])
    values["principals"][0]["train_on"] = "value"
    assert closed_form_condition(values, 0) is None  # v̂ = v: it perceives the channel
    values["principals"][0]["values"] = {"output": 2.0}
    assert closed_form_condition(values, 0) is None  # v̂ = v still (its own v)
    metric = dict(values, principals=[dict(values["principals"][0], train_on="metric")])
    assert "m ≠ v" in closed_form_condition(metric, 0)  # m = 1, its v = 2

    base = to_toml_dict(load_scenario(None, ["run.steps=50"]))  # regime change at step 100
    lab, regulated = base["principals"]
    assert lab["train_on"] == "metric" and "m ≠ v" in closed_form_condition(base, 0)
    assert regulated["train_on"] == "value" and regulated["federated"]["every"] == 25
    assert "federated" in closed_form_condition(base, 1)
    quiet = dict(base, principals=[lab, dict(regulated, federated={"every": 0})])
    assert "'extraction'" in closed_form_condition(quiet, 1)  # t(df = 4): heavy-tailed
    normal = [dict(c, noise={"dist": "normal", "scale": 0.5}) for c in quiet["channels"]]
    assert closed_form_condition(dict(quiet, channels=normal), 1) is None  # capacity 2 sees all
    blind = dict(quiet, principals=[lab, dict(quiet["principals"][1], capacity=1)])
    assert "beyond its capacity" in closed_form_condition(blind, 1)  # gaming is level 2
    later = dict(quiet, run=dict(quiet["run"], steps=200))  # the quality metric changes at 100
    assert "regime change at step 100" in closed_form_condition(later, 1)


def _with_noise(scenario: dict, noise: dict, eval_samples: int) -> dict:
    channels = [dict(scenario["channels"][0], noise=noise)]
    principal = dict(scenario["principals"][0])
    principal["selection"] = dict(principal["selection"], eval_samples=eval_samples)
    return dict(scenario, channels=channels, principals=[principal])


def test_gaussian_closed_form_only_where_the_noise_is_near_normal() -> None:
    """The overlay's rule: excess kurtosis of the score noise ≤ that of t(30) (0.23)."""
    assert MAX_EXCESS_KURTOSIS == pytest.approx(6 / 26)
    heavy = to_toml_dict(load_scenario(Path("scenarios/heavy_tails.toml")))
    assert "infinite variance" in closed_form_condition(heavy, 0)  # df = 1
    assert heavy_tail_reference(heavy, 0) == HeavyTailReference(1.0, 1.0, "output")
    t = {"dist": "student_t", "scale": 1.0}
    cases = [
        ({**t, "df": 50.0}, 1, True),  # kurtosis 6/46 = 0.13
        ({**t, "df": 10.0}, 1, False),  # 6/6 = 1
        ({**t, "df": 10.0}, 8, True),  # a mean of 8 draws: 1/8
        ({**t, "df": 4.0}, 64, False),  # no fourth moment, however many draws
        ({"dist": "laplace", "scale": 1.0}, 4, False),  # 3/4
        ({"dist": "laplace", "scale": 1.0}, 16, True),  # 3/16
        ({"dist": "normal", "scale": 1.0}, 1, True),
    ]
    for noise, samples, gaussian in cases:
        scenario = _with_noise(heavy, noise, samples)
        assert (closed_form_condition(scenario, 0) is None) == gaussian, (noise, samples)
    # the Monte-Carlo reference needs one t channel scored on one sample
    assert heavy_tail_reference(_with_noise(heavy, {**t, "df": 10.0}, 1), 0) is not None
    assert heavy_tail_reference(_with_noise(heavy, {**t, "df": 10.0}, 4), 0) is None
    assert heavy_tail_reference(_with_noise(heavy, {**t, "df": 50.0}, 1), 0) is None


def test_thinned_labels_keep_at_most_seven_and_the_last() -> None:
    labels = [f"n={2**b}" for b in range(13)]  # 1 ... 4096: "n=512n=1024" collided
    thinned = thinned_labels(labels, 7)
    shown = [label for label in thinned if label]
    assert len(thinned) == 13 and len(shown) <= 7
    assert thinned[0] == "n=1" and thinned[-1] == "n=4096"
    assert thinned_labels(labels[:5], 7) == labels[:5]


@pytest.fixture(scope="module")
def heavy_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small sweep of heavy_tails.toml over n (Student-t df = 1 noise)."""
    import json

    from mesaopt.model.runner import run_simulation

    out = tmp_path_factory.mktemp("heavy") / "sweep"
    key = "principals.0.selection.n"
    runs = []
    for design_id, n in enumerate((1, 8, 64)):
        for replicate in range(2):
            run_id = f"d{design_id}r{replicate}"
            scenario = load_scenario(
                Path("scenarios/heavy_tails.toml"),
                [f"{key}={n}", "network.n_agents=100", "run.steps=6", f"run.seed={replicate}"],
            )
            run_simulation(scenario, out / "runs" / run_id, progress=False, source="heavy")
            runs.append({"run_id": run_id, "design_id": design_id, "replicate": replicate})
    record = {"kind": "grid", "parameters": [key], "runs": runs, "sweep_seed": 2}
    (out / "sweep.json").write_text(json.dumps(record), encoding="utf-8")
    return out


def test_heavy_tail_sweep_overlays_the_monte_carlo_reference(
    heavy_sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Gaussian closed form (σ_ε would be estimated from df = 1 noise): the t reference."""
    drawn = []

    def keep(fig, path, svg):
        drawn.append(fig)
        return path

    monkeypatch.setattr(sweep_figures, "save_figure", keep)
    sweep = read_sweep(heavy_sweep)
    assert sweep.heavy_tail["lab"] == HeavyTailReference(1.0, 1.0, "output")
    plot_overoptimization(sweep, "principals.0.selection.n", "lab", tmp_path / "o.png")
    left = drawn[0].axes[0]
    labels = [line.get_label() for line in left.get_lines()]
    assert any("heavy-tail Monte Carlo" in label for label in labels)
    assert not any(
        "closed form" in label
        for axis in drawn[0].axes
        for label in [line.get_label() for line in axis.get_lines()]
    )
    assert any("No Gaussian closed form" in text.get_text() for text in drawn[0].texts)
    # the measured gain has its own axis, so that the true-value gain keeps its scale
    twin = [ax for ax in drawn[0].axes if ax is not left and ax.bbox.bounds == left.bbox.bounds]
    assert twin and any("measured" in line.get_label() for line in twin[0].get_lines())


def test_gaussian_sweep_keeps_the_closed_form(
    sweep_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = []
    monkeypatch.setattr(sweep_figures, "save_figure", lambda fig, path, svg: drawn.append(fig))
    sweep = read_sweep(sweep_dir)
    gaussian = dict(sweep.closed_form, regulated=None)  # as if its noise were Gaussian
    sweep = sweep_figures.SweepRuns(
        sweep.path, sweep.parameters, sweep.runs, sweep.train_on, gaussian, sweep.missing
    )
    plot_overoptimization(sweep, "principals.1.selection.n", "regulated", tmp_path / "o.png")
    labels = [line.get_label() for ax in drawn[0].axes for line in ax.get_lines()]
    assert sum("closed form" in label for label in labels) == 2
