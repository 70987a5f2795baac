"""End to end: ``vscbench calibrate fit`` then ``vscbench run -m hf/<tiny model> --calibration steer|revise``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from hf_fixtures import tiny_model_dir
from vscbench.calibration.steering import directions_dir, load_direction
from vscbench.cli import main
from vscbench.data import load_items, resolve_paths
from vscbench.store import Store

__all__ = ["tiny_model_dir"]  # fixture, imported for pytest


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["run", *args, "--json", "--no-progress"]) == 0, capsys.readouterr().err
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def test_fit_then_steer_and_revise_runs(
    tiny_model_dir: Path, metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = f"hf/{tiny_model_dir}"
    assert (
        main(["calibrate", "fit", "-m", model, "--layer", "1", "--n", "6", "--metadata", str(metadata_dir)])
        == 0
    )
    (path,) = directions_dir().glob("*.layer1.safetensors")
    direction = load_direction(path)
    capsys.readouterr()

    # four evaluation items and one of a calibration query: the runner leaves that one out of steered runs
    figstep = [i for i in load_items(resolve_paths(None, metadata_dir), settings=["figstep"]) if not i.note]
    evaluated = [i.id for i in figstep if i.query_id not in direction.query_ids][:4]
    calibration_item = next(i.id for i in figstep if i.query_id in direction.query_ids)
    items_file = tmp_path / "items.txt"
    items_file.write_text("\n".join([*evaluated, calibration_item]) + "\n")
    common = ["-m", model, "--metadata", str(metadata_dir), "--items", str(items_file)]
    common += ["--max-tokens", "8", "--device", "cpu", "--batch-size", "2"]

    plain = _run(capsys, *common, "--run-id", "plain")
    steer = _run(capsys, *common, "--run-id", "steer", "--calibration", "steer:layer=1,alpha=-4")
    revise = _run(capsys, *common, "--run-id", "revise", "--calibration", "revise:layer=1,alpha=-4")
    untouched = _run(
        capsys, *common, "--run-id", "untouched", "--calibration", "revise:layer=1,alpha=-4,threshold=1e9"
    )
    for res, n in ((plain, 5), (steer, 4), (revise, 4), (untouched, 4)):
        counts = res["counts"]
        assert isinstance(counts, dict) and counts["ok"] + counts["empty"] == n and counts["error"] == 0

    with Store() as store:
        texts = {rid: {k: r.text for k, r in store.responses(rid).items()} for rid in ("plain", "untouched")}
        assert set(texts["untouched"]) == set(evaluated) and set(texts["plain"]) == {
            *evaluated,
            calibration_item,
        }
        assert texts["untouched"] == {k: texts["plain"][k] for k in evaluated}
        for rid, method in (("steer", "steer"), ("revise", "revise")):
            manifest = store.get_run(rid).manifest
            (cal,) = manifest["calibrations"]
            m = cal["manifest"]
            assert m["method"] == method and m["layer"] == 1 and m["alpha"] == -4.0
            assert m["sha256"] == direction.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
            assert store.get_artifact(rid, m["artifact"]) == path.read_bytes()
            for item_id in store.responses(rid):
                req = store.request_of(rid, item_id)
                assert req is not None and req["extra"]["steering"]["sha256"] == direction.sha256
            assert not {i.query_id for i in store.run_items(rid)} & direction.query_ids
            # the per-item steering record (projection, steered or not) survives in the store
            assert all("steering" in r.raw for r in store.responses(rid).values())
            held = {k for k, why in manifest["excluded_items"].items() if "calibration split" in why}
            assert held == {calibration_item}
            # steer records the projection too (measured in the same forward pass), and that it steered
            for r in store.responses(rid).values():
                rec = r.raw["steering"]
                assert isinstance(rec["projection"], float) and isinstance(rec["steered"], bool)
                assert rec["steered"] or method == "revise"
        assert "excluded_items" not in store.get_run("plain").manifest or not any(
            "calibration split" in why for why in store.get_run("plain").manifest["excluded_items"].values()
        )
        threshold = store.get_run("revise").manifest["calibrations"][0]["manifest"]["threshold"]
        assert threshold == pytest.approx(direction.provenance["suggested_threshold"])


def test_run_refuses_calibration_queries_and_api_models(
    tiny_model_dir: Path, metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = f"hf/{tiny_model_dir}"
    out = tmp_path / "d.safetensors"
    fit = ["calibrate", "fit", "-m", model, "--layer", "0", "--n", "4", "--metadata", str(metadata_dir)]
    assert main([*fit, "--out", str(out), "--setting", "figstep"]) == 0
    qid = sorted(load_direction(out).query_ids)[0]
    items = tmp_path / "items.txt"
    items.write_text(f"{qid}/figstep\n")
    capsys.readouterr()
    code = main(["run", "-m", model, "--metadata", str(metadata_dir), "--items", str(items), "--max-tokens", "4",
                 "--device", "cpu", "--no-progress", "--calibration", f"steer:alpha=1,direction={out}"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "every selected item is excluded" in err and "calibration split" in err

    code = main(["run", "-m", "openai-compatible/x", "--base-url", "http://127.0.0.1:9/v1", "--metadata",
                 str(metadata_dir), "--limit", "2", "--calibration", f"steer:alpha=1,direction={out}"])  # fmt: skip
    assert code == 2
    assert "need an hf/ model" in capsys.readouterr().err
