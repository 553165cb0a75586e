"""The idiomatic-Mesa reference: mesaopt's core step written the way a Mesa user would write it.

One :class:`ReferenceOptimizer` (a ``mesa.discrete_space.CellAgent``) per agent, each on its own
cell of a ``mesa.discrete_space.Network`` (built with ``layout=None``: no spring layout), with its
own ``step``. Activation is staged, as Mesa users do for simultaneous moves: every agent decides
from its neighbours' previous efforts (``model.agents.shuffle_do("step")``), then commits and
realizes its outcome (``do("advance")``), then collects the externalities its neighbours' new
efforts give it (``do("settle")``). Neighbourhoods are read through ``cell.neighborhood``; all
per-agent arithmetic is plain Python on lists of floats and draws come from ``model.random``.

It is the speed baseline of the suite (:mod:`benchmarks.suite`), and a test
(``tests/benchmarks/test_reference.py``) checks it agrees with :class:`model.model.MesaOptModel`
within noise on aggregate metrics. What it covers, per step (same order as ``model/model.py``):

1. regime changes (agents' world models go stale; principals' true values follow ``value``);
2. scheduled best-of-n selection of the worst ``fraction`` by last proxy, per slot in Python:
   n whole candidates (capacity, kind and gain drawn from the pool, objective from the prior),
   each run with its own kind in the principal's sandbox (its world model and capacity, or the
   true world) for ``eval_samples`` noisy episodes — a planner's exact best response, a control
   law from rest — and the best deployed whole; then the principal's contract redesign (the
   real :class:`agents.principal.Principal` is reused: it is one object per principal);
3. actions: direct planners' exact best response to θ + βm + δ⊙(neighbours' effort) with their
   (possibly stale) world model, under their perception mask, with the full (non-diagonal) K;
   control agents' projected gradient step with their own gain, feeling marginal cost at last
   step's realized output;
4. outcomes: output noise (normal, Laplace, Student-t), proxy, value, pay, effort cost, risk
   premium, peer payoff, externalities given and received, utility;
5. audits with penalties; 7. replacement of caught agents by selection.

What it leaves out: federated updates (step 8), the per-agent failure measures of step 6
(principal and mesa loss, Goodhart measures, categories, Gini, correlations) and the recorded
tables; it only collects per-step means through a ``mesa.DataCollector``. Only exact direct
planners and control laws are covered (``agents.power = "exact"``, no deception, no per-principal
``selection.pool.goals``), and the cost matrix must be the shared-budget
form the scenario builds. The best response is the same closed-form water filling the vectorized
kernel uses (:func:`agents.response._water_filling`), per agent: the fastest exact method we know,
so the measured speed ratios are conservative.
"""

from __future__ import annotations

import math
from typing import Any

import mesa
import networkx as nx
import numpy as np
from mesa.discrete_space import CellAgent, Network

from mesaopt.agents.principal import Principal
from mesaopt.model.channels import World, world_from_scenario
from mesaopt.model.model import make_principals
from mesaopt.model.network import build_network
from mesaopt.model.noise import NOISE_CODES
from mesaopt.model.scenario import Scenario

_NORMAL, _LAPLACE = NOISE_CODES["normal"], NOISE_CODES["laplace"]


