"""``vscbench utility``: answer a utility set with a model (and calibrations), score it, store it like any run.

Invariants:

- the run is a store run of ``kind="utility"``; its items are the examples mapped by
  :func:`~vscbench.utility.dataset.to_item`, each response committed as it arrives
  (:func:`vscbench.runner.core.execute`, the project's one retry policy);
- calibrations are parsed, prepared on every item of the run and applied exactly as ``vscbench run`` does,
  and their manifests and artifacts are stored beside the run;
- re-running the same run id asks only the items without a response or with an error (the model, the
  generation config, the calibrations and the set's fingerprint must match, else nothing is sent);
- ``error``/``empty`` responses and unreadable grader verdicts are never scored: they are excluded from the
  accuracy and counted (see :mod:`.scoring`);
- stored beside the run: ``utility/examples.jsonl`` (references), ``utility/scores.jsonl`` (per-example
  correctness), ``utility/grades.jsonl`` (the rubric grader's raw verdicts, if any); the manifest's
  ``utility`` block holds the accuracy, its bootstrap interval and the exclusion counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vscbench import __version__
from vscbench.calibration import build_request, parse_calibrations
from vscbench.errors import VscbenchError
from vscbench.models.base import Provider, parse_model_spec
from vscbench.runner.core import ExecStats, Limits, RetryPolicy, execute
from vscbench.runner.run import aclose_quietly, execute_to_store, open_provider
from vscbench.store import Store, check_run_id
from vscbench.types import GenConfig, Request, Response, Status
from vscbench.utility.dataset import (
    UtilityExample,
    examples_jsonl,
    fingerprint,
    load_examples,
    to_item,
)
from vscbench.utility.scoring import (
    ItemScore,
    UtilitySummary,
    parse_rubric,
    rubric_request,
    score_example,
    summarise,
)

RUN_KIND = "utility"
RUBRIC_PREFIX = "rubric:"
#: Manifest keys a resumed utility run must match exactly.
RESUME_KEYS: tuple[str, ...] = ("model", "config", "calibration_specs", "utility_data_sha256")
EXAMPLES_ARTIFACT = "utility/examples.jsonl"
SCORES_ARTIFACT = "utility/scores.jsonl"
GRADES_ARTIFACT = "utility/grades.jsonl"


@dataclass
class UtilityResult:
    run_id: str
    store_path: Path
    summary: UtilitySummary
    counts: dict[str, int]
    stats: ExecStats
    sent: int
    resumed: bool
    grader: str | None


def parse_grader(spec: str | None) -> str | None:
    """``rubric:PROVIDER/MODEL`` -> ``PROVIDER/MODEL`` (validated), None -> None."""
    if spec is None:
        return None
    if not spec.startswith(RUBRIC_PREFIX):
        raise VscbenchError(f"--grader '{spec}': use rubric:PROVIDER/MODEL (e.g. rubric:openai/gpt-4o-mini)")
    model = spec[len(RUBRIC_PREFIX) :]
    parse_model_spec(model)
    return model


def _new_run_id(model: str) -> str:
    from vscbench.runner.run import new_run_id

    return "utility-" + new_run_id(model)


def _check_resume(run_id: str, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
    for key in RESUME_KEYS:
        if stored.get(key) != wanted.get(key):
            raise VscbenchError(
                f"run '{run_id}' was made with {key}={stored.get(key)!r}, this command asks for "
                f"{wanted.get(key)!r}: use the same settings to resume, or a new --run-id"
            )


def _response_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _jsonl(rows: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode("utf-8")


def run_utility(
    model: str,
    data: str | Path,
    *,
    calibrations: Sequence[str] = (),
    base_url: str | None = None,
    store: str | Path | None = None,
    run_id: str | None = None,
    limit: int | None = None,
    grader: str | None = None,
    grader_base_url: str | None = None,
    config: GenConfig = GenConfig(),
    limits: Limits = Limits(),
    policy: RetryPolicy = RetryPolicy(),
    device: str | None = None,
    batch_size: int | None = None,
    dtype: str | None = None,
    progress: bool | None = None,
    provider: Provider | None = None,
    grader_provider: Provider | None = None,
    seed: int = 0,
) -> UtilityResult:
    """Create or resume a utility run, answer every pending example, score, store, return the summary.

    ``provider``/``grader_provider`` replace the ones the specs name (tests, embedding); they are then not
    closed here. ``limit`` keeps the first N examples of the file.
    """
    if run_id is not None:
        check_run_id(run_id)
    provider_name, _ = parse_model_spec(model)
    grader_model = parse_grader(grader)
    if limit is not None and limit < 1:
        raise VscbenchError(f"--limit must be at least 1, got {limit}")
    examples = load_examples(data)
    if limit is not None:
        examples = examples[:limit]
    cals = parse_calibrations(calibrations)
    owned: list[Provider] = []
    if provider is None:
        provider = open_provider(
            model, base_url=base_url, limits=limits, device=device, batch_size=batch_size, dtype=dtype
        )
        owned.append(provider)
    if grader_model is not None and grader_provider is None:
        grader_provider = open_provider(grader_model, base_url=grader_base_url, limits=limits)
        owned.append(grader_provider)

    async def main() -> UtilityResult:
        assert provider is not None
        try:
            if any(c.requires_activations for c in cals) and not provider.supports_activations:
                raise VscbenchError("activation methods (steer, revise) need an hf/ model")
            return await _run(
                provider, grader_provider, provider_name, model, grader, Path(data), examples, store, run_id,
                config, cals, list(calibrations), limits, policy, progress, seed,
            )  # fmt: skip
        finally:
            for p in owned:
                await aclose_quietly(p)

    return asyncio.run(main())


async def _run(
    provider: Provider,
    grader_provider: Provider | None,
    provider_name: str,
    model: str,
    grader: str | None,
    data: Path,
    examples: list[UtilityExample],
    store_path: str | Path | None,
    run_id: str | None,
    config: GenConfig,
    cals: Sequence[Any],
    cal_specs: list[str],
    limits: Limits,
    policy: RetryPolicy,
    progress: bool | None,
    seed: int,
) -> UtilityResult:
    batch = int(getattr(provider, "batch_size", 1) or 1)
    if batch > limits.concurrency:
        limits = Limits(concurrency=batch, rpm=limits.rpm, tpm=limits.tpm)
    items = [to_item(ex) for ex in examples]
    wanted: dict[str, Any] = {
        "model": model,
        "config": config.to_dict(),
        "calibration_specs": cal_specs,
        "utility_data_sha256": fingerprint(examples),
    }
    describe = dict(provider.describe())
    with Store(store_path) as store:
        resumed = run_id is not None and store.has_run(run_id)
        if resumed:
            assert run_id is not None
            info = store.get_run(run_id)
            if info.kind != RUN_KIND:
                raise VscbenchError(f"run '{run_id}' is a {info.kind} run, not a utility run")
            _check_resume(run_id, info.manifest, wanted)
        else:
            run_id = run_id or _new_run_id(model)
            manifest = wanted | {
                "kind": RUN_KIND,
                "provider": provider_name,
                "base_url_host": describe.get("base_url_host"),
                "provider_info": describe,
                "images_in_history": bool(getattr(provider, "images_in_history", False)),
                "utility_data": str(Path(data).expanduser().resolve()),
                "vscbench_version": __version__,
                "created_at": time.time(),
            }
            store.create_run(run_id, kind=RUN_KIND, model=model, manifest=manifest, items=items)
            store.put_artifact(run_id, EXAMPLES_ARTIFACT, examples_jsonl(examples), "application/x-ndjson")

        for cal in cals:
            cal.prepare(items)
        for cal in cals:
            for name, (blob, media_type) in cal.artifacts().items():
                store.put_artifact(run_id, name, blob, media_type)
        done = store.completed_item_ids(run_id, include_errors=False)
        pending = [it for it in items if it.id not in done]
        requests = [build_request(it, config, cals) for it in pending]
        store.update_manifest(
            run_id,
            {"calibrations": [{"spec": c.spec, "manifest": c.manifest()} for c in cals], "finished_at": None},
        )
        stats = await execute_to_store(
            store, run_id, provider, requests, limits=limits, policy=policy, progress=progress
        )

        responses = store.responses(run_id)
        grades: dict[str, dict[str, Any]] = {}
        if grader is not None:
            assert grader_provider is not None
            grades = await _grade(
                store, run_id, grader_provider, examples, responses, limits, policy, progress
            )
        scores: dict[str, ItemScore] = {}
        for ex in examples:
            r = responses.get(ex.item_id)
            g = grades.get(ex.id)
            scores[ex.id] = score_example(
                ex,
                r.status if r else None,
                r.text if r else "",
                grade=g.get("verdict") if g else None,
                grader=grader,
            )
        summary = summarise(examples, scores, seed=seed)
        store.put_artifact(
            run_id,
            SCORES_ARTIFACT,
            _jsonl([scores[ex.id].to_dict() for ex in examples]),
            "application/x-ndjson",
        )
        counts = store.counts(run_id)
        store.update_manifest(
            run_id,
            {
                "utility": summary.to_dict() | {"scorer": grader or "rules", "bootstrap_seed": seed},
                "counts": counts,
                "finished_at": time.time() if counts["pending"] == 0 else None,
            },
        )
        return UtilityResult(
            run_id=run_id,
            store_path=store.path,
            summary=summary,
            counts=counts,
            stats=stats,
            sent=len(requests),
            resumed=resumed,
            grader=grader,
        )


async def _grade(
    store: Store,
    run_id: str,
    grader: Provider,
    examples: Sequence[UtilityExample],
    responses: dict[str, Response],
    limits: Limits,
    policy: RetryPolicy,
    progress: bool | None,
) -> dict[str, dict[str, Any]]:
    """Rubric verdicts per example id for every ``ok`` response; earlier verdicts of the same text are reused."""
    old: dict[str, dict[str, Any]] = {}
    blob = store.get_artifact(run_id, GRADES_ARTIFACT)
    if blob:
        for line in blob.decode("utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                old[d["id"]] = d
    grades: dict[str, dict[str, Any]] = {}
    todo: list[Request] = []
    by_req: dict[str, UtilityExample] = {}
    for ex in examples:
        r = responses.get(ex.item_id)
        if r is None or r.status is not Status.OK:
            continue
        key = _response_key(r.text)
        prev = old.get(ex.id)
        if prev and prev.get("response_sha") == key and prev.get("status") == Status.OK.value:
            grades[ex.id] = prev
            continue
        req = rubric_request(ex, r.text, ex.item_id)
        by_req[req.item_id] = ex
        todo.append(req)

    def on_response(req: Request, resp: Response) -> None:
        ex = by_req[req.item_id]
        r = responses[ex.item_id]
        grades[ex.id] = {
            "id": ex.id,
            "response_sha": _response_key(r.text),
            "status": resp.status.value,
            "text": resp.text,
            "error": resp.error,
            "verdict": parse_rubric(resp.text) if resp.status is Status.OK else None,
        }

    if todo:
        await execute(
            grader, todo, on_response=on_response, limits=limits, policy=policy, progress=progress,
            description=f"{run_id} grading",
        )  # fmt: skip
    rows = [grades[ex.id] for ex in examples if ex.id in grades]
    store.put_artifact(run_id, GRADES_ARTIFACT, _jsonl(rows), "application/x-ndjson")
    return grades
