"""The ``--limit`` sample and the selection checks, on the real metadata (pure: no store, no server)."""

from __future__ import annotations

from collections import Counter

import pytest

from conftest import METADATA
from vscbench.data import load_items, resolve_paths
from vscbench.errors import VscbenchError
from vscbench.runner.run import calibration_facts, exclusion_summary, retry_command
from vscbench.runner.select import (
    Selection,
    balanced_sample,
    check_selection,
    proportional_sample,
    sample_order,
)
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
    image = [i for i in sample if i.half == "image"]
    per = Counter((i.category, i.label) for i in image)
    for cat in {i.category for i in image}:
        assert per[(cat, "safe")] == per[(cat, "unsafe")] >= 12
    assert len({i.category for i in image}) == 6
    # whole pairs (safe slot j + unsafe slot j of one query)
    for i in image:
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
        if k >= 12:
            assert max(cats.values()) - min(cats.values()) <= 2, k  # categories, within one pair
        if k % 2 == 0:  # every even prefix is whole pairs
            ids = {i.id for i in order[:k]}
            assert all(i.pair[0] in ids for i in order[:k]), k


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


def _pairs_whole(sample: list[Item]) -> bool:
    ids = {i.id for i in sample}
    return all(i.pair[0] in ids for i in sample if i.half == "image")


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 10, 11, 25, 40, 41])
def test_limit_draws_whole_image_pairs_and_gives_an_odd_item_to_text(all_items: list[Item], n: int) -> None:
    sample = balanced_sample(all_items, n, seed=2)
    halves = Counter(i.half for i in sample)
    assert len(sample) == n and _pairs_whole(sample), n
    assert halves["image"] % 2 == 0 and abs(halves["image"] - halves["text"]) <= 2, halves
    if n % 2:  # an odd limit extends the even one below it, by one text item
        smaller = balanced_sample(all_items, n - 1, seed=2) if n > 1 else []
        assert set(smaller) <= set(sample)
        assert [i.half for i in sample if i not in smaller] == ["text"]
    assert set(sample) <= set(balanced_sample(all_items, n + 2, seed=2))  # same parity: nested


def test_image_half_odd_limit_rounds_down_to_whole_pairs(all_items: list[Item]) -> None:
    image = [i for i in all_items if i.half == "image"]
    seven = balanced_sample(image, 7)
    assert len(seven) == 6 and _pairs_whole(seven) and set(seven) == set(balanced_sample(image, 6))
    assert Counter(i.label for i in seven) == {"safe": 3, "unsafe": 3}
    assert set(seven) <= set(balanced_sample(image, 9))
    with pytest.raises(VscbenchError, match=r"--limit 1: image items are drawn in whole safe/unsafe pairs"):
        balanced_sample(image, 1)


def test_the_suite_sample_gives_each_half_its_share_and_never_fills_one_half_from_the_other() -> None:
    from vscbench.suite.cases import HalfDraw, sendability

    items = load_items(resolve_paths(None, METADATA))  # 1,800 image + 2,250 text
    none: set[str] = set()
    got, report = proportional_sample(items, none, 90, seed=0)
    assert report == [("image", 40, 40), ("text", 50, 50)] and len(got) == 90  # 1800/4050 of 90 is 40
    assert Counter(i.half for i in got) == {"image": 40, "text": 50}
    # the image half not sendable: its share is reported, not drawn, and not taken from the text half
    images = {i.id for i in items if i.half == "image"}
    got, report = proportional_sample(items, images, 90, seed=0)
    assert report == [("image", 40, 0), ("text", 50, 50)] and {i.half for i in got} == {"text"}
    assert got == [i for i in items if i.id in {g.id for g in got}]  # canonical order
    # a half with fewer sendable items than its share: all of them, and the shortfall said
    few = images - set(sorted(images)[:4])  # 4 image items sendable
    got, report = proportional_sample(items, few, 90, seed=0)
    assert report[0] == ("image", 40, 4)
    lines = sendability(items, {i: "image missing: /x" for i in images}, sample=90,
                        draws=[HalfDraw("image", 40, 0), HalfDraw("text", 50, 50)], run=50)  # fmt: skip
    assert lines[1] == (
        "  image half: 1,800 selected, 0 sendable (1,800 not: release images absent: vscbench data fetch, "
        "or --vsc-data-root)"
    )
    assert lines[2] == "  text half: 2,250 selected, 2,250 sendable"
    assert lines[-1] == "  --vsc-sample=90: drew image half 0 of its share 40, text half 50 of its share 50; "\
        "not drawn: 40 of the image half (not sendable)"  # fmt: skip
    empty = sendability([i for i in items if i.half == "image"], {i: "image missing: /x" for i in images}, run=0)
    assert empty[-1] == "  nothing to send: every selected case is not sendable here (see above)"
    assert sendability([], {}, run=0)[-1].startswith("  the selection is empty")
    with pytest.raises(VscbenchError, match="--vsc-sample 0: must be at least 1"):
        proportional_sample(items, none, 0)


def test_a_session_is_narrowed_only_when_it_selected_less_than_the_benchmark() -> None:
    from vscbench.suite.gate import narrowed_by

    assert narrowed_by(4050, 4050, ["-k x"]) == ()  # every case selected: a full run, whatever the flags
    assert narrowed_by(120, 4050, ["--vsc-sample=120"]) == ("--vsc-sample=120",)
    assert narrowed_by(1800, 4050, []) == ("1,800 of 4,050 benchmark cases collected",)
