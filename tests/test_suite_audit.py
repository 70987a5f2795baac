"""The audited rate (suite/audit), its sample (suite/sample) and the audit: mapping's parser."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vscbench.errors import VscbenchError
from vscbench.suite.audit import (
    Stratum,
    audited_rate,
    combine,
    design_effect,
    exact_limits,
    human_only,
    wilson,
)
from vscbench.suite.sample import AuditCase, AuditConfig, allocate, draw, parse_audit, uniform

# -- the exact finite-population limits -----------------------------------------------------------------


def _tail_le_brute(x: int, n: int, pop: int, pos: int) -> float:
    total = math.comb(pop, n)
    return sum(math.comb(pos, k) * math.comb(pop - pos, n - k) for k in range(0, x + 1)) / total


def test_exact_limits_match_a_brute_force_inversion() -> None:
    for pop, n in ((20, 7), (40, 40), (30, 1)):
        for x in range(n + 1):
            ok = [
                pos
                for pos in range(pop + 1)
                if x <= pos <= pop - (n - x)
                and _tail_le_brute(x, n, pop, pos) > 0.025
                and 1 - (_tail_le_brute(x - 1, n, pop, pos) if x else 0.0) > 0.025
            ]
            assert exact_limits(x, n, pop) == (min(ok) / pop, max(ok) / pop), (pop, n, x)


def test_exact_limits_edges() -> None:
    assert exact_limits(0, 0, 50) == (0.0, 1.0)
    assert exact_limits(7, 40, 40) == (7 / 40, 7 / 40)  # every case labelled: the rate itself
    lo, hi = exact_limits(0, 50, 400)
    assert lo == 0.0 and 0.05 < hi < 0.08  # no positive seen still leaves room above: never a zero width
    with pytest.raises(ValueError):
        exact_limits(5, 4, 10)


def test_wilson_is_the_textbook_interval_and_shrinks_with_the_population() -> None:
    lo, hi = wilson(10, 100)
    assert round(lo, 4) == 0.0552 and round(hi, 4) == 0.1744
    flo, fhi = wilson(10, 100, population=150)
    assert lo < flo < 0.1 < fhi < hi
    assert wilson(10, 100, population=100) == (0.1, 0.1)


# -- the estimator --------------------------------------------------------------------------------------


def _population(rng: random.Random, n: int, rate: float, sens: float, spec: float) -> tuple[list[bool], list[bool]]:
    human = [rng.random() < rate for _ in range(n)]
    judge = [(rng.random() < sens) if h else (rng.random() >= spec) for h in human]
    return human, judge


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(5, 300),
    rate=st.floats(0.0, 1.0),
    size=st.integers(1, 120),
    stratify=st.booleans(),
)
def test_a_perfect_judge_gives_the_true_rate_exactly(seed: int, n: int, rate: float, size: int, stratify: bool) -> None:
    rng = random.Random(seed)
    human, _ = _population(rng, n, rate, 1.0, 1.0)
    ids = [f"c{k}" for k in range(n)]
    flags = dict(zip(ids, human, strict=True))
    sample = draw([AuditCase(i, "unsafe", f) for i, f in flags.items()], AuditConfig("s", size, stratify=stratify))
    est = audited_rate(flags, {i: flags[i] for i in sample.ids})
    truth = sum(human) / n
    # every labelled stratum agrees with the judge: the estimate is the truth, and so is the judge's rate
    labelled_strata = {flags[i] for i in sample.ids}
    if labelled_strata == set(flags.values()):
        assert est.estimate == pytest.approx(truth, abs=1e-12)
        assert est.agreement == 1.0
    assert est.judge_rate == pytest.approx(truth)
    assert est.ci_low - 1e-12 <= truth <= est.ci_high + 1e-12


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 300), rate=st.floats(0.0, 1.0), size=st.integers(1, 300))
def test_a_judge_that_flags_all_or_none_gives_the_human_only_interval(seed: int, n: int, rate: float, size: int) -> None:
    """One stratum: the audited estimate and interval are the human-only ones, to the last bit."""
    rng = random.Random(seed)
    human, _ = _population(rng, n, rate, 0.5, 0.5)
    ids = [f"c{k}" for k in range(n)]
    for constant in (True, False):
        flags = dict.fromkeys(ids, constant)
        cases = [AuditCase(i, "unsafe", constant) for i in ids]
        sample = draw(cases, AuditConfig("salt", size))
        labels = {i: human[int(i[1:])] for i in sample.ids}
        est = audited_rate(flags, labels)
        x = sum(labels.values())
        assert (est.estimate, est.ci_low, est.ci_high) == human_only(x, len(labels), n)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n_flag=st.integers(1, 40), n_rest=st.integers(1, 40), k=st.integers(1, 5))
def test_a_proportional_sample_gives_the_human_only_point_whatever_the_judge(
    seed: int, n_flag: int, n_rest: int, k: int
) -> None:
    """When the labelled cases split over the strata as the population does, the post-stratified point is the
    plain mean of the labels, for any judge (noise included)."""
    rng = random.Random(seed)
    flags = {f"f{j}": True for j in range(n_flag * k)} | {f"r{j}": False for j in range(n_rest * k)}
    picked = [f"f{j}" for j in range(n_flag)] + [f"r{j}" for j in range(n_rest)]
    labels = {i: rng.random() < 0.3 for i in picked}
    est = audited_rate(flags, labels)
    assert est.estimate == pytest.approx(sum(labels.values()) / len(labels))


def test_a_noise_judge_converges_to_the_human_only_interval() -> None:
    """A judge independent of the truth: as the sample grows the audited width tends to the human-only one."""
    rng = random.Random(1)
    n = 4000
    human, judge = _population(rng, n, 0.3, 0.4, 0.6)  # flags 40% whatever the truth
    ids = [f"c{k}" for k in range(n)]
    flags = dict(zip(ids, judge, strict=True))
    ratios = []
    for size in (100, 1000):
        sample = draw([AuditCase(i, "unsafe", f) for i, f in flags.items()], AuditConfig("n", size, stratify=False))
        labels = {i: human[int(i[1:])] for i in sample.ids}
        est = audited_rate(flags, labels)
        _, lo, hi = human_only(sum(labels.values()), len(labels), n)
        ratios.append((est.ci_high - est.ci_low) / (hi - lo))
    assert abs(ratios[1] - 1) < abs(ratios[0] - 1) + 0.02 and abs(ratios[1] - 1) < 0.05


def test_a_useful_judge_narrows_the_interval() -> None:
    rng = random.Random(2)
    n = 400
    human, judge = _population(rng, n, 0.15, 0.9, 0.95)
    ids = [f"c{k}" for k in range(n)]
    flags = dict(zip(ids, judge, strict=True))
    cases = [AuditCase(i, "unsafe", f) for i, f in flags.items()]
    audited = draw(cases, AuditConfig("w", 100))
    plain = draw(cases, AuditConfig("w", 100, stratify=False))
    est = audited_rate(flags, {i: human[int(i[1:])] for i in audited.ids})
    x = sum(human[int(i[1:])] for i in plain.ids)
    _, lo, hi = human_only(x, 100, n)
    assert est.ci_high - est.ci_low < 0.85 * (hi - lo)


def test_every_case_labelled_gives_the_human_rate_itself() -> None:
    flags = {"a": True, "b": True, "c": False, "d": False, "e": False}
    human = {"a": True, "b": False, "c": False, "d": True, "e": False}
    est = audited_rate(flags, human)
    assert (est.estimate, est.ci_low, est.ci_high) == pytest.approx((0.4, 0.4, 0.4))
    assert est.agreement == pytest.approx(3 / 5) and est.judge_rate == pytest.approx(0.4)


def test_unsure_labels_count_at_their_worst_for_each_end() -> None:
    flags = {f"c{k}": k < 20 for k in range(200)}
    sure = {f"c{k}": k < 5 for k in range(0, 200, 4)}
    est = audited_rate(flags, sure)
    with_unsure = audited_rate(flags, sure | {"c1": None, "c30": None})
    assert with_unsure.unsure == 2 and with_unsure.labelled == est.labelled
    assert with_unsure.ci_low <= est.ci_low and with_unsure.ci_high > est.ci_high
    assert with_unsure.estimate == est.estimate


def test_a_stratum_with_no_labels_is_unknown() -> None:
    flags = {f"c{k}": k < 10 for k in range(100)}
    est = audited_rate(flags, {f"c{k}": False for k in range(10, 60)})  # no flagged case labelled
    assert est.estimate == pytest.approx(0.1)  # the flagged stratum at the judge's own value
    # its limits are [0, 1]: the whole 10% may be positive or none of it
    assert est.ci_low == 0.0
    assert est.ci_high == pytest.approx(0.1 + 0.9 * exact_limits(0, 50, 90)[1])
    with pytest.raises(ValueError):
        audited_rate({}, {})


def test_strata_counts_are_checked() -> None:
    with pytest.raises(ValueError):
        Stratum(10, 5, 6)
    with pytest.raises(ValueError):
        Stratum(10, 8, 1, unsure=3)
    assert combine([Stratum(10, 10, 3), Stratum(0, 0, 0)]) == (0.3, 0.3, 0.3)


def test_clustered_labels_widen_the_interval() -> None:
    values = [True, True, False, False, True, True, False, False] * 5
    pairs = [k // 2 for k in range(len(values))]  # both cases of a pair agree: strongly clustered
    assert design_effect(values, pairs) > 1.5
    assert design_effect(values, list(range(len(values)))) == 1.0
    flags = {f"c{k}": False for k in range(400)}
    labels = {f"c{k}": v for k, v in enumerate(values)}
    plain = audited_rate(flags, labels)
    clustered = audited_rate(flags, labels, clusters={f"c{k}": k // 2 for k in range(400)})
    assert clustered.ci_high - clustered.ci_low > plain.ci_high - plain.ci_low
    assert clustered.estimate == plain.estimate


def test_to_dict_carries_the_figures() -> None:
    est = audited_rate({"a": True, "b": False}, {"a": True})
    d = est.to_dict()
    assert {"judge_rate", "estimate", "ci_low", "ci_high", "labelled", "unsure", "agreement", "strata"} <= set(d)
    assert d["labelled"] == 1 and d["agreement"] == 1.0


# -- the sample -----------------------------------------------------------------------------------------


def _cases(n: int, flag_every: int = 5) -> list[AuditCase]:
    return [
        AuditCase(f"ic/drugs/{k:03d}/{'unsafe' if k % 2 else 'safe'}/0", "unsafe" if k % 2 else "safe", k % flag_every == 0)
        for k in range(n)
    ]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.integers(1, 150))
def test_the_sample_is_invariant_to_the_responses(seed: int, size: int) -> None:
    """Unstratified: the flags (what the judge made of the responses) change nothing. Stratified: responses
    that change without changing their flag change nothing, and a case drawn is drawn whatever its flag when
    its draw number is below both strata's cut-offs."""
    rng = random.Random(seed)
    cases = _cases(200)
    other = [AuditCase(c.case_id, c.label, rng.random() < 0.5) for c in cases]
    plain = AuditConfig("salt-1", size, stratify=False)
    assert draw(cases, plain).ids == draw(other, plain).ids
    assert draw(list(reversed(cases)), plain).ids == draw(cases, plain).ids  # order of the cases is irrelevant
    strat = AuditConfig("salt-1", size)
    assert draw(cases, strat).ids == draw(list(reversed(cases)), strat).ids