class _Params:
    """One world epoch's channel parameters as Python lists (per-agent code reads these)."""

    def __init__(self, world: World) -> None:
        self.d = world.d
        self.metric = world.metric.tolist()
        self.costs = world.costs.tolist()
        self.roots = [math.sqrt(c) for c in self.costs]
        self.s = float(world.substitution)
        self.peer = world.peer.tolist()
        self.externality = world.externality.tolist()
        self.level = world.level.tolist()
        self.noise_spec = list(
            zip(
                world.noise_dist.tolist(),
                world.noise_scale.tolist(),
                world.noise_df.tolist(),
                strict=True,
            )
        )
        self.sigma_m2 = float(np.sum(world.metric**2 * world.noise_var))

    def perceives(self, capacity: int) -> list[bool]:
        """Which channels a mind of ``capacity`` perceives."""
        return [level <= capacity for level in self.level]

    def best_response(self, reward: list[float], perceive: list[bool]) -> list[float]:
        """Exact argmax of rᵀa − ½aᵀKa over a ≥ 0 on perceived channels (water filling)."""
        s, roots = self.s, self.roots
        scaled = sorted((reward[c] / roots[c] for c in range(self.d) if perceive[c]), reverse=True)
        total = running = 0.0
        for j, u in enumerate(scaled, start=1):
            running += u
            candidate = running / (1.0 - s + s * j)
            if u > s * candidate:
                total = candidate
        shared = s * total
        return [
            max(reward[c] / roots[c] - shared, 0.0) / ((1.0 - s) * roots[c]) if perceive[c] else 0.0
            for c in range(self.d)
        ]

    def times_cost(self, a: list[float]) -> list[float]:
        """K·a for the shared-budget K = D^½((1 − s)I + s·11ᵀ)D^½."""
        s, roots = self.s, self.roots
        pooled = s * sum(r * x for r, x in zip(roots, a, strict=True))
        return [
            (1.0 - s) * c * x + r * pooled for c, r, x in zip(self.costs, roots, a, strict=True)
        ]

    def noise(self, rng: Any, episodes: int = 1) -> list[float]:
        """One draw of output noise per channel (the mean of ``episodes`` draws)."""
        out = []
        for dist, scale, df in self.noise_spec:
            if dist == _NORMAL:
                out.append(rng.gauss(0.0, scale / math.sqrt(episodes)))
                continue
            total = 0.0
            for _ in range(episodes):
                if dist == _LAPLACE:
                    total += rng.expovariate(1.0) - rng.expovariate(1.0)
                else:
                    total += rng.gauss(0.0, 1.0) / math.sqrt(rng.gammavariate(df / 2, 2.0) / df)
            out.append(scale * total / episodes)
        return out


class ReferenceOptimizer(CellAgent):
    """One mesa-optimizer with its own state and its own ``step``."""

    def __init__(self, model: ReferenceModel, cell: Any, principal: Principal, capacity: int,
                 is_control: bool) -> None:  # fmt: skip
        super().__init__(model)
        self.cell = cell
        self.principal = principal
        self.capacity = capacity
        self.is_control = is_control
        self.gain = 0.0
        d = model.params.d
        self.theta = [0.0] * d
        self.selected = [0.0] * d
        self.epoch = 0
        self.action = [0.0] * d
        self.next_action = [0.0] * d
        self.neighbour_effort = [0.0] * d
        self.last_noise = [0.0] * d
        self.proxy = self.value = self.pay = self.utility = self.harm = 0.0
        self.private_payoff = self.penalty = 0.0
        self.caught = False

    def step(self) -> None:
        """Decide the next effort from the neighbours' current (previous-step) efforts."""
        model = self.model
        d = model.params.d
        effort = [0.0] * d
        for cell in self.cell.neighborhood:
            for other in cell.agents:
                for c in range(d):
                    effort[c] += other.action[c]
        self.neighbour_effort = effort
        beta = self.principal.beta
        if self.is_control:
            world = model.params
            reward = [
                self.theta[c] + beta * world.metric[c] + world.peer[c] * effort[c] for c in range(d)
            ]
            # Marginal cost felt at last step's realized output a + ε.
            cost = world.times_cost(
                [a + e for a, e in zip(self.action, self.last_noise, strict=True)]
            )
            perceive = world.perceives(self.capacity)
            self.next_action = [
                max(0.0, self.action[c] + self.gain * (reward[c] - cost[c])) if perceive[c] else 0.0
                for c in range(d)
            ]
        else:
            own = model.params_of(self.epoch)  # its (possibly stale) world model
            reward = [
                self.theta[c] + beta * own.metric[c] + own.peer[c] * effort[c] for c in range(d)
            ]
            self.next_action = own.best_response(reward, own.perceives(self.capacity))

    def advance(self) -> None:
        """Commit the effort, realize output, pay, payoffs and a possible audit."""
        model, world, principal = self.model, self.model.params, self.principal
        a = self.next_action
        self.action = a
        noise = world.noise(model.random)
        self.last_noise = noise
        d = world.d
        y = [a[c] + noise[c] for c in range(d)]
        self.proxy = sum(world.metric[c] * y[c] for c in range(d))
        values = principal.true_values
        self.value = sum(float(values[c]) * y[c] for c in range(d))
        beta = principal.beta
        self.pay = principal.alpha + beta * self.proxy
        cost = world.times_cost(a)
        effort_cost = 0.5 * sum(a[c] * cost[c] for c in range(d))
        rho = model.config.agents.risk_aversion
        risk = 0.0 if beta == 0 else 0.5 * rho * beta**2 * world.sigma_m2
        peer = sum(world.peer[c] * a[c] * self.neighbour_effort[c] for c in range(d))
        self.private_payoff = (
            sum(self.theta[c] * a[c] for c in range(d)) - effort_cost - risk + peer
        )
        self.harm = sum(world.externality[c] * a[c] for c in range(d))
        self.penalty, self.caught = 0.0, False
        audit = principal.config.audit
        if audit.rate and model.random.random() < audit.rate:
            gaming = model.gaming[principal.index]
            if sum(a[c] for c in range(d) if gaming[c]) > audit.tolerance:
                self.penalty, self.caught = audit.penalty, True

    def settle(self) -> None:
        """Collect the externalities of the neighbours' new efforts; utility."""
        received = 0.0
        for cell in self.cell.neighborhood:
            for other in cell.agents:
                received += other.harm
        self.utility = self.pay + self.private_payoff + received - self.penalty


