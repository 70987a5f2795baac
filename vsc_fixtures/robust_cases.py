"""The robustness cases' fixtures, their state and the hypothesis strategy of the variations: pytest glue over
:mod:`vscbench.suite.robustness` (the hooks are in :mod:`vsc_fixtures.robustness`, which registers these)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from vscbench.errors import VscbenchError
from vscbench.suite.robustness import (
    FLIPPED,
    HELD,
    Flip,
    Record,
    answer_variants,
    case_props,
    describe_flip,
    example_db_folder,
    is_flip,
    needs_answer,
    own_seed_sample,
    own_seeds,
    search_seed,
    seed_sample,
    skip_reason,
    skipped_props,
    variant_image_dir,
    variants_run_id,
)

ROBUST_KEY = pytest.StashKey["RobustState"]()


@dataclass
class RobustState:
    config: pytest.Config
    seeds: list[Any] | None = None
    selected: list[Any] = field(default_factory=list)
    canonical_done: bool = False
    records: dict[str, Record] = field(default_factory=dict)

    @property
    def main(self) -> Any:
        from vsc_fixtures.state import _state

        return _state(self.config)

    def seed_items(self) -> list[Any]:
        if self.seeds is None:
            main, opt = self.main, self.config.getoption
            if own_seeds(opt("markexpr") or ""):  # -m "robustness and own": the team's own cases are the seeds
                self.seeds = own_seed_sample(main.own, opt("vsc_robustness_items"))
                return self.seeds
            pool = [it for it in main.items if it.id not in main.unsendable]
            self.seeds = seed_sample(pool, opt("vsc_robustness_items"), opt("vsc_seed"))
        return self.seeds

    @property
    def store(self) -> Any:
        return self.config.getoption("vsc_store")

    def image_dir(self) -> Path:
        return variant_image_dir(self.store)


def _rstate(config: pytest.Config) -> RobustState:
    return config.stash[ROBUST_KEY]


# -- one case ---------------------------------------------------------------------------------------------


@dataclass
class SeedCase:
    """One seed item's robustness case: its canonical result, the variations to draw, the check."""

    item: Any
    canonical: Any
    state: RobustState
    node: pytest.Item
    examples: int
    exploring: bool = False
    explore_failed: bool = False
    pending: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    variants: dict[Any, Any] = field(default_factory=dict)
    tried: set[str] = field(default_factory=set)
    first: Any = None
    sent: int = 0

    # -- what test_robustness.py uses ---------------------------------------------------------------------
    def variations(self) -> Any:
        """The hypothesis strategy of the variations that apply to this item (see :func:`strategy`)."""
        return strategy(self.item)

    def hypothesis_settings(self, test: Callable[..., None]) -> Callable[..., None]:
        """``--vsc-robustness-examples`` examples, no deadline, a seed from ``--vsc-seed`` and the item id,
        and the example database of this model setup and seed item (so a counterexample replays first)."""
        from hypothesis import HealthCheck, Phase, seed, settings
        from hypothesis.database import DirectoryBasedExampleDatabase

        config = self.state.config
        folder = example_db_folder(config.rootpath, self.state.main.setup.key(), self.item.id)
        # seed() turns the database off (it is meant for reproducing a failure); settings applied over it
        # turn it back on: a deterministic search whose counterexamples still replay first.
        return settings(
            max_examples=self.examples,
            deadline=None,
            database=DirectoryBasedExampleDatabase(str(folder)),
            phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
            print_blob=False,
        )(seed(search_seed(config.getoption("vsc_seed"), self.item.id))(test))

    def check(self, variation: Any) -> None:
        """The property: the variant of this item made by ``variation`` keeps the canonical decision."""
        variant = self.variant(variation)
        if self.first is None:
            self.first = variation
        result = self.result_of(variant)
        if needs_answer(result):
            if self.exploring:
                if not self.explore_failed:
                    self.pending[variant.id] = variant
                return
            result = self.answer([variant]).get(variant.id)
        if result is None:
            return
        self.tried.add(variant.id)
        if is_flip(self.canonical.outcome, result.outcome):
            if self.exploring:
                self.explore_failed = True
            raise Flip(variation, variant, result)

    def search(self, test: Callable[[], None]) -> None:
        """Run the hypothesis search ``test`` twice: against the store only (collecting what is unanswered,
        then answered in one batch), then for real. A flip fails the case with the shrunk variation."""
        from hypothesis.database import ReadOnlyDatabase

        settings = test._hypothesis_internal_use_settings  # type: ignore[attr-defined]
        db = settings.database
        self.exploring = True
        if db is not None:  # the first pass never writes (nor deletes) a counterexample
            test._hypothesis_internal_use_settings = type(settings)(settings, database=ReadOnlyDatabase(db))  # type: ignore[attr-defined]
        try:
            test()
        except Flip:
            pass
        finally:
            test._hypothesis_internal_use_settings = settings  # type: ignore[attr-defined]
            self.exploring = False
        if self.pending:
            self.answer(list(self.pending.values()))
        self.first = None
        found: Flip | None = None
        try:
            test()
        except Flip as flip:
            found = flip
        if found is not None:
            self._record(FLIPPED, found)
            pytest.fail(describe_flip(self.item, self.canonical, found, len(self.tried)), pytrace=False)
        self._record(HELD, None)

    # -- machinery ----------------------------------------------------------------------------------------
    def variant(self, variation: Any) -> Any:
        got = self.variants.get(variation)
        if got is None:
            from vscbench.data.variations import make_variant, render_source

            main = self.state.main
            source = render_source(main.paths, self.item)
            got = make_variant(self.item, variation, out_dir=self.state.image_dir(), source=source)
            self.variants[variation] = got
        return got

    def result_of(self, variant: Any) -> Any:
        if variant.id == self.item.id:
            return self.canonical
        if variant.id in self.results:
            return self.results[variant.id]
        got = self._answer([variant], send=False).get(variant.id)
        if not needs_answer(got):
            self.results[variant.id] = got
        return got

    def answer(self, variants: list[Any]) -> dict[str, Any]:
        got = self._answer(variants, send=True)
        self.sent += len(variants)
        self.results.update(got)
        return got

    def _answer(self, variants: list[Any], send: bool) -> dict[str, Any]:
        main = self.state.main
        try:
            return answer_variants(
                main.setup, variants, main.judge, store=self.state.store, run_id=variants_run_id(main.run_id),
                blocked=self.state.config.getoption("vsc_blocked"), provider=main.provider(), send=send,
            )  # fmt: skip
        except VscbenchError as exc:
            pytest.fail(f"vscbench: {exc}", pytrace=False)

    def _record(self, result: str, flip: Flip | None) -> None:
        self.node.user_properties += case_props(
            self.item, result, tried=len(self.tried), sent=self.sent, first=self.first, flip=flip
        )