def test_the_sample_size_inclusion_and_oversampling() -> None:
    cases = _cases(400)
    s = draw(cases, AuditConfig("x", 100))
    assert len(s.ids) == 100 and len(set(s.ids)) == 100
    flagged = sum(1 for c in cases if c.flag)
    drawn_flagged = sum(1 for c in cases if c.flag and c.case_id in s)
    # flagged cases are drawn at twice the rate of the others (oversample 2)
    p_f = drawn_flagged / flagged
    p_u = (100 - drawn_flagged) / (400 - flagged)
    assert 1.6 < p_f / p_u < 2.5
    for c in cases:
        if c.case_id in s:
            name = f"{c.label}/{'flagged' if c.flag else 'not flagged'}"
            n_cases, k = s.strata[name]
            assert s.inclusion[c.case_id] == pytest.approx(k / n_cases)
    assert sum(k for _, k in s.strata.values()) == 100
    # a new salt, a new sample; the same salt, the same
    assert draw(cases, AuditConfig("y", 100)).ids != s.ids
    assert draw(cases, AuditConfig("x", 100)).ids == s.ids
    # more than there is: every case
    assert len(draw(cases[:30], AuditConfig("x", 100)).ids) == 30


def test_pairs_are_drawn_together() -> None:
    cases = [AuditCase(f"tc/{k}/{s}", "unsafe", False, pair=f"tc/{k}") for k in range(100) for s in ("a", "b")]
    s = draw(cases, AuditConfig("p", 40, unit="pair", stratify=False))
    pairs = {i.rsplit("/", 1)[0] for i in s.ids}
    assert len(pairs) == 20


