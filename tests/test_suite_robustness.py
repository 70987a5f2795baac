"""The suite's metamorphic robustness cases (tests_safety/test_robustness.py, vsc_fixtures/robustness.py), run by
pytester in a subprocess against loopback OpenAI-compatible servers with three policies:

- brittle: refuses only a query that is exactly, casing and spacing included, the canonical query of an unsafe
  item; everything else is answered. Every unsafe seed item is then right canonically and flipped by any
  change of the query text: the search must find that and shrink it to one change;
- always refuse / always answer: no variation can flip anything (seed items whose canonical verdict is wrong
  are skipped), so the run passes.

Default budget (6 seed items, 20 examples each); the settings that render without the release archive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import METADATA, suite_checkout
from loopback import Call, Loopback
from vscbench.data import load_items, resolve_paths
from vscbench.data.variations import IMAGE_FIELDS, RENDER_FIELDS, Variation, make_variant, render_source

REFUSAL = "I'm sorry, but I can't help with that."
ANSWER = "Sure. Here are the steps, one by one."
UNSAFE_QUERIES = frozenset(i.query for i in load_items(resolve_paths(None, METADATA)) if i.label == "unsafe")


def brittle(call: Call) -> str:
    return REFUSAL if call.key in UNSAFE_QUERIES else ANSWER


def image_of(call: Call) -> str | None:
    """The data URL of the request's image (None for a text-only request)."""
    for m in (call.body or {}).get("messages", []):
        if isinstance(m.get("content"), list):
            for part in m["content"]:
                if part.get("type") == "image_url":
                    return str(part["image_url"]["url"])
    return None


class PixelBrittle:
    """Looks only at the pixels: refuses a request whose image is exactly the canonical image of an unsafe seed
    item, whatever the text (the first ``seeds`` requests are the seed items' canonical inputs, answered before
    any variant); a text-only request is refused when its text is exactly an unsafe query. So a typographic
    seed item is flipped only by a rendering or image change."""

    def __init__(self, seeds: int) -> None:
        self.seeds, self.n, self.canonical = seeds, 0, {}

    def __call__(self, call: Call) -> str:
        image = image_of(call)
        self.n += 1
        if self.n <= self.seeds and image is not None:
            self.canonical[image] = call.key in UNSAFE_QUERIES
        refuse = call.key in UNSAFE_QUERIES if image is None else self.canonical.get(image, False)
        return REFUSAL if refuse else ANSWER


@pytest.fixture(scope="module")
def server() -> Iterator[Loopback]:
    with Loopback() as lb:
        yield lb


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("release_root")


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    suite_checkout(pytester, thresholds=True, addopts="-p no:hypothesispytest")  # the suite loads thresholds even here
    return pytester


def run(p: pytest.Pytester, lb: Loopback, data_root: Path, store: Path, *args: str) -> pytest.RunResult:
    return p.runpytest_subprocess(
        "--model=openai-compatible/x", f"--vsc-base-url={lb.base_url}", "--judge=keyword",
        f"--vsc-metadata={METADATA}", f"--vsc-data-root={data_root}", f"--vsc-store={store}",
        "--vsc-no-snapshots", "-p", "no:randomly", "-p", "no:cacheprovider", *args,
    )  # fmt: skip


def flips(out: str) -> dict[str, tuple[str, int, str]]:
    """seed id -> (shrunk variation, number of changes, first variation tried) from the summary's FLIP lines."""
    got = {}
    for m in re.finditer(r"FLIP (\S+) \(unsafe\): (.*?)  \[(\d+) change\(s\); image (\S+); first tried: (.*?)\]\n", out):
        got[m[1]] = (m[2], int(m[3]), m[5])
    return got


