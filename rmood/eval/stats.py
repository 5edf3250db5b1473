"""Intervals, tests and power for the study's numbers, from a design of replicates × prompts.

**The design.** Every number of the study is measured on R replicates (seeds that re-draw what carries randomness)
× P prompts. An estimate is the mean over replicates of a statistic of each replicate's per-prompt table,
θ̂ = mean_r θ_r with θ_r = g(x̄_r): a mean gold, an accuracy (a ratio of counts over a prompt's pairs), a value
interpolated at a KL, a fit. Where the replicates are measured on the same prompts (the eval prompts, the prompts
of the held-out pairs), prompts are a second random factor **crossed** with the replicates, Y_rp = μ + a_r + b_p +
e_rp, and Var(θ̂) = σ²_A/R + σ²_B/P + σ²_E/(RP): the prompt effect b_p is shared by every replicate and does not
average out over replicates. Where each replicate has prompts of its own they are **nested**, and Var(θ̂) is the
variance of θ_r over replicates divided by R.

**The variance.** Per replicate, the jackknife over prompts gives pseudo-values Z_rp = P·θ_r − (P−1)·θ_r(−p) (for a
mean, the data themselves; for a ratio, a fit or an interpolation, their linearisation), so a prompt's samples and
pairs move together and no random resampling is involved. The mean squares of the table Z — between replicates
(A), between prompts (B) and their interaction (E), as in a two-way random-effects ANOVA — give Var(θ̂)'s two
estimated terms: V_A = MS_A/(RP) (R − 1 degrees of freedom) and V_B = max(MS_B − MS_E, 0)/(RP) (P − 1). Nested:
V_A = s²(θ_r)/R alone. One replicate: the prompt term MS_B/P alone.

**The interval** is θ̂ ∓ c·√(V_A + V_B), c the `level` quantile of |Z|·√(V_A/u_A + V_B/u_B)/√(V_A + V_B) with
u ~ χ²_df/df — the generalized pivotal quantity (Weerahandi 1993) of the mean of a random-effects model: a
t quantile with R − 1 degrees of freedom when the replicates' spread dominates (4.30 with three), the normal one
when the shared prompts dominate. Satterthwaite's t was tried and rejected: when both terms matter it covered
91-93% with three replicates (its degrees of freedom grow exactly when V_A happens to be small); a bootstrap over
three replicates covers about 75% (10 distinct resamples, (R − 1)/R of the variance, a normal quantile). The
pivot's draws are fixed and seeded, so every run gives the same numbers.

**Families.** Several contrasts read together (every point of a curve against its start, every pair of points)
get simultaneous intervals: one critical value, the `level` quantile of max_k |pivot_k| with the Z's correlated as
the contrasts' estimates are (the max-t method of multcomp).

**Power.** `predicted_power` simulates the same test in a study of R × P with the estimated variance components
σ²_A, σ²_B, σ²_E; `Estimate.mdd` is the smallest difference that test finds with 80% power in this study's design.

Coverage, false-positive rates and power predictions are measured on simulated studies by `rmood.eval.simulate`
(`python -m rmood calibration`; tests/test_simulate.py holds them to their bounds).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, stats

Statistic = Callable[[np.ndarray], np.ndarray]  # per-replicate means (..., F) -> statistics (..., S)
PIVOT_DRAWS = 20_000  # draws of the generalized pivot behind a critical value


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")


def _tables(per_replicate: Sequence[ArrayLike], crossed: bool) -> list[np.ndarray]:
    """The replicates' tables as float arrays (P_r, F); ValueError naming the first bad one and why."""
    if len(per_replicate) == 0:
        raise ValueError("no replicates")
    tables = [np.asarray(values, dtype=float) for values in per_replicate]
    tables = [t[:, None] if t.ndim == 1 else t for t in tables]
    for r, table in enumerate(tables):
        if table.ndim != 2 or len(table) < 2:
            raise ValueError(f"replicate {r} needs a table of at least 2 prompts × features, got shape {table.shape}")
        if table.shape[1] != tables[0].shape[1]:
            raise ValueError(f"replicate {r} has {table.shape[1]} features, replicate 0 has {tables[0].shape[1]}")
        if crossed and len(table) != len(tables[0]):
            raise ValueError(f"crossed design: replicate {r} has {len(table)} prompts, replicate 0 {len(tables[0])}")
        if not np.isfinite(table).all():
            raise ValueError(f"replicate {r} has non-finite values")
    return tables


