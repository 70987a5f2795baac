"""The suite's metamorphic robustness cases: pytest glue over :mod:`vscbench.suite.robustness` and hypothesis.

Opt in with ``-m robustness``: unless the ``-m`` expression names ``robustness`` the cases are dropped after
collection (not run, and not counted as deselected).
How one case runs (one per seed item, ``tests_safety/test_robustness.py``):

- seed items: a deterministic, balanced sample (``--vsc-robustness-items``, ``--vsc-seed``) of the items that
  can be sent here; their canonical responses come from the suite's own run (answered in one batch by the
  first case; an item the suite answered before is not asked again). A seed item whose canonical verdict is
  already wrong, or unscored, is skipped with that reason;
- hypothesis draws variations (:mod:`vscbench.data.variations`) with a seed derived from ``--vsc-seed`` and
  the item id, ``--vsc-robustness-examples`` of them, no deadline, its example database under
  ``<rootdir>/.hypothesis/vscbench/<model setup>/<seed item>`` (a found counterexample replays first);
- answering is batched: a first pass runs the search against the store only (read-only database), collecting
  the variants nobody answered yet; they are answered in one batch (the variants run,
  ``<suite run id>-robustness``: content-addressed ids, so nothing answered is ever sent again); the second
  pass runs the same search for real, answering only what it still meets unanswered (shrinking), one by one;
- a flip (an unsafe item no longer safety-aware, a safe item now refused) fails the case with the seed item,
  the shrunk variation, the saved image and both responses; the summary reports, per setting, the seed items
  that held under every variation tried and the smallest flipping variation of each that did not.

The main gate ignores these cases (they carry no ``vsc_item``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from vscbench.errors import VscbenchError

ROBUST_KEY = pytest.StashKey["RobustState"]()
PROP = "vsc_rb_"
DB_DIR = Path(".hypothesis") / "vscbench"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("vscbench", "vscbench safety suite")
    g.addoption("--vsc-robustness-items", type=int, default=6, help="robustness: seed items (balanced sample; default 6)")
    g.addoption("--vsc-robustness-examples", type=int, default=20, help="robustness: hypothesis examples per seed item (default 20)")


@dataclass
class Record:
    """What the controller knows of one robustness case."""

    seed: str
    setting: str
    label: str
    result: str  # held | flipped | skipped | error
    tried: int = 0
    variation: str = ""
    changes: int = 0
    image: str | None = None
    reason: str = ""
    first: str = ""  # the first variation the (second) search tried: a replayed counterexample comes first


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
            from vscbench.runner.select import balanced_sample

            opt = self.config.getoption
            n = opt("vsc_robustness_items")
            if n < 1:
                raise VscbenchError(f"--vsc-robustness-items {n}: must be at least 1")
            main = self.main
            pool = [it for it in main.items if it.id not in main.unsendable]
            self.seeds = balanced_sample(pool, n, opt("vsc_seed")) if pool else []
        return self.seeds

    @property
    def store(self) -> Any:
        return self.config.getoption("vsc_store")

    def image_dir(self) -> Path:
        from vscbench.store import default_store_path

        store = self.store
        return (Path(store) if store else default_store_path()).expanduser().resolve().parent / "variants"


def _rstate(config: pytest.Config) -> RobustState:
    return config.stash[ROBUST_KEY]


def pytest_configure(config: pytest.Config) -> None:
    config.stash[ROBUST_KEY] = RobustState(config)
    n = config.getoption("vsc_robustness_examples")
    if n < 1:
        raise pytest.UsageError(f"--vsc-robustness-examples {n}: must be at least 1")


# -- collection -----------------------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vsc_robust_seed" not in metafunc.fixturenames:
        return
    from vscbench.suite.session import item_markers

    try:
        seeds = _rstate(metafunc.config).seed_items()
    except VscbenchError as exc:
        raise pytest.UsageError(str(exc)) from None
    params = [
        pytest.param(it, id=f"rb/{it.id}", marks=[getattr(pytest.mark, m) for m in item_markers(it)]) for it in seeds
    ]
    metafunc.parametrize("vsc_robust_seed_item", params)


def _opted_in(config: pytest.Config) -> bool:
    return re.search(r"\brobustness\b", config.getoption("markexpr") or "") is not None


@pytest.hookimpl(tryfirst=True)  # before -m / -k deselection, so that a default run never counts them
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if _opted_in(config):
        return
    # not part of this run at all (not counted as deselected: a default run's counts stay the benchmark's)
    items[:] = [n for n in items if n.get_closest_marker("robustness") is None]


@pytest.hookimpl(trylast=True)  # after -m / -k deselection: the robustness cases that will run
def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    cases = [n for n in session.items if n.get_closest_marker("robustness") is not None]
    if not cases:
        return
    main = _rstate(config).main
    if main.setup is None and not config.getoption("collectonly"):
        raise pytest.UsageError("robustness cases need a model: pass --model=ALIAS (see vsc_fixtures/models.yaml)")
    _rstate(config).selected = [n.callspec.params["vsc_robust_seed_item"] for n in cases if hasattr(n, "callspec")]


# -- one case ---------------------------------------------------------------------------------------------


class Flip(AssertionError):
    """A variation changed the decision (raised inside the hypothesis search, so that it shrinks)."""

    def __init__(self, variation: Any, variant: Any, result: Any) -> None:
        super().__init__(f"flip: {variation.describe()} -> {result.outcome}")
        self.variation, self.variant, self.result = variation, variant, result


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

        main = self.state.main
        folder = Path(self.state.config.rootpath) / DB_DIR / main.setup.key() / self.item.id.replace("/", "_")
        digest = hashlib.sha256(f"{self.state.config.getoption('vsc_seed')}\t{self.item.id}".encode()).hexdigest()
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
        )(seed(int(digest[:16], 16))(test))

    def check(self, variation: Any) -> None:
        """The property: the variant of this item made by ``variation`` keeps the canonical decision."""
        from vscbench.suite.robustness import is_flip, needs_answer

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
            self._record("flipped", found)
            pytest.fail(self.describe(found), pytrace=False)
        self._record("held", None)

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
        from vscbench.suite.robustness import needs_answer

        if not needs_answer(got):
            self.results[variant.id] = got
        return got

    def answer(self, variants: list[Any]) -> dict[str, Any]:
        got = self._answer(variants, send=True)
        self.sent += len(variants)
        self.results.update(got)
        return got

    def _answer(self, variants: list[Any], send: bool) -> dict[str, Any]:
        from vscbench.suite.robustness import answer_variants, variants_run_id

        main = self.state.main
        try:
            return answer_variants(
                main.setup, variants, main.judge, store=self.state.store, run_id=variants_run_id(main.run_id),
                blocked=self.state.config.getoption("vsc_blocked"), provider=main.provider(), send=send,
            )  # fmt: skip
        except VscbenchError as exc:
            pytest.fail(f"vscbench: {exc}", pytrace=False)

    def _record(self, result: str, flip: Flip | None) -> None:
        props = [
            ("seed", self.item.id), ("setting", self.item.setting), ("label", self.item.label), ("result", result),
            ("tried", len(self.tried)), ("sent", self.sent),
            ("first", self.first.describe() if self.first is not None else ""),
        ]  # fmt: skip
        if flip is not None:
            props += [
                ("variation", flip.variation.describe()), ("changes", len(flip.variation.changes())),
                ("image", flip.variant.image), ("outcome", flip.result.outcome),
                ("response", flip.result.text[:300]), ("variant", flip.variant.id),
            ]  # fmt: skip
        self.node.user_properties += [(PROP + k, v) for k, v in props]

    def describe(self, flip: Flip) -> str:
        it, can, res = self.item, self.canonical, flip.result

        def label(r: Any) -> str:
            return r.label.value if r.label else str(r.status.value if r.status else None)

        return (
            f"robustness: {it.id} ({it.label}, {it.setting}) flipped from {can.outcome} to {res.outcome}\n"
            f"  smallest flipping variation: {flip.variation.describe()}\n"
            f"  variant: {flip.variant.id} ({len(self.tried)} variants judged)\n"
            f"  query:         {it.query!r}\n"
            f"  varied query:  {flip.variant.query!r}\n"
            f"  image:         {it.image}\n"
            f"  varied image:  {flip.variant.image}\n"
            f"  canonical response ({label(can)}): {can.text[:300]!r}\n"
            f"  variant response ({label(res)}): {res.text[:300]!r}"
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
    from vscbench.suite.robustness import skip_reason

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
        node.user_properties += [
            (PROP + "seed", item.id), (PROP + "setting", item.setting), (PROP + "label", item.label),
            (PROP + "result", "skipped"), (PROP + "reason", why),
        ]  # fmt: skip
        pytest.skip(why)
    return SeedCase(item, canonical, rs, node, int(config.getoption("vsc_robustness_examples")))


# -- the summary ------------------------------------------------------------------------------------------


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    props: dict[str, Any] = {k.removeprefix(PROP): v for k, v in report.user_properties if isinstance(k, str) and k.startswith(PROP)}
    if "seed" not in props or "result" not in props:
        return
    if not (report.when == "call" or (report.skipped and report.when == "setup")):
        return
    state = _STATES.get("current")
    if state is None:
        return
    state.records[str(props["seed"])] = Record(
        seed=str(props["seed"]), setting=str(props.get("setting")), label=str(props.get("label")),
        result=str(props["result"]), tried=int(props.get("tried") or 0), variation=str(props.get("variation") or ""),
        changes=int(props.get("changes") or 0), image=props.get("image"), reason=str(props.get("reason") or ""),
        first=str(props.get("first") or ""),
    )  # fmt: skip


_STATES: dict[str, RobustState] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _STATES["current"] = _rstate(session.config)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rs = _rstate(config)
    if not rs.records or hasattr(config, "workerinput"):
        return
    tr = terminalreporter
    tr.section("vscbench robustness")
    main = rs.main
    from vscbench.suite.robustness import variants_run_id

    tr.write_line(
        f"model {main.model.given}, variants run {variants_run_id(main.run_id)}, "
        f"up to {config.getoption('vsc_robustness_examples')} examples per seed item"
    )
    by_setting: dict[str, list[Record]] = {}
    for rec in rs.records.values():
        by_setting.setdefault(rec.setting, []).append(rec)
    for setting in sorted(by_setting):
        recs = sorted(by_setting[setting], key=lambda r: r.seed)
        tested = [r for r in recs if r.result in ("held", "flipped")]
        held = [r for r in tested if r.result == "held"]
        skipped = len(recs) - len(tested)
        tr.write_line(
            f"{setting}: {len(held)}/{len(tested)} seed items held under every variation tried"
            + (f" ({skipped} skipped: canonical verdict wrong or unscored)" if skipped else "")
        )
        for r in recs:
            if r.result == "skipped":
                tr.write_line(f"  skipped {r.seed} ({r.label}): {r.reason}")
            if r.result == "flipped":
                tr.write_line(
                    f"  FLIP {r.seed} ({r.label}): {r.variation}  [{r.changes} change(s); image {r.image}; "
                    f"first tried: {r.first}]",
                    red=True,
                )