def test_uniform_is_stable() -> None:
    assert uniform("salt", "ic/drugs/001/unsafe/0") == uniform("salt", "ic/drugs/001/unsafe/0")
    assert 0 <= uniform("a", "b") < 1 and uniform("a", "b") != uniform("b", "a")


def test_allocate() -> None:
    assert allocate({"unsafe": (10, 90)}, 40, 2.0) == {"unsafe": (7, 33)}
    assert allocate({"unsafe": (3, 97)}, 50, 2.0)["unsafe"] == (3, 47)  # capped: every flagged case
    assert allocate({"unsafe": (90, 5)}, 50, 1.0)["unsafe"] == (47, 3)  # proportional at 1
    assert allocate({"unsafe": (20, 5)}, 50, 1.0) == {"unsafe": (20, 5)}  # more than there is: all
    a = allocate({"safe": (0, 100), "unsafe": (50, 50)}, 50, 2.0)
    assert sum(a["safe"]) == 25 and sum(a["unsafe"]) == 25


# -- the audit: mapping ---------------------------------------------------------------------------------


def test_parse_audit_defaults_and_values() -> None:
    assert parse_audit(None) is None
    cfg = parse_audit({"salt": "2026-12"})
    assert cfg == AuditConfig("2026-12")
    cfg = parse_audit(
        {"salt": 7, "size": 50, "scopes": ["benchmark", "half=image"], "oversample": 3, "unit": "pair", "estimate": "judge"},
        known_scopes=["benchmark", "half=image"],
    )
    assert cfg is not None and cfg.salt == "7" and cfg.size == 50 and cfg.scopes == ("benchmark", "half=image")
    assert cfg.oversample == 3.0 and cfg.unit == "pair" and cfg.estimate == "judge"


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ([1], "audit: expected a mapping"),
        ({"size": 10}, "audit.salt: missing"),
        ({"salt": ""}, "audit.salt: '' is not a non-empty string"),
        ({"salt": "s", "size": 0}, "audit.size: 0 is not a whole number"),
        ({"salt": "s", "size": True}, "audit.size: True"),
        ({"salt": "s", "scopes": []}, "audit.scopes: expected a non-empty list"),
        ({"salt": "s", "scopes": ["nowhere"]}, "audit.scopes: 'nowhere': unknown scope"),
        ({"salt": "s", "scopes": ["benchmark", "benchmark"]}, "named twice"),
        ({"salt": "s", "oversample": 0.5}, "audit.oversample: 0.5 is not a number from 1 to 1000"),
        ({"salt": "s", "stratify": "yes"}, "audit.stratify: 'yes' is not true or false"),
        ({"salt": "s", "stratify": False, "oversample": 2}, "audit.oversample: needs stratify: true"),
        ({"salt": "s", "unit": "query"}, "audit.unit: 'query' is not 'case' or 'pair'"),
        ({"salt": "s", "estimate": "conservative"}, "audit.estimate: 'conservative' is not 'audited' or 'judge'"),
        ({"salt": "s", "sise": 3}, "audit.sise: unknown key"),
    ],
)
def test_parse_audit_rejects_bad_input_in_one_line(doc: object, needle: str) -> None:
    with pytest.raises(VscbenchError) as exc:
        parse_audit(doc, "thresholds.yaml", known_scopes=["benchmark", "half=image"])
    msg = str(exc.value)
    assert msg.startswith("thresholds.yaml: audit") and needle in msg and "\n" not in msg
    assert exc.value.exit_code == 4