def estimate(per_replicate: Sequence[ArrayLike], crossed: bool, statistic: Statistic | None = None) -> Estimate:
    """The estimate mean_r g(x̄_r) of per-replicate tables (P_r, F) (1-d: one feature) and its pseudo-values.

    `crossed`: the rows of every table are the same prompts in the same order (see `align`); otherwise each
    replicate's prompts are its own. `statistic` g maps per-replicate means (..., F) to (..., S) (default: the
    means themselves); it must work on any leading shape (it is applied to the leave-one-prompt-out means too).
    """
    tables = _tables(per_replicate, crossed)
    g = statistic or (lambda means: means)
    theta, pseudo = [], []
    for table in tables:
        p = len(table)
        mean = table.mean(axis=0)
        value = np.asarray(g(mean), dtype=float)
        loo = np.asarray(g((p * mean - table) / (p - 1)), dtype=float)  # (P, S): each prompt left out in turn
        theta.append(value)
        pseudo.append(p * value - (p - 1) * loo)
    return Estimate(np.array(theta), tuple(pseudo), crossed)


def join(estimates: Sequence[Estimate]) -> Estimate:
    """One estimate of several replicates' own ones (each of one replicate, the same statistics; crossed when they
    all are): for statistics whose form differs between replicates, e.g. a curve read up to each replicate's own
    last usable point."""
    if not estimates or any(e.replicates != 1 for e in estimates):
        raise ValueError("join takes one or more estimates of one replicate each")
    return Estimate(np.vstack([e.theta for e in estimates]), tuple(e.pseudo[0] for e in estimates),
                    all(e.crossed for e in estimates))


def align(prompts: Sequence[Sequence[str]], tables: Sequence[ArrayLike],
          fill: float | None = None) -> tuple[list[np.ndarray], bool]:
    """Per-replicate tables (rows = `prompts[r]`) made ready for `estimate`: (tables, crossed).

    The same prompts in every replicate: crossed, rows in the first replicate's order. No prompt in two replicates:
    nested, as they are. Otherwise, with `fill` (e.g. 0 for counts: a prompt without pairs in a replicate adds
    none): crossed over every prompt any replicate has, a missing row filled; without `fill`, ValueError.
    """
    if len(prompts) != len(tables):
        raise ValueError(f"{len(prompts)} prompt lists for {len(tables)} tables")
    sets = [set(ids) for ids in prompts]
    for r, (ids, table) in enumerate(zip(prompts, tables)):
        if len(ids) != len(sets[r]) or len(ids) != len(table):
            raise ValueError(f"replicate {r}: {len(table)} rows for {len(ids)} prompt ids ({len(sets[r])} distinct)")
    arrays = [np.asarray(t, dtype=float) for t in tables]
    if all(s == sets[0] for s in sets):
        order = list(prompts[0])
    elif sum(map(len, sets)) == len(set().union(*sets)):
        return arrays, len(arrays) == 1
    elif fill is not None:
        order = sorted(set().union(*sets))
    else:
        raise ValueError("the replicates share some prompts but not all: neither crossed nor nested")
    aligned = []
    for ids, table in zip(prompts, arrays):
        rows = dict(zip(ids, table))
        blank = np.full(table.shape[1:], fill if fill is not None else np.nan)
        aligned.append(np.array([rows.get(p, blank) for p in order]))
    return aligned, True


@functools.lru_cache(maxsize=64)
def _pivot_draws(size: int, replicates: int, prompts: int, stream: int = 0) -> tuple[np.ndarray, ...]:
    """Fixed draws (seeded, so every run gives the same numbers): standard normals (PIVOT_DRAWS, size) and the
    chi-square ratios U/df of the replicate part (R − 1 degrees of freedom; ones when R = 1) and of the prompt part
    (P − 1). `stream` picks an independent set."""
    rng = np.random.default_rng([20221018, stream])
    normals = rng.standard_normal((PIVOT_DRAWS, size))
    ratios = [stats.chi2.ppf(rng.random(PIVOT_DRAWS), df) / df if df > 0 else np.ones(PIVOT_DRAWS)
              for df in (replicates - 1, prompts - 1)]
    return normals, *ratios