class ReferenceModel(mesa.Model):
    """The idiomatic-Mesa version of mesaopt's core step (see the module docstring).

    Args:
        scenario: A validated scenario (direct planners must be ``exact``).
        rng: Seed; None uses ``scenario.run.seed``.
    """

    def __init__(self, scenario: Scenario, rng: int | None = None) -> None:
        if scenario.agents.power != "exact":
            raise ValueError("the reference covers exact direct planners only")
        super().__init__(rng=scenario.run.seed if rng is None else rng)
        self.config = scenario
        self.world = world_from_scenario(scenario)
        self.worlds = [self.world]
        self._params = [_Params(self.world)]
        n = scenario.network.n_agents

        cfg = scenario.network
        if cfg.topology == "watts_strogatz":
            graph = nx.watts_strogatz_graph(n, cfg.k, cfg.p, seed=self.random.randrange(2**31))
        else:  # other topologies: mesaopt's own builder, handed to networkx
            graph = build_network(cfg, self.rng).to_networkx()
        self.grid = Network(graph, capacity=1, random=self.random, layout=None)

        shares = [p.share for p in scenario.principals]
        counts = [round(n * s / sum(shares)) for s in shares]
        counts[-1] = n - sum(counts[:-1])
        labels = [j for j, c in enumerate(counts) for _ in range(c)]
        self.random.shuffle(labels)
        self.principals: list[Principal] = make_principals(self, scenario, self.world)

        agents = scenario.agents
        self.optimizers: list[ReferenceOptimizer] = []
        for i, cell in enumerate(self.grid.all_cells):  # kind and capacity: chosen by selection
            self.optimizers.append(
                ReferenceOptimizer(self, cell, self.principals[labels[i]], 0, False)
            )
        self.members = [[a for a in self.optimizers if a.principal is p] for p in self.principals]
        self.gaming = [p.gaming_channels().tolist() for p in self.principals]

        for principal in self.principals:
            principal.design_contract(agents.risk_aversion)
        for principal, members in zip(self.principals, self.members, strict=True):
            for agent in members:
                self.select(agent)
            self.redesign(principal)

        channels = self.world.names
        reporters = {
            key: (lambda m, key=key: m.mean_of(key)) for key in ("proxy", "value", "pay", "utility")
        }
        for c, name in enumerate(channels):
            reporters[f"effort_{name}"] = lambda m, c=c: m.mean_effort(c)
        self.datacollector = mesa.DataCollector(model_reporters=reporters)

    @property
    def params(self) -> _Params:
        """The current world's parameters."""
        return self._params[-1]

    def params_of(self, epoch: int) -> _Params:
        """The parameters of world epoch ``epoch`` (an agent's world model)."""
        return self._params[epoch]

    def mean_of(self, key: str) -> float:
        """Mean of an agent attribute over all mesa-optimizers."""
        return float(np.mean([getattr(a, key) for a in self.optimizers]))

    def mean_effort(self, channel: int) -> float:
        """Mean effort on one channel."""
        return float(np.mean([a.action[channel] for a in self.optimizers]))

    def _draw(self, spec: Any) -> Any:
        """One draw of a pool attribute (a value, or ``{values, weights}``)."""
        if hasattr(spec, "values") and hasattr(spec, "probabilities"):
            return self.random.choices(spec.values, weights=spec.probabilities())[0]
        return spec

    def select(self, agent: ReferenceOptimizer) -> None:
        """Fill one slot by best-of-n selection of whole candidates, one at a time."""
        principal = agent.principal
        config = principal.config.selection
        agents = self.config.agents
        pool = config.pool

        def pick(key: str) -> Any:  # the principal's pool overrides [agents]
            mine = getattr(pool, key)
            return getattr(agents, key) if mine is None else mine

        own = config.sandbox == "model"
        world = self.params_of(principal.world_model.epoch) if own else self.params
        prior = principal.prior_mean().tolist()
        weights = principal.signal.tolist()
        push = [principal.beta * m for m in world.metric]
        best_score, best = -math.inf, None
        for _ in range(config.n):
            theta = [mu + config.prior_scale * self.random.gauss(0.0, 1.0) for mu in prior]
            capacity = int(self._draw(pick("capacity")))
            kind = self._draw(pick("optimizer"))
            if kind == "mixed":
                kind = "control" if self.random.random() < pick("control_share") else "direct"
            gain = float(self._draw(pick("gain")))
            perceive = world.perceives(min(capacity, principal.capacity) if own else capacity)
            reward = [t + p for t, p in zip(theta, push, strict=True)]
            if kind == "control":  # the law from rest over the episodes
                action, shown, noise = [0.0] * world.d, [0.0] * world.d, [0.0] * world.d
                for _ in range(config.eval_samples):
                    eps = world.noise(self.random)
                    felt = world.times_cost([a + e for a, e in zip(action, eps, strict=True)])
                    shown = [x + a for x, a in zip(shown, action, strict=True)]
                    noise = [x + e for x, e in zip(noise, eps, strict=True)]
                    action = [
                        max(0.0, action[c] + gain * (reward[c] - felt[c])) if perceive[c] else 0.0
                        for c in range(world.d)
                    ]
                shown = [x / config.eval_samples for x in shown]
                noise = [x / config.eval_samples for x in noise]
            else:
                action = shown = world.best_response(reward, perceive)
                noise = world.noise(self.random, config.eval_samples)
            score = sum(w * (a + e) for w, a, e in zip(weights, shown, noise, strict=True))
            if score > best_score:
                best_score, best = score, (theta, action, capacity, kind, gain)
        theta, action, capacity, kind, gain = best
        scale = self.config.agents.goals.scale
        agent.selected = theta
        agent.theta = [t + scale * self.random.gauss(0.0, 1.0) for t in theta]
        agent.action = action
        agent.capacity, agent.is_control, agent.gain = capacity, kind == "control", gain
        agent.last_noise = [0.0] * world.d
        agent.epoch = principal.world_model.epoch if own else self.world.epoch

    def redesign(self, principal: Principal) -> None:
        """The principal's belief of its agents' mean objective, then its contract."""
        members = self.members[principal.index]
        principal.mean_objective = np.mean([a.selected for a in members], axis=0)
        principal.design_contract(self.config.agents.risk_aversion)

    def step(self) -> None:
        """One step: regimes, selection, decide, advance, settle, collect, replace."""
        t = int(self.time)
        for regime in self.config.regimes:
            if regime.at == t:
                channel = self.config.channel_index(regime.channel)
                self.world = self.world.changed(channel, dict(regime.set))
                self.worlds.append(self.world)
                self._params.append(_Params(self.world))
                if "value" in regime.set:
                    for principal in self.principals:
                        principal.true_values[channel] = float(regime.set["value"])
        for principal, members in zip(self.principals, self.members, strict=True):
            config = principal.config.selection
            if config.every and t % config.every == 0 and config.fraction > 0:
                count = round(config.fraction * len(members))
                if count:
                    for agent in sorted(members, key=lambda a: a.proxy)[:count]:
                        self.select(agent)
                    self.redesign(principal)
        self.agents_by_type[ReferenceOptimizer].shuffle_do("step")
        self.agents_by_type[ReferenceOptimizer].do("advance")
        self.agents_by_type[ReferenceOptimizer].do("settle")
        self.datacollector.collect(self)
        for principal, members in zip(self.principals, self.members, strict=True):
            if principal.config.audit.replace:
                for agent in members:
                    if agent.caught:
                        self.select(agent)