def test_brittle_model_flips_found_and_shrunk_to_one_change_and_a_rerun_replays_without_asking_again(
    suite: pytest.Pytester, server: Loopback, data_root: Path, tmp_path: Path
) -> None:
    server.clean()
    server.respond = brittle
    store = tmp_path / "s.sqlite"
    res = run(suite, server, data_root, store, "-m", "robustness")
    out = res.stdout.str()
    assert res.ret == 1, out
    assert "vscbench robustness" in out
    found = flips(out)
    assert found, out
    failed = res.parseoutcomes()["failed"]
    assert len(found) == failed
    for seed, (variation, changes, _) in found.items():
        assert changes == 1, (seed, variation)
        field = variation.split("=", 1)[0]
        assert field in ("case", "whitespace", "punctuation", "preamble", "typo"), variation  # only the text can flip it
        assert f"robustness: {seed} (unsafe, " in out and f"smallest flipping variation: {variation}" in out
    assert "canonical response (REFUSE): " + repr(REFUSAL) in out
    assert "variant response (COMPLY): " + repr(ANSWER) in out
    first_bodies = {json.dumps(c.body, sort_keys=True) for c in server.calls}
    first_total = server.total
    assert first_total == len(first_bodies)  # no request sent twice
    assert (suite.path / ".hypothesis" / "vscbench").is_dir()

    # the re-run: the stored counterexamples are tried first, and everything comes from the store
    server.reset()
    again = run(suite, server, data_root, store, "-m", "robustness")
    out2 = again.stdout.str()
    assert again.ret == 1, out2
    found2 = flips(out2)
    assert {s: v[:2] for s, v in found2.items()} == {s: v[:2] for s, v in found.items()}
    for seed, (variation, _, first) in found2.items():
        assert first == variation, (seed, first, variation)  # replayed the stored counterexample first
    assert not {json.dumps(c.body, sort_keys=True) for c in server.calls} & first_bodies
    assert server.total == 0, [c.key for c in server.calls]


@pytest.mark.parametrize("policy", ["refuse", "answer"])
def test_always_refuse_or_always_answer_is_no_false_alarm(
    suite: pytest.Pytester, server: Loopback, data_root: Path, tmp_path: Path, policy: str
) -> None:
    server.clean()
    server.text = REFUSAL if policy == "refuse" else ANSWER
    res = run(suite, server, data_root, tmp_path / "s.sqlite", "-m", "robustness")
    out = res.stdout.str()
    server.text = "OK"
    assert res.ret == 0, out
    outcomes = res.parseoutcomes()
    assert outcomes.get("passed", 0) >= 2 and outcomes.get("skipped", 0) >= 2, outcomes  # one label held, one skipped
    assert "FLIP" not in out
    assert "already " + ("over-safe" if policy == "refuse" else "under-safe") in out or "skipped" in out
    assert re.search(r"\d+/\d+ seed items held under every variation tried", out), out
    assert re.fullmatch(r"=* ?\d+ passed.* in [\d.]+s ?=*", out.strip().splitlines()[-1]), out  # pytest's line last
    assert server.total > outcomes["passed"] + outcomes["skipped"]  # variants were asked, not only the seeds


def test_robustness_cases_are_opt_in(suite: pytest.Pytester) -> None:
    default = suite.runpytest_subprocess(f"--vsc-metadata={METADATA}", "--collect-only", "-q")
    assert not [line for line in default.stdout.lines if "test_robustness" in line]
    opted = suite.runpytest_subprocess(f"--vsc-metadata={METADATA}", "--collect-only", "-q", "-m", "robustness")
    ids = [line for line in opted.stdout.lines if "::" in line]
    assert len(ids) == 6 and all("test_robustness.py::test_harmless_variations_keep_the_decision[rb/" in i for i in ids)


def test_a_variation_that_changes_nothing_sent_is_the_seed_and_ids_are_content_addressed(tmp_path: Path) -> None:
    paths = resolve_paths(tmp_path, METADATA)
    items = {i.id: i for i in load_items(paths)}
    typo, text = items["tc/125/typography"], items["tc/125/text"]
    assert make_variant(text, Variation(font_size=60, jpeg_quality=50), out_dir=tmp_path) is text  # nothing applies
    src = render_source(paths, typo)
    a = make_variant(typo, Variation(font_size=60), out_dir=tmp_path / "a", source=src)
    b = make_variant(typo, Variation(font_size=60), out_dir=tmp_path / "b", source=src)
    assert a.id == b.id and a.id.startswith("rb/tc/125/typography/") and a.query == typo.query
    assert Path(a.image or "").read_bytes() == Path(b.image or "").read_bytes()
    c = make_variant(typo, Variation(case="lower"), out_dir=tmp_path, source=src)
    assert c.image == typo.image and c.query == typo.query.lower() and c.id != a.id


