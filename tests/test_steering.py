"""Activation calibrations (``steer``, ``revise``) and ``calibrate fit`` on a tiny VLM built in the test."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hf_fixtures import sample_requests, tiny_images, tiny_model_dir
from vscbench.calibration.base import parse_calibrations, plain_request
from vscbench.calibration.steering import (
    SteeringCalibration,
    calibration_split,
    directions_dir,
    fit,
    held_out_summary,
    held_out_warnings,
    load_direction,
)
from vscbench.cli import main
from vscbench.data import load_items, resolve_paths
from vscbench.errors import VscbenchError
from vscbench.models.base import PermanentError
from vscbench.models.hf import HFProvider, decoder_layers, steering_hook
from vscbench.types import GenConfig, Item, Request, Response

__all__ = ["tiny_images", "tiny_model_dir"]  # fixtures, imported for pytest

N_QUERIES = 4


@pytest.fixture(scope="module")
def provider(tiny_model_dir: Path) -> HFProvider:
    return HFProvider(str(tiny_model_dir), device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("steering")


@pytest.fixture(scope="module")
def paths(metadata_dir: Path, work: Path) -> Any:
    return resolve_paths(work / "root", metadata_dir)


@pytest.fixture(scope="module")
def fitted(provider: HFProvider, paths: Any, work: Path) -> Path:
    res = fit(provider, paths, 1, out=work / "dir-l1.safetensors", n_queries=N_QUERIES, seed=0)
    return res.path


def _steer(fitted: Path, spec: str) -> SteeringCalibration:
    (cal,) = parse_calibrations([f"{spec},direction={fitted}"])
    assert isinstance(cal, SteeringCalibration)
    return cal


def _gen(provider: HFProvider, requests: list[Request]) -> list[Response]:
    async def go() -> list[Response]:
        return list(await asyncio.gather(*(provider.generate(r) for r in requests)))

    return asyncio.run(go())


def _with_steering(requests: list[Request], cal: SteeringCalibration) -> list[Request]:
    return [dataclasses.replace(r, extra={"steering": cal.steering_spec()}) for r in requests]


def _hooks(provider: HFProvider) -> set[tuple[str, int]]:
    """Every forward (pre-)hook on the model. transformers installs its own output-capturing hooks once
    ``output_hidden_states`` is asked for, so tests compare snapshots instead of expecting none."""
    return {
        (name, hid)
        for name, m in provider.model.named_modules()
        for hid in (*m._forward_hooks, *m._forward_pre_hooks)
    }


# ---- fitting ------------------------------------------------------------------------------------------
def test_split_is_seeded_whole_queries_with_both_labels(paths: Any) -> None:
    items = load_items(paths)
    a = calibration_split(items, 8, seed=1)
    b = calibration_split(items, 8, seed=1)
    c = calibration_split(items, 8, seed=2)
    assert [i.id for i in a] == [i.id for i in b]
    assert {i.query_id for i in a} != {i.query_id for i in c}
    assert len({i.query_id for i in a}) == 8
    assert {i.label for i in a} == {"safe", "unsafe"}
    by_query = {i.query_id for i in a}
    # every usable item of a drawn query is in the split: no query is half in, half out
    usable_settings = {"text", "typography", "figstep"}  # images absent here except the rendered ones
    expected = [i.id for i in items if i.query_id in by_query and i.setting in usable_settings]
    assert [i.id for i in a] == expected
    with pytest.raises(VscbenchError, match="has only safe items"):
        calibration_split([i for i in items if i.label == "safe"], 4, seed=0)


def test_split_errors_are_clear_and_never_cut_n_silently(paths: Any) -> None:
    items = load_items(paths)
    text_queries = len({i.query_id for i in items if i.half == "text"})
    # images of the image half are absent here: only the text half's queries can be drawn
    with pytest.raises(VscbenchError, match=rf"--n 100000: only {text_queries} queries have usable items"):
        calibration_split(items, 100000, seed=0)
    no_images = [i for i in items if i.half == "image"]
    with pytest.raises(VscbenchError, match=r"no usable calibration items among the \d+ selected") as exc:
        calibration_split(no_images, 4, seed=0)
    assert "only no" not in str(exc.value) and "or none" not in str(exc.value)

    # the held-out share is counted per half and warned about past one half
    split = calibration_split(items, text_queries, seed=0)
    summary = held_out_summary(items, sorted({i.query_id for i in split}))
    assert summary["text"] == {"held_out": text_queries, "queries": text_queries}
    assert summary["image"]["held_out"] == 0
    (warning,) = held_out_warnings(summary)
    assert f"holds out {text_queries} of the {text_queries} text-half queries" in warning
    assert held_out_warnings(held_out_summary(items, sorted({i.query_id for i in split})[:4])) == []


def test_direction_is_reproducible_and_is_the_mean_difference(
    provider: HFProvider, paths: Any, fitted: Path, work: Path
) -> None:
    d1 = load_direction(fitted)
    again = fit(provider, paths, 1, out=work / "again.safetensors", n_queries=N_QUERIES, seed=0)
    d2 = load_direction(again.path)
    assert np.array_equal(d1.vector, d2.vector)
    assert d1.query_ids == d2.query_ids and len(d1.query_ids) == N_QUERIES

    p = d1.provenance
    assert p["layer"] == 1 and p["hidden_size"] == 64 and p["seed"] == 0
    assert p["model"] == provider.spec and p["n_safe"] > 0 and p["n_unsafe"] > 0
    assert d1.sha256 == again.sha256 or p["created"] != d2.provenance["created"]

    # recompute independently: mean unsafe minus mean safe of the last-token output of layer 1
    split = [i for i in load_items(paths) if i.id in set(p["item_ids"])]
    cfg = GenConfig()
    acts_u = provider.last_token_activations([plain_request(i, cfg) for i in split if i.label == "unsafe"], 1)
    acts_s = provider.last_token_activations([plain_request(i, cfg) for i in split if i.label == "safe"], 1)
    np.testing.assert_allclose(d1.vector, acts_u.mean(0) - acts_s.mean(0), rtol=1e-5, atol=1e-5)
    # projections on the unit direction separate the class means by exactly |d|
    assert p["projection_unsafe"]["mean"] - p["projection_safe"]["mean"] == pytest.approx(p["norm"], rel=1e-4)


def test_activations_are_the_decoder_layer_output(provider: HFProvider, tiny_images: dict[str, Path]) -> None:
    import torch

    reqs = sample_requests(tiny_images)[:3]
    acts = provider.last_token_activations(reqs, 0)
    with torch.inference_mode():
        out = provider.model(**provider.encode(reqs), output_hidden_states=True, use_cache=False)
    # hidden_states[0] is the embedding output, hidden_states[L + 1] the output of decoder layer L
    np.testing.assert_allclose(acts, out.hidden_states[1][:, -1, :].float().numpy(), atol=1e-6)


def test_fit_never_overwrites_a_direction_silently(
    provider: HFProvider, paths: Any, fitted: Path, work: Path
) -> None:
    before = fitted.read_bytes()
    with pytest.raises(VscbenchError, match="already exists .*--force"):
        fit(provider, paths, 1, out=fitted, n_queries=N_QUERIES, seed=5)
    assert fitted.read_bytes() == before
    copy = work / "copy.safetensors"
    shutil.copy(fitted, copy)
    res = fit(provider, paths, 1, out=copy, n_queries=N_QUERIES, seed=5, force=True)
    assert res.provenance["seed"] == 5 and load_direction(copy).provenance["seed"] == 5
    with pytest.raises(VscbenchError, match="--setting bogus: unknown setting"):
        fit(provider, paths, 1, out=work / "new.safetensors", settings=["bogus"])


# ---- the hook -----------------------------------------------------------------------------------------
def _layer_output(
    provider: HFProvider, requests: list[Request], layer: int, spec: dict[str, Any] | None
) -> Any:
    """Output of decoder layer ``layer`` for a forward pass, seen after the steering hook (if any)."""
    import torch

    seen: list[Any] = []
    inputs = provider.encode(requests)
    with torch.inference_mode():
        if spec is None:
            h = decoder_layers(provider.model)[layer].register_forward_hook(lambda m, a, o: seen.append(o))
            try:
                logits = provider.model(**inputs, use_cache=False).logits
            finally:
                h.remove()
        else:
            with steering_hook(provider, spec):
                h = decoder_layers(provider.model)[layer].register_forward_hook(
                    lambda m, a, o: seen.append(o)
                )
                try:
                    logits = provider.model(**inputs, use_cache=False).logits
                finally:
                    h.remove()
    out = seen[0][0] if isinstance(seen[0], tuple) else seen[0]
    return out.clone(), logits.clone()


@pytest.mark.parametrize("alpha", [-4.0, 2.5])
def test_steer_shifts_the_layer_output_by_exactly_alpha_direction(
    provider: HFProvider, fitted: Path, tiny_images: dict[str, Path], alpha: float
) -> None:
    import torch

    reqs = sample_requests(tiny_images)[:3]
    cal = _steer(fitted, f"steer:layer=1,alpha={alpha}")
    before = _hooks(provider)
    plain, logits0 = _layer_output(provider, reqs, 1, None)
    steered, logits1 = _layer_output(provider, reqs, 1, cal.steering_spec())
    d = torch.from_numpy(load_direction(fitted).vector)
    expected = (alpha * d).expand_as(plain)
    # every row, every position (padding included) moved by alpha * direction
    torch.testing.assert_close(steered - plain, expected, rtol=0, atol=2e-5)
    assert not torch.equal(logits0, logits1)
    assert _hooks(provider) == before


def test_revise_under_threshold_is_identical_and_over_threshold_is_steered(
    provider: HFProvider, fitted: Path, tiny_images: dict[str, Path]
) -> None:
    reqs = sample_requests(tiny_images, max_tokens=8)
    before = _hooks(provider)
    plain = _gen(provider, reqs)
    d = load_direction(fitted)
    proj = provider.last_token_activations(reqs, 1) @ d.unit
    order = np.argsort(proj)
    # threshold between the 2nd and 3rd lowest projections: two inputs stay under it, three cross it
    t = float((proj[order[1]] + proj[order[2]]) / 2)
    cal = _steer(fitted, f"revise:layer=1,alpha=40,threshold={t}")
    revised = _gen(provider, _with_steering(reqs, cal))
    for i, (a, b) in enumerate(zip(plain, revised, strict=True)):
        rec = b.raw["steering"]
        assert rec["method"] == "revise"
        assert rec["projection"] == pytest.approx(float(proj[i]), abs=1e-3)
        assert rec["steered"] == bool(proj[i] > t)
        if not rec["steered"]:
            assert b.text == a.text and b.output_tokens == a.output_tokens
    steered = [i for i in range(len(reqs)) if revised[i].raw["steering"]["steered"]]
    assert len(steered) == 3
    assert any(revised[i].text != plain[i].text for i in steered)

    # a threshold nobody crosses leaves every answer as it was
    high = _steer(fitted, "revise:layer=1,alpha=40,threshold=1e9")
    untouched = _gen(provider, _with_steering(reqs, high))
    assert [r.text for r in untouched] == [r.text for r in plain]
    assert not any(r.raw["steering"]["steered"] for r in untouched)
    assert _hooks(provider) == before


def test_steer_changes_generation_and_hooks_are_removed(
    provider: HFProvider, fitted: Path, tiny_images: dict[str, Path], work: Path
) -> None:
    reqs = sample_requests(tiny_images, max_tokens=8)
    before = _hooks(provider)
    plain = _gen(provider, reqs)
    cal = _steer(fitted, "steer:layer=1,alpha=40")
    steered = _gen(provider, _with_steering(reqs, cal))
    assert any(a.text != b.text for a, b in zip(plain, steered, strict=True))
    assert _hooks(provider) == before

    # a failing generation (direction of the wrong size) also leaves no hook behind
    d = load_direction(fitted)
    from vscbench.calibration.steering import direction_bytes

    bad = work / "wrong-size.safetensors"
    bad.write_bytes(direction_bytes(np.ones(8), np.zeros(8), np.ones(8), d.provenance))
    bad_cal = _steer(bad, "steer:layer=1,alpha=1")
    with pytest.raises(PermanentError, match="hidden size is 64"):
        _gen(provider, _with_steering(reqs[:1], bad_cal))
    assert _hooks(provider) == before
    # and the next plain call answers as before
    assert _gen(provider, reqs[:1])[0].text == plain[0].text


def test_steer_records_the_projection_and_steered(
    provider: HFProvider, fitted: Path, tiny_images: dict[str, Path]
) -> None:
    reqs = sample_requests(tiny_images, max_tokens=4)
    proj = provider.last_token_activations(reqs, 1) @ load_direction(fitted).unit
    steered = _gen(provider, _with_steering(reqs, _steer(fitted, "steer:layer=1,alpha=3")))
    for i, r in enumerate(steered):
        rec = r.raw["steering"]
        assert rec["method"] == "steer" and rec["steered"] is True
        # measured before the shift, at the last prompt token: the same figure revise uses
        assert rec["projection"] == pytest.approx(float(proj[i]), abs=1e-3)


def test_a_layer_the_model_lacks_names_its_layers(tiny_model_dir: Path) -> None:
    (cal,) = parse_calibrations(["steer:layer=99,alpha=-4"])
    assert isinstance(cal, SteeringCalibration)
    cal.bind_model(f"hf/{tiny_model_dir}")
    with pytest.raises(
        VscbenchError, match=r"layer 99 does not exist: .* has 2 decoder layers \(0\.\.1\)"
    ) as exc:
        cal.excluded_query_ids()
    assert "calibrate fit" not in str(exc.value)


# ---- the calibration objects --------------------------------------------------------------------------
def _item(qid: str, n: int = 0) -> Item:
    return Item(
        id=f"{qid}/text", half="text", label="safe", setting="text", query=f"question {n}", image=None,
        pair=(), row=2 + n, query_id=qid,
    )  # fmt: skip


def test_calibration_object_refuses_calibration_queries(fitted: Path) -> None:
    cal = _steer(fitted, "steer:layer=1,alpha=-4")
    assert cal.requires_activations
    d = load_direction(fitted)
    inside = sorted(d.query_ids)[0]
    assert cal.excluded_query_ids() == d.query_ids
    with pytest.raises(VscbenchError, match="were used to fit"):
        cal.prepare([_item("tc/999"), _item(inside, 1)])
    outside = _item("tc/999")
    cal.prepare([outside])
    req = cal.apply(outside, plain_request(outside, GenConfig()))
    spec = req.extra["steering"]
    assert spec == {
        "method": "steer", "layer": 1, "alpha": -4.0, "threshold": None,
        "direction": str(fitted), "sha256": d.sha256,
    }  # fmt: skip
    with pytest.raises(VscbenchError, match="shares query"):
        cal.apply(_item(inside), plain_request(_item(inside), GenConfig()))
    with pytest.raises(VscbenchError, match="only one of steer/revise"):
        cal.apply(outside, req)

    m = cal.manifest()
    assert m["sha256"] == d.sha256 and m["alpha"] == -4.0 and m["layer"] == 1
    assert m["calibration_query_ids"] == sorted(d.query_ids)
    arts = cal.artifacts()
    assert list(arts) == [m["artifact"]]
    assert arts[m["artifact"]][0] == fitted.read_bytes()
    json.dumps(m)  # the manifest is JSON


def test_revise_threshold_defaults_to_the_fitted_midpoint(fitted: Path) -> None:
    cal = _steer(fitted, "revise:layer=1,alpha=-2")
    spec = cal.steering_spec()
    assert spec["threshold"] == pytest.approx(load_direction(fitted).provenance["suggested_threshold"])
    assert _steer(fitted, "revise:layer=1,alpha=-2,threshold=0.5").steering_spec()["threshold"] == 0.5


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("steer:layer=1", "alpha=A is required"),
        ("steer:layer=1,alpha=x", "alpha=x is not a number"),
        ("steer:layer=one,alpha=1", "layer=one is not an integer"),
        ("steer:layer=1,alpha=1,threshold=2", "unknown option threshold"),
        ("revise:layer=1,alpha=1,beta=2", "unknown option beta"),
        ("steer:layer=-1,alpha=1", "layer must be >= 0"),
        ("steer:alpha=nan,layer=1", "alpha must be finite"),
    ],
)
def test_bad_options_are_one_clear_line(spec: str, message: str) -> None:
    with pytest.raises(VscbenchError, match=message):
        parse_calibrations([spec])


def test_layer_mismatch_and_missing_file(fitted: Path, tmp_path: Path) -> None:
    with pytest.raises(VscbenchError, match="fitted at layer 1, not 0"):
        _steer(fitted, "steer:layer=0,alpha=1").steering_spec()
    (cal,) = parse_calibrations([f"steer:alpha=1,direction={tmp_path / 'none.safetensors'}"])
    with pytest.raises(VscbenchError, match="none.safetensors"):
        cal.prepare([])
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 40)
    (cal,) = parse_calibrations([f"steer:alpha=1,direction={junk}"])
    with pytest.raises(VscbenchError, match="not a vscbench direction"):
        cal.prepare([])


def test_default_direction_is_found_in_the_directions_folder(fitted: Path) -> None:
    home = directions_dir()  # under the test's own $VSCBENCH_HOME
    (cal,) = parse_calibrations(["steer:layer=1,alpha=1"])
    with pytest.raises(VscbenchError, match="no direction for layer 1"):
        cal.prepare([])
    home.mkdir(parents=True)
    shutil.copy(fitted, home / "modelA.layer1.safetensors")
    (cal,) = parse_calibrations(["steer:layer=1,alpha=1"])
    cal.prepare([])
    assert cal.steering_spec()["direction"] == str((home / "modelA.layer1.safetensors").resolve())
    shutil.copy(fitted, home / "modelB.layer1.safetensors")
    (cal,) = parse_calibrations(["steer:layer=1,alpha=1"])
    with pytest.raises(VscbenchError, match="several directions"):
        cal.prepare([])


def test_parsing_needs_no_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
        "from vscbench.calibration.base import parse_calibrations\n"
        "(c,) = parse_calibrations(['revise:layer=3,alpha=-4,threshold=1.5'])\n"
        "print(type(c).__name__, c.layer, c.alpha, c.threshold, c.requires_activations)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["SteeringCalibration", "3", "-4.0", "1.5", "True"]


# ---- the command line ---------------------------------------------------------------------------------
def test_calibrate_fit_command(
    tiny_model_dir: Path, metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["calibrate", "fit", "-m", f"hf/{tiny_model_dir}", "--layer", "1", "--n", "4", "--seed", "3",
            "--metadata", str(metadata_dir), "--root", str(tmp_path / "root"), "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    path = Path(out.split()[1])
    assert path.parent == directions_dir() and path.name.endswith(".layer1.safetensors")
    d = load_direction(path)
    assert d.provenance["seed"] == 3 and d.provenance["n_queries"] == 4
    assert f"sha256     {d.sha256}" in out and "suggested revise threshold" in out

    assert main([*args, "--out", str(tmp_path / "x.safetensors"), "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["path"] == str((tmp_path / "x.safetensors").resolve()) and j["provenance"]["layer"] == 1

    assert main([*args[:3], "openai/gpt-4o", *args[4:]]) == 2
    assert "need an hf/ model" in capsys.readouterr().err
    assert main([*args[:5], "7", *args[6:]]) == 2
    assert "layer 7 does not exist: this model has 2 decoder layers (0..1)" in capsys.readouterr().err


def test_calibrate_fit_refuses_to_overwrite_and_checks_its_flags(
    tiny_model_dir: Path, metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["calibrate", "fit", "-m", f"hf/{tiny_model_dir}", "--layer", "1", "--n", "4",
            "--metadata", str(metadata_dir), "--root", str(tmp_path / "root"), "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    path = Path(out.split()[1])
    assert "held out   0 of " in out and " image-half, 4 of 450 text-half queries" in out
    first = path.read_bytes()
    assert main([*args, "--seed", "9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert path.read_bytes() == first
    assert main([*args, "--seed", "9", "--force"]) == 0
    capsys.readouterr()
    assert load_direction(path).provenance["seed"] == 9

    # --n larger than what can be drawn: an error, never a silent cut
    assert main([*args[:7], "100000", *args[8:], "--out", str(tmp_path / "big.safetensors")]) == 2
    assert "--n 100000: only 450 queries" in capsys.readouterr().err
    # a split that holds out most of a half is warned about
    most = ["--out", str(tmp_path / "most.safetensors"), "--setting", "text", "--batch-size", "64"]
    assert main([*args[:7], "300", *args[8:], *most]) == 0
    assert "warning: the calibration split holds out 300 of the 450 text-half" in capsys.readouterr().err

    for bad, message in (
        (["--setting", "bogus"], "invalid choice: 'bogus'"),
        (["--batch-size", "0"], "--batch-size: expected a number of at least 1"),
        (["--device", "gpu"], "invalid choice: 'gpu'"),
        (["--dtype", "float64"], "invalid choice: 'float64'"),
    ):
        with pytest.raises(SystemExit) as exc:
            main([*args, *bad])
        assert exc.value.code == 2 and message in capsys.readouterr().err