def _pivot(normals: np.ndarray, u_replicate: np.ndarray, u_prompt: np.ndarray, replicate: ArrayLike,
           prompt: ArrayLike) -> np.ndarray:
    """Draws of the generalized pivot (θ̂ − θ)/SE of statistics with these estimated variance terms (see
    `Estimate.terms`): Z·√(V_A/u_A + V_B/u_B)/SE, SE² = V_A + V_B."""
    replicate, prompt = np.asarray(replicate, dtype=float), np.asarray(prompt, dtype=float)
    total = replicate + prompt
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.sqrt((replicate / u_replicate[:, None] + prompt / u_prompt[:, None]) / total)
    return normals * np.where(total > 0, scale, 1.0)  # a statistic without variance: any scale, SE 0


@functools.lru_cache(maxsize=256)
def _critical_curve(replicates: int, prompts: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The critical value of one statistic against the replicate term's share V_A/SE² of its variance, on a grid."""
    normals, u_replicate, u_prompt = _pivot_draws(1, replicates, prompts)
    share = np.linspace(0.0, 1.0, 201)
    return share, np.quantile(np.abs(_pivot(normals, u_replicate, u_prompt, share, 1 - share)), level, axis=0)


def _critical(replicate: ArrayLike, prompt: ArrayLike, replicates: int, prompts: float, level: float) -> np.ndarray:
    """The critical value of each statistic whose variance has these estimated terms (see `Estimate.terms`)."""
    replicate, prompt = np.asarray(replicate, dtype=float), np.asarray(prompt, dtype=float)
    total = replicate + prompt
    share = np.divide(replicate, total, out=np.zeros_like(total), where=total > 0)
    return np.interp(share, *_critical_curve(replicates, round(prompts), level))


def _power(difference: float, replicate: ArrayLike, prompt: float, replicates: int, prompts: float, level: float,
           critical: float | None = None) -> float:
    """The chance that a statistic with a true `difference` and these true variance terms (see `Estimate.terms`) is
    found different from 0: θ̂ ~ N(difference, V_A + V_B), V_A and V_B estimated with R − 1 and P − 1 degrees of
    freedom, the interval θ̂ ∓ c·SE with c from the estimates (or the given `critical`, e.g. a family's). V_A may
    be one value per draw (PIVOT_DRAWS of them): the power is then averaged over them."""
    normals, u_replicate, u_prompt = _pivot_draws(1, replicates, round(prompts), stream=1)
    theta = difference + normals[:, 0] * np.sqrt(replicate + prompt)
    drawn = replicate * u_replicate, prompt * u_prompt
    c = _critical(*drawn, replicates, prompts, level) if critical is None else critical
    return float(np.mean(np.abs(theta) > c * np.sqrt(drawn[0] + drawn[1])))


def _detectable(replicate: ArrayLike, prompt: float, replicates: int, prompts: float, level: float, power: float,
                critical: float | None = None) -> float:
    """The smallest true difference found with chance `power` (see `_power`)."""
    se = np.sqrt(np.median(replicate) + prompt)
    if not np.isfinite(se) or (critical is not None and not np.isfinite(critical)):
        return float("nan")
    if se == 0:
        return 0.0
    return float(optimize.brentq(lambda d: _power(d * se, replicate, prompt, replicates, prompts, level, critical)
                                 - power, 0.0, 100.0, xtol=1e-4)) * se


@dataclass(frozen=True)
class Estimate:
    """θ̂ = the mean over replicates of θ_r, with the jackknife pseudo-values over prompts behind its variance.

    `theta` (R, S): each replicate's statistic; `pseudo`: per replicate (P_r, S); `crossed`: one set of prompts
    shared by every replicate (then every P_r is the same and rows are the same prompts).
    """

    theta: np.ndarray
    pseudo: tuple[np.ndarray, ...]
    crossed: bool

    @property
    def value(self) -> np.ndarray:
        return self.theta.mean(axis=0)

    @property
    def replicates(self) -> int:
        return len(self.theta)

    @property
    def prompts(self) -> float:
        """Prompts per replicate (their mean, nested)."""
        return float(np.mean([len(z) for z in self.pseudo]))

    def contrast(self, matrix: ArrayLike) -> Estimate:
        """The estimate of `matrix` (C, S) @ statistics: linear contrasts, e.g. differences of points (statistics
        that no contrast uses may be NaN)."""
        m = np.asarray(matrix, dtype=float)
        used = (m != 0).any(axis=0)
        m = m[:, used]
        return Estimate(self.theta[:, used] @ m.T, tuple(z[:, used] @ m.T for z in self.pseudo), self.crossed)

    def __getitem__(self, index) -> Estimate:
        """The estimate of some of the statistics (an index, list or slice of S)."""
        keep = np.atleast_1d(np.arange(self.theta.shape[1])[index])
        return Estimate(self.theta[:, keep], tuple(z[:, keep] for z in self.pseudo), self.crossed)

    def mean_products(self, full: bool = False) -> dict[str, np.ndarray]:
        """The mean squares of the pseudo-values per statistic (S,), or with `full` their mean cross-products (S, S):
        A (replicates), B (prompts) and E (interaction) when crossed; A (replicates) and W (prompts within
        replicates) when nested. One replicate: B only (the prompts)."""
        def products(x: np.ndarray) -> np.ndarray:  # Σ over the leading axes of x_s·x_t, or of x_s² alone
            flat = x.reshape(-1, x.shape[-1])
            return flat.T @ flat if full else np.einsum("is,is->s", flat, flat)

        z = self.pseudo
        r = len(z)
        if r == 1 or not self.crossed:
            means = np.array([x.mean(axis=0) for x in z])
            within = sum(products(x - m) for x, m in zip(z, means)) / sum(len(x) - 1 for x in z)
            if r == 1:
                return {"B": within}
            return {"A": self.prompts * products(means - means.mean(axis=0)) / (r - 1), "W": within}
        table = np.stack(z)  # (R, P, S)
        p = table.shape[1]
        grand = table.mean(axis=(0, 1))
        rows, cols = table.mean(axis=1) - grand, table.mean(axis=0) - grand
        resid = table - rows[:, None] - cols[None] - grand
        return {"A": p * products(rows) / (r - 1), "B": r * products(cols) / (p - 1),
                "E": products(resid) / ((r - 1) * (p - 1))}

    def terms(self, products: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The two estimated terms of Var(θ̂), per statistic (or as matrices of full `products`): the replicates'
        V_A = MS_A/(RP), with R − 1 degrees of freedom, and the shared prompts' V_B = max(MS_B − MS_E, 0)/(RP)
        (crossed; none nested), with P − 1. One replicate: V_B = MS_B/P alone."""
        ms = products if products is not None else self.mean_products()
        r, p = self.replicates, self.prompts
        if r == 1:
            return np.zeros_like(ms["B"]), ms["B"] / p
        if not self.crossed:
            return ms["A"] / (r * p), np.zeros_like(ms["A"])
        shared = ms["B"] - ms["E"]
        return ms["A"] / (r * p), (shared if products is not None else np.maximum(shared, 0)) / (r * p)

    def components(self) -> dict[str, np.ndarray]:
        """Variance components per statistic, for `predicted_power`: σ²_A (replicates), σ²_B (shared prompts),
        σ²_E (the rest: interaction, or prompts within a replicate when nested), negative estimates set to 0;
        σ²_A is NaN with one replicate (it cannot be told from the prompts' part)."""
        ms = self.mean_products()
        p = self.prompts
        if self.replicates == 1:
            return {"replicate": np.full(ms["B"].shape, np.nan), "prompt": np.zeros_like(ms["B"]), "residual": ms["B"]}
        rest = ms["E"] if self.crossed else ms["W"]
        return {"replicate": np.maximum(ms["A"] - rest, 0) / p,
                "prompt": np.maximum(ms["B"] - rest, 0) / self.replicates if self.crossed else np.zeros_like(rest),
                "residual": rest}

    def variance(self) -> np.ndarray:
        """V̂ = V_A + V_B: the estimated variance of θ̂ of every statistic (see `terms`)."""
        return sum(self.terms())

    def se(self) -> np.ndarray:
        return np.sqrt(self.variance())

    def critical(self, level: float = 0.95, family: bool = False) -> np.ndarray:
        """The critical value c of each statistic's two-sided `level` interval θ̂ ∓ c·SE: the `level` quantile of
        |pivot| (a t quantile when only one term is present), or, for a `family`, one value for all: the quantile
        of max_k |pivot_k|, the Z's correlated as the statistics are (simultaneous intervals)."""
        _check_level(level)
        replicate, prompt = self.terms()
        if not family or len(replicate) == 1:
            return _critical(replicate, prompt, self.replicates, self.prompts, level)
        normals, u_replicate, u_prompt = _pivot_draws(len(replicate), self.replicates, round(self.prompts))
        cov = sum(self.terms(self.mean_products(full=True)))
        values, vectors = np.linalg.eigh((cov + cov.T) / 2)
        root = vectors * np.sqrt(np.clip(values, 0, None))  # cov = root @ root.T, made positive semi-definite
        norms = np.sqrt(np.einsum("ij,ij->i", root, root))
        correlated = normals @ root.T / np.where(norms > 0, norms, 1)
        pivots = np.abs(_pivot(correlated, u_replicate, u_prompt, replicate, prompt))
        return np.full(len(replicate), np.quantile(pivots.max(axis=1), level))

    def interval(self, level: float = 0.95, family: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """θ̂ ∓ c·SE: the two-sided `level` interval of each statistic (simultaneous over them for a `family`)."""
        half = self.critical(level, family) * self.se()
        return self.value - half, self.value + half

    def mdd(self, level: float = 0.95, power: float = 0.8, critical: float | None = None) -> np.ndarray:
        """The minimum detectable difference of each statistic: the smallest true value its test (the `level`
        interval excludes 0) finds with chance `power` in another study of this design, predicted as
        `predicted_power` predicts it from this one (one replicate: from its prompts alone). The critical value is
        the test's own, or `critical` (e.g. a family's, from `critical(level, family=True)`)."""
        if self.replicates == 1:
            terms = list(zip(*self.terms()))
        else:
            components, design = self.components(), (self.replicates, self.prompts)
            terms = [predicted_terms({k: v[i] for k, v in components.items()}, *design, self.crossed, design)
                     for i in range(len(self.value))]
        return np.array([_detectable(*t, self.replicates, self.prompts, level, power, critical) for t in terms])


def predicted_terms(components: dict[str, float], replicates: int, prompts: float, crossed: bool,
                    measured: tuple[int, float] | None = None) -> tuple[ArrayLike, float]:
    """The terms of Var(θ̂) (see `Estimate.terms`) of a study of `replicates` × `prompts` with these variance
    components (`Estimate.components`): V_A = (σ²_E + P·σ²_A)/(RP) and V_B = σ²_B/P (crossed; 0 nested).

    `measured`: the (R, P) of the study the components were estimated from. σ²_A then rests on R − 1 degrees of
    freedom, and V_A is returned as PIVOT_DRAWS draws of its generalized pivot, σ²_A* = max(MS_A/u − σ²_E, 0)/P
    with MS_A = σ²_E + P·σ²_A and u ~ χ²_{R−1}/(R − 1), so that a prediction carries that uncertainty."""
    if replicates < 2:
        raise ValueError(f"a prediction needs at least 2 replicates, got {replicates}")
    a, b, e = components["replicate"], components["prompt"], components["residual"]
    if measured is not None:
        r0, p0 = measured
        _, u_replicate, _ = _pivot_draws(1, r0, round(p0), stream=2)
        a = np.maximum((e + p0 * a) / u_replicate - e, 0.0) / p0
    return (e + prompts * a) / (replicates * prompts), (b / prompts if crossed else 0.0)


def predicted_power(difference: float, components: dict[str, float], replicates: int, prompts: float,
                    crossed: bool, level: float = 0.95, measured: tuple[int, float] | None = None) -> float:
    """The power of the report's test (the `level` interval excludes 0) to find a true `difference` in a study of
    `replicates` × `prompts` with these variance components; averaged over their uncertainty when they were
    `measured` in a study of (R, P) (see `predicted_terms`)."""
    _check_level(level)
    terms = predicted_terms(components, replicates, prompts, crossed, measured)
    return _power(difference, *terms, replicates, prompts, level)


# --- matched KL ---------------------------------------------------------------------------------


def interpolate_at(kl: ArrayLike, values: ArrayLike, target: float) -> np.ndarray:
    """The value at KL = `target` of each row of `values` (..., K) against `kl` (..., K), shape (...).

    Linear interpolation on √KL (negative KL estimates count as 0) between the points sorted by KL in each
    row. A caller chooses a target inside every row's range (`rmood.eval.estimates` never extrapolates); np.interp
    would hold the nearest end point's value beyond it.
    """
    kl, values = np.broadcast_arrays(np.asarray(kl, dtype=float), np.asarray(values, dtype=float))
    if kl.ndim == 0 or kl.shape[-1] == 0:
        raise ValueError(f"kl and values must have at least one point on their last axis, got shape {kl.shape}")
    order = np.argsort(kl, axis=-1, kind="stable")
    d = np.sqrt(np.clip(np.take_along_axis(kl, order, axis=-1), 0.0, None)).reshape(-1, kl.shape[-1])
    v = np.take_along_axis(values, order, axis=-1).reshape(d.shape)
    x = np.sqrt(max(target, 0.0))
    return np.array([np.interp(x, d_row, v_row) for d_row, v_row in zip(d, v)]).reshape(kl.shape[:-1])