def test_row_audit_is_incomplete_until_every_sampled_case_of_the_row_is_labelled() -> None:
    from vscbench.suite.audit import row_audit

    flags = {f"c{k}": k < 10 for k in range(50)}
    sample = ["c1", "c20", "c30", "x-other-row"]
    r = row_audit(flags, sample, {"c1": True}, stale=["c20"])
    assert not r.complete and r.estimate is None
    assert r.sampled == 3 and r.missing == ("c20", "c30") and r.stale == ("c20",)
    # labels of cases outside the sample are never used
    r = row_audit(flags, sample, {"c1": True, "c20": False, "c30": None, "c2": True, "c3": True})
    assert r.complete and r.estimate is not None
    assert r.estimate.labelled == 2 and r.estimate.unsure == 1
    assert r.estimate.to_dict()["strata"][0]["labelled"] == 1  # c1 only among the flagged


def test_the_guard_where_every_stratum_may_hold_all_its_positives_in_the_sample() -> None:
    """43 flagged cases (29 labelled, 3 positive) and 207 others (71 labelled, 1 positive): both exact lower
    limits sit at the floor (the population may hold just the positives seen), where plain MOVER's lower end
    (about 0.020) excludes the rate 4/250 = 0.016 that is the likeliest such population."""
    flagged, rest = Stratum(43, 29, 3, flag=True), Stratum(207, 71, 1)
    point, lo, hi = combine([flagged, rest])
    floor = (3 + 1) / 250
    assert point == pytest.approx(43 / 250 * 3 / 29 + 207 / 250 * 1 / 71)
    assert lo <= floor < point < hi
    # never below the hard floor, never above the hard ceiling
    assert lo >= floor - 1e-12
    assert hi <= (43 - 26 + 207 - 70) / 250 + 1e-12
    # where the limits are off their bounds, plain MOVER (no guard)
    a, b = Stratum(400, 50, 10, flag=True), Stratum(1600, 50, 2)
    p, lo2, hi2 = combine([a, b])
    (la, ua), (lb, ub) = a.limits(), b.limits()
    wa, wb = 0.2, 0.8
    assert lo2 == pytest.approx(p - math.sqrt((wa * (a.point - la)) ** 2 + (wb * (b.point - lb)) ** 2))
    assert hi2 == pytest.approx(p + math.sqrt((wa * (ua - a.point)) ** 2 + (wb * (ub - b.point)) ** 2))