def test_pixel_brittle_model_is_flipped_by_a_single_rendering_or_image_change(
    suite: pytest.Pytester, server: Loopback, data_root: Path, tmp_path: Path
) -> None:
    server.clean()
    server.respond = PixelBrittle(seeds=6)
    res = run(suite, server, data_root, tmp_path / "s.sqlite", "-m", "robustness")
    out = res.stdout.str()
    assert res.ret == 1, out
    found = flips(out)
    assert found and all(changes == 1 for _, changes, _ in found.values()), found
    image_flips = {s: v for s, (v, _, _) in found.items() if not s.endswith("/text")}
    assert image_flips, found
    for seed, variation in image_flips.items():  # one rendering or image change; the saved image is the varied one
        assert variation.split("=", 1)[0] in (*RENDER_FIELDS, *IMAGE_FIELDS, "figstep_items"), variation
        m = re.search(rf"robustness: {re.escape(seed)} .*?\n  varied image:  (\S+)\n", out, re.S)
        assert m and "/variants/" in m[1] and Path(m[1]).is_file(), (seed, variation)
    assert server.total == len({json.dumps(c.body, sort_keys=True) for c in server.calls})


@pytest.mark.parametrize("seed_id", ["tc/125/typography", "tc/125/figstep"])
def test_every_rendering_and_image_variation_renders_deterministically(tmp_path: Path, seed_id: str) -> None:
    from hypothesis import given, settings
    from vsc_fixtures.robustness import strategy

    from vscbench.data.render import ensure_images

    paths = resolve_paths(tmp_path / "root", METADATA)
    seed = next(i for i in load_items(paths) if i.id == seed_id)
    ensure_images(paths, [seed])
    src = render_source(paths, seed)

    @settings(max_examples=8, deadline=None, database=None, derandomize=True)
    @given(v=strategy(seed))
    def renders(v: Variation) -> None:
        a = make_variant(seed, v, out_dir=tmp_path / "a", source=src)
        b = make_variant(seed, v, out_dir=tmp_path / "b", source=src)
        assert a.id == b.id and a.query == b.query
        if a.image != seed.image:
            assert Path(a.image or "").read_bytes() == Path(b.image or "").read_bytes()

    renders()


def test_generate_items_sends_only_what_the_run_does_not_hold(server: Loopback, tmp_path: Path) -> None:
    from dataclasses import replace

    from vscbench.runner.run import ModelSetup, generate_items
    from vscbench.store import Store

    server.clean()
    setup = ModelSetup(model="openai-compatible/x", base_url=server.base_url)
    seed = next(i for i in load_items(resolve_paths(None, METADATA)) if i.id == "tc/125/text")
    a, b, c = (replace(seed, id=f"rb/tc/125/text/{k}", query=q) for k, q in enumerate(("first", "second", "third")))
    store = tmp_path / "s.sqlite"
    first = generate_items(setup, [a, b, a], store=store, run_id="v-1")
    assert (first.sent, server.total) == (2, 2)
    again = generate_items(setup, [a, b, c], store=store, run_id="v-1")
    assert (again.sent, again.skipped, server.total) == (1, 2, 3)
    assert sorted(str(call.key) for call in server.calls) == ["first", "second", "third"]
    assert generate_items(setup, [a, b, c], store=store, run_id="v-1").sent == 0 and server.total == 3
    with Store(store) as st:
        assert st.get_run("v-1").kind == "variants" and set(st.responses("v-1")) == {a.id, b.id, c.id}
    other = ModelSetup(model="openai-compatible/y", base_url=server.base_url)
    with pytest.raises(Exception, match="was made with model"):
        generate_items(other, [a], store=store, run_id="v-1")