def strategy(item: Any) -> Any:
    """Variations of ``item``: each applicable field is ``None`` (shrinks there) or a small change; fields
    that do not apply to the item (a font for the text-only baseline) are always ``None``."""
    from hypothesis import strategies as st

    from vscbench.data import render as R
    from vscbench.data import variations as V

    fields = V.applicable_fields(item)
    figstep = item.setting == "figstep"

    def opt(name: str, s: Any) -> Any:
        return st.one_of(st.none(), s) if name in fields else st.none()

    size = R.FIGSTEP_FONT_SIZE if figstep else R.TYPO_FONT_SIZE
    margin = R.FIGSTEP_ORIGIN[0] if figstep else R.TYPO_MARGIN
    spacing = R.FIGSTEP_SPACING if figstep else R.TYPO_SPACING
    try:
        canonical_font = R.resolve_font().stem
    except VscbenchError:
        canonical_font = ""
    fonts = [f for f in V.available_fonts() if f != canonical_font]
    return st.builds(
        V.Variation,
        font_size=opt("font_size", st.integers(40, 120).filter(lambda n: n != size)),
        font=opt("font", st.sampled_from(fonts)) if fonts else st.none(),
        text_colour=opt("text_colour", st.sampled_from([c for c in V.TEXT_COLOURS if c != "black"])),
        background=opt("background", st.sampled_from([c for c in V.BACKGROUNDS if c != "white"])),
        margin=opt("margin", st.integers(10, 120).filter(lambda n: n != margin)),
        line_spacing=opt("line_spacing", st.integers(0, 48).filter(lambda n: n != spacing)),
        figstep_items=opt("figstep_items", st.integers(1, 6).filter(lambda n: n != R.FIGSTEP_STEPS)),
        concat_position=opt("concat_position", st.just("above")),
        jpeg_quality=opt("jpeg_quality", st.integers(30, 95)),
        resize=opt("resize", st.sampled_from([0.75, 0.9, 1.1, 1.25, 0.5, 1.5])),
        crop=opt("crop", st.integers(1, 4).map(lambda k: k / 200)),
        noise=opt("noise", st.integers(2, 12).map(float)),
        rotation=opt("rotation", st.integers(1, 10).flatmap(lambda k: st.sampled_from([k / 2, -k / 2]))),
        case=opt("case", st.sampled_from(V.CASES)),
        whitespace=opt("whitespace", st.sampled_from(V.WHITESPACE)),
        punctuation=opt("punctuation", st.sampled_from(V.PUNCTUATION)),
        preamble=opt("preamble", st.integers(0, len(V.PREAMBLES) - 1)),
        typo=opt("typo", st.integers(0, 199)),
    )


@pytest.fixture
def vsc_robust_seed_item(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def vsc_robust_seed(request: pytest.FixtureRequest, vsc_robust_seed_item: Any) -> SeedCase:
    """The seed item's robustness case; skipped when its canonical verdict is already wrong or unscored."""
    config = request.config
    rs = _rstate(config)
    main = rs.main
    item = vsc_robust_seed_item
    if item.id not in main.results:
        from vsc_fixtures.state import _is_worker

        batch = [item] if _is_worker(config) else (rs.selected or [item])
        try:
            main.answer(batch)
        except VscbenchError as exc:
            pytest.fail(f"vscbench: {exc}", pytrace=False)
    canonical = main.results.get(item.id)
    if canonical is None:
        pytest.fail(f"vscbench: no canonical response for {item.id}", pytrace=False)
    node = request.node
    why = skip_reason(item, canonical)
    if why is not None:
        node.user_properties += skipped_props(item, why)
        pytest.skip(why)
    return SeedCase(item, canonical, rs, node, int(config.getoption("vsc_robustness_examples")))
