"""The ``--limit`` sample and the selection checks, on the real metadata (pure: no store, no server)."""

from __future__ import annotations

from collections import Counter

import pytest

from conftest import METADATA
from vscbench.data import load_items, resolve_paths
from vscbench.errors import VscbenchError
from vscbench.runner.run import calibration_facts, exclusion_summary, retry_command
from vscbench.runner.select import Selection, balanced_sample, check_selection, sample_order
from vscbench.types import GenConfig, Item


@pytest.fixture(scope="module")
def all_items() -> list[Item]:
    return load_items(resolve_paths("/nonexistent-root", METADATA))


def _qa_selection(items: list[Item]) -> list[Item]:
    """The QA report's selection: --setting image --setting text --setting figstep --setting typography."""
    return [i for i in items if i.setting in ("image", "text", "figstep", "typography")]


def test_limit_balances_labels_within_each_category_and_keeps_image_pairs(all_items: list[Item]) -> None:
    sample = balanced_sample(_qa_selection(all_items), 300)
    assert len(sample) == 300 and Counter(i.half for i in sample) == {"image": 150, "text": 150}
    ids = {i.id for i in sample}
    image = [i for i in sample if i.half == "image"]
    per = Counter((i.category, i.label) for i in image)
    for cat in {i.category for i in image}:
        assert abs(per[(cat, "safe")] - per[(cat, "unsafe")]) <= 1 and per[(cat, "safe")] >= 12
    assert len({i.category for i in image}) == 6
    # whole pairs (safe slot j + unsafe slot j of one query), bar at most one open pair per category
    unpaired = [i for i in image if i.pair[0] not in ids]
    assert len(unpaired) <= 6 and len({i.category for i in unpaired}) == len(unpaired)
    for i in image:
        if i.pair[0] in ids:
            partner = next(j for j in image if j.id == i.pair[0])
            assert (partner.query_id, partner.slot) == (i.query_id, i.slot) and partner.label != i.label
    # the text half comes as whole queries across the three selected settings
    text = [i for i in sample if i.half == "text"]
    assert set(Counter(i.query_id for i in text).values()) == {3}
    assert Counter(i.setting for i in text) == {"text": 50, "figstep": 50, "typography": 50}
    assert Counter(i.label for i in text) == {"safe": 75, "unsafe": 75}


def test_every_prefix_of_the_image_order_is_balanced(all_items: list[Item]) -> None:
    order = sample_order([i for i in all_items if i.half == "image"], seed=3)
    assert len(order) == 1800 and len({i.id for i in order}) == 1800
    cats: Counter[str] = Counter()
    per: Counter[tuple[str | None, str]] = Counter()
    balance = 0
    for k, it in enumerate(order, 1):
        cats[it.category or ""] += 1
        per[(it.category, it.label)] += 1
        balance += 1 if it.label == "safe" else -1
        assert abs(balance) <= 1, k  # labels of the half
        assert abs(per[(it.category, "safe")] - per[(it.category, "unsafe")]) <= 1, k  # labels per category
        if k >= 6:
            assert max(cats.values()) - min(cats.values()) <= 1, k  # categories


def test_sample_is_deterministic_nested_and_seeded(all_items: list[Item]) -> None:
    sel = _qa_selection(all_items)
    small, large = balanced_sample(sel, 120, seed=4), balanced_sample(sel, 300, seed=4)
    assert small == balanced_sample(sel, 120, seed=4)
    assert set(small) <= set(large)  # a larger --limit extends a smaller one
    assert balanced_sample(sel, 120, seed=5) != small
    order = {i.id: k for k, i in enumerate(sel)}
    assert [order[i.id] for i in large] == sorted(order[i.id] for i in large)  # canonical order kept
    assert balanced_sample(sel[:10], 50) == sel[:10]


def test_limit_below_one_and_unknown_selection_values_are_refused() -> None:
    with pytest.raises(VscbenchError, match=r"--limit 0: must be at least 1"):
        balanced_sample([], 0)
    with pytest.raises(VscbenchError, match=r"--limit -5: must be at least 1"):
        check_selection(Selection(limit=-5))
    with pytest.raises(VscbenchError, match=r"--category bogus: not an image category .*homonyms"):
        check_selection(Selection(categories=("drugs", "bogus")))
    with pytest.raises(VscbenchError, match=r"--setting bogus: not a setting"):
        check_selection(Selection(settings=("text", "bogus")))
    with pytest.raises(VscbenchError, match=r"--setting figstep: not a setting of the image half"):
        check_selection(Selection(half="image", settings=("figstep",)))
    with pytest.raises(VscbenchError, match=r"--category drugs: not a category of the text half"):
        check_selection(Selection(half="text", categories=("drugs",)))
    check_selection(Selection(half="text", settings=("figstep",), categories=("homonyms",), limit=1))


def test_exclusion_summary_counts_per_reason() -> None:
    from vscbench.runner.run import CALIBRATION_SPLIT_NOTE

    blank = "blank query in the source metadata: listed and counted, never sent to a model"
    excluded = {f"b{k}": blank for k in range(12)} | {f"c{k}": CALIBRATION_SPLIT_NOTE for k in range(16)}
    assert exclusion_summary(excluded) == "12 (blank query), 16 (calibration split)"
    assert exclusion_summary({}) == "0"


def test_calibration_facts_keep_what_decides_the_requests() -> None:
    m = {"method": "fewshot", "spec": "fewshot:k=1", "k": 1, "seed": 0, "pool": {"sha256": "p", "source": "x"},
         "draw": [{"pair": "a", "order": ("safe", "unsafe")}], "text": "long"}  # fmt: skip
    assert calibration_facts(m) == {
        "method": "fewshot", "k": 1, "seed": 0, "pool_sha256": "p",
        "draw": [{"pair": "a", "order": ["safe", "unsafe"]}],
    }  # fmt: skip
    assert calibration_facts({"method": "steer", "sha256": "d1", "direction": "/x"}) != calibration_facts(
        {"method": "steer", "sha256": "d2", "direction": "/x"}
    )


def test_retry_command_repeats_what_a_resume_must_match() -> None:
    cmd = retry_command(
        "openai/gpt-4o-mini", "r2", base_url="http://127.0.0.1:44059/v1", metadata="/m d", store="s.sqlite",
        config=GenConfig(max_tokens=64, temperature=0.5), calibrations=["reminder"],
    )  # fmt: skip
    assert cmd == (
        "vscbench run -m openai/gpt-4o-mini --base-url http://127.0.0.1:44059/v1 --metadata '/m d' "
        "--store s.sqlite --run-id r2 --max-tokens 64 --temperature 0.5 --calibration reminder --retry-errors"
    )
    secret = retry_command("openai-compatible/m", "r", base_url="https://u:pw@host/v1")
    assert "pw" not in secret and '--base-url "$BASE_URL"' in secret
