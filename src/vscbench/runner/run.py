"""``vscbench run``: items x model x calibration -> responses committed one by one to the store.

Invariants:

- a run is a fixed set of items (``run_items``) plus one response row per answered item; each response is
  committed the moment it arrives, so a killed run loses only what was in flight;
- re-running the same run id sends nothing for items that already have a response (``--retry-errors``
  re-asks exactly the errored ones); its model, generation config and calibration must match the stored
  manifest, else it stops with an error before sending anything;
- items whose query is blank in the source (``Item.note``) are never sent and never become run items; the
  manifest lists them under ``excluded_items``;
- the manifest records the model, provider, base-URL host (never the URL's path, user or password, and never
  a key), generation config, calibrations and their own manifests, dataset fingerprint, package version,
  selection, limits, retry policy, start/end of every invocation and the counts.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import math
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vscbench import __version__
from vscbench.calibration import Calibration, build_request, parse_calibrations
from vscbench.data import load_items, resolve_paths
from vscbench.data.paths import DataPaths
from vscbench.errors import VscbenchError
from vscbench.hashing import sha256_file
from vscbench.models.base import Provider, parse_model_spec
from vscbench.runner.core import ExecStats, Limits, RetryPolicy, execute
from vscbench.runner.select import Selection, balanced_sample, filter_by_ids, read_item_ids
from vscbench.store import Store
from vscbench.types import GenConfig, Item, Request, Response

RUN_KIND = "generation"
#: Manifest keys a resumed run must match exactly.
RESUME_KEYS: tuple[str, ...] = ("model", "config", "calibration_specs")


@dataclass
class RunResult:
    """What :func:`run_generation` did; ``counts`` are the store's counts for the whole run."""

    run_id: str
    store_path: Path
    counts: dict[str, int]
    stats: ExecStats
    sent: int
    skipped: int
    excluded: dict[str, str]
    resumed: bool


def new_run_id(model_spec: str, now: float | None = None) -> str:
    """``<model>-<UTC yyyymmdd-HHMMSS>-<4 hex>``: readable, sortable by time, unique enough."""
    _, model = parse_model_spec(model_spec)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", model.rstrip("/").rsplit("/", 1)[-1]).strip("-.") or "model"
    stamp = _dt.datetime.fromtimestamp(now if now is not None else time.time(), _dt.UTC).strftime(
        "%Y%m%d-%H%M%S"
    )
    return f"{stem[:40]}-{stamp}-{secrets.token_hex(2)}"


def dataset_fingerprint(paths: DataPaths, items: Sequence[Item]) -> dict[str, Any]:
    """sha256 of each metadata file and one sha256 over (item id, image sha256) of every image used."""
    meta = {}
    for p in (paths.image_centric_xlsx, paths.text_centric_xlsx):
        if p.is_file():
            meta[p.name] = sha256_file(p)
    h = hashlib.sha256()
    n = 0
    for it in sorted(items, key=lambda i: i.id):
        if it.image is None:
            continue
        p = Path(it.image)
        digest = sha256_file(p) if p.is_file() else "missing"
        h.update(f"{it.id}\t{digest}\n".encode())
        n += 1
    return {"metadata_sha256": meta, "images_sha256": h.hexdigest(), "images": n}


def _ensure_images(paths: DataPaths, items: Sequence[Item]) -> None:
    """Render missing FigStep/typography/concat images; fail on missing images nobody can build."""
    try:
        from vscbench.data.render import ensure_images
    except ModuleNotFoundError as exc:  # pragma: no cover - render.py ships with the package
        if exc.name != "vscbench.data.render":
            raise
        missing = [it for it in items if it.image and not Path(it.image).is_file()]
        if missing:
            raise VscbenchError(
                f"{len(missing)} image(s) missing, e.g. {missing[0].image} (item {missing[0].id}): "
                "run 'vscbench data fetch' or check --root"
            ) from None
        return
    ensure_images(paths, items)


#: Why an item whose query fitted a steering direction is left out of the run.
CALIBRATION_SPLIT_NOTE = "query used to fit the steering direction (calibration split): not evaluated"


def select_items(
    paths: DataPaths, selection: Selection, held_out_queries: frozenset[str] = frozenset()
) -> tuple[list[Item], dict[str, str]]:
    """The items to evaluate and the selected items that are never sent (id -> reason).

    ``held_out_queries`` are query ids a calibration method was fitted on; their items are left out (and
    listed as excluded) before ``--limit`` samples, so evaluation never shares a query with calibration.
    """
    items = load_items(
        paths,
        half=selection.half,
        settings=selection.settings or None,
        categories=selection.categories or None,
    )
    if selection.items_file:
        items = filter_by_ids(items, read_item_ids(selection.items_file), selection.items_file)
    excluded = {it.id: it.note for it in items if it.note}
    excluded |= {it.id: CALIBRATION_SPLIT_NOTE for it in items if not it.note and it.query_id in held_out_queries}
    sendable = [it for it in items if it.id not in excluded]
    if selection.limit is not None:
        sendable = balanced_sample(sendable, selection.limit, selection.sample_seed)
    if not sendable:
        if excluded:
            first, why = next(iter(excluded.items()))
            raise VscbenchError(
                f"every selected item is excluded ({len(excluded)}, e.g. {first}: {why}): widen the selection"
            )
        raise VscbenchError(
            "the selection is empty: check --half, --setting, --category, --items and --limit"
        )
    return sendable, excluded


def _check_resume(run_id: str, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
    for key in RESUME_KEYS:
        if stored.get(key) != wanted.get(key):
            raise VscbenchError(
                f"run '{run_id}' was made with {key}={stored.get(key)!r}, this command asks for "
                f"{wanted.get(key)!r}: use the same settings to resume, or a new --run-id"
            )


@dataclass
class _Plan:
    """What a ``run`` invocation will work on, decided before any model is loaded or any request sent."""

    run_id: str
    resumed: bool
    items: list[Item]
    excluded: dict[str, str]


def _plan(
    store: Store,
    paths: DataPaths,
    run_id: str | None,
    selection: Selection,
    wanted: dict[str, Any],
    model: str,
    held_out: frozenset[str] = frozenset(),
) -> _Plan:
    """New run: select items. Resumed run: check the manifest matches, then the run's items (plus any the
    selection flags add). Raises before anything is written."""
    if run_id is not None and store.has_run(run_id):
        info = store.get_run(run_id)
        if info.kind != RUN_KIND:
            raise VscbenchError(f"run '{run_id}' is a {info.kind} run, not a generation run")
        _check_resume(run_id, info.manifest, wanted)
        stored_excluded = dict(info.manifest.get("excluded_items") or {})
        if selection == Selection():  # no selection flags: exactly the run's own items
            return _Plan(run_id, True, store.run_items(run_id), stored_excluded)
        items, excluded = select_items(paths, selection, held_out)
        return _Plan(run_id, True, items, stored_excluded | excluded)
    items, excluded = select_items(paths, selection, held_out)
    return _Plan(run_id or new_run_id(model), False, items, excluded)


def run_generation(
    model: str,
    *,
    base_url: str | None = None,
    root: str | None = None,
    metadata: str | None = None,
    store: str | Path | None = None,
    run_id: str | None = None,
    selection: Selection = Selection(),
    config: GenConfig = GenConfig(),
    calibrations: Sequence[str] = (),
    limits: Limits = Limits(),
    policy: RetryPolicy = RetryPolicy(),
    retry_errors: bool = False,
    device: str | None = None,
    batch_size: int | None = None,
    dtype: str | None = None,
    progress: bool | None = None,
    provider: Provider | None = None,
) -> RunResult:
    """Create or resume a generation run and answer every pending item (see the module invariants).

    Order: check and select (nothing written), render missing images, build the provider (an ``hf/`` model
    loads here), record the run, send. ``provider`` replaces the one ``model`` names (tests, embedding); it
    is then not closed here.
    """
    if provider is None:
        from vscbench.models.factory import check_spec

        provider_name, _ = check_spec(model, base_url=base_url)
    else:
        provider_name, _ = parse_model_spec(model)
    cals = parse_calibrations(calibrations)
    needs_activations = any(c.requires_activations for c in cals)
    if needs_activations and provider is None and provider_name != "hf":
        raise VscbenchError("activation methods (steer, revise) need an hf/ model")
    held_out: frozenset[str] = frozenset()
    for cal in cals:
        bind = getattr(cal, "bind_model", None)
        if bind is not None:
            bind(model)
        held = getattr(cal, "excluded_query_ids", None)
        if held is not None:
            held_out |= held()
    paths = resolve_paths(root, metadata)
    wanted: dict[str, Any] = {
        "model": model,
        "config": config.to_dict(),
        "calibration_specs": list(calibrations),
    }
    with Store(store) as st:
        plan = _plan(st, paths, run_id, selection, wanted, model, held_out)
        _ensure_images(paths, plan.items)
        own_provider = provider is None
        if provider is None:
            provider = open_provider(
                model, base_url=base_url, limits=limits, device=device, batch_size=batch_size, dtype=dtype
            )
        prov = provider

        async def main() -> RunResult:
            try:
                if needs_activations and not prov.supports_activations:
                    raise VscbenchError("activation methods (steer, revise) need an hf/ model")
                return await _run(
                    st, prov, provider_name, wanted, paths, plan, selection, config, cals, limits, policy,
                    retry_errors, progress,
                )  # fmt: skip
            finally:
                if own_provider:
                    await aclose_quietly(prov)

        return asyncio.run(main())


def open_provider(
    model: str,
    *,
    base_url: str | None = None,
    limits: Limits = Limits(),
    device: str | None = None,
    batch_size: int | None = None,
    dtype: str | None = None,
) -> Provider:
    """The provider ``model`` names, its connection pool sized to ``limits.concurrency``.

    Options that do not apply to the provider (``device`` for an API model, ...) are ignored. The caller owns
    it and closes it with :func:`aclose_quietly`.
    """
    from vscbench.models.factory import make_provider

    return make_provider(
        model,
        base_url=base_url,
        max_connections=limits.concurrency,
        device=device,
        batch_size=batch_size,
        dtype=dtype,
    )


async def execute_to_store(
    store: Store,
    run_id: str,
    provider: Provider,
    requests: Sequence[Request],
    *,
    limits: Limits,
    policy: RetryPolicy,
    progress: bool | None,
) -> ExecStats:
    """:func:`~vscbench.runner.core.execute` the requests, committing each response to run ``run_id`` (with the
    request that produced it) as soon as it arrives, so an interrupted run loses nothing already answered."""
    request_json = {r.item_id: r.to_dict() for r in requests}

    def on_response(req: Request, resp: Response) -> None:
        store.add_response(run_id, resp, request_json[req.item_id])

    return await execute(
        provider,
        requests,
        on_response=on_response,
        limits=limits,
        policy=policy,
        progress=progress,
        description=run_id,
    )


async def aclose_quietly(provider: Provider) -> None:
    """Close ``provider``; an error while closing is swallowed so it never masks the run's own outcome."""
    try:
        await provider.aclose()
    except Exception:  # closing must never mask the run's own outcome
        pass


async def _run(
    store: Store,
    provider: Provider,
    provider_name: str,
    wanted: dict[str, Any],
    paths: DataPaths,
    plan: _Plan,
    selection: Selection,
    config: GenConfig,
    cals: list[Calibration],
    limits: Limits,
    policy: RetryPolicy,
    retry_errors: bool,
    progress: bool | None,
) -> RunResult:
    run_id = plan.run_id
    # An in-process model (hf/) answers in batches: let at least a batch of requests queue up.
    batch = int(getattr(provider, "batch_size", 1) or 1)
    if batch > limits.concurrency:
        limits = replace(limits, concurrency=batch)
    describe = dict(provider.describe())
    if plan.resumed:
        store.add_run_items(run_id, plan.items)
    else:
        manifest = wanted | {
            "kind": RUN_KIND,
            "provider": provider_name,
            "base_url_host": describe.get("base_url_host"),
            "provider_info": describe,
            "selection": selection.to_dict(),
            "excluded_items": plan.excluded,
            "vscbench_version": __version__,
            "created_at": time.time(),
        }
        store.create_run(run_id, kind=RUN_KIND, model=wanted["model"], manifest=manifest, items=plan.items)
    all_items = store.run_items(run_id)

    for cal in cals:
        cal.prepare(all_items)
    done = store.completed_item_ids(run_id, include_errors=not retry_errors)
    pending = [it for it in all_items if it.id not in done]
    requests = [build_request(it, config, cals) for it in pending]
    for cal in cals:
        for name, (data, media_type) in cal.artifacts().items():
            store.put_artifact(run_id, name, data, media_type)

    started = time.time()
    invocation = {
        "started_at": started,
        "pending": len(pending),
        "retry_errors": retry_errors,
        "base_url_host": describe.get("base_url_host"),
        "provider_info": describe,
        "limits": {"concurrency": limits.concurrency, "rpm": limits.rpm, "tpm": limits.tpm},
        "retry_policy": {
            "max_attempts": policy.max_attempts,
            "base_delay": policy.base_delay,
            "max_delay": policy.max_delay,
            "timeout_s": None if math.isinf(policy.timeout_s) else policy.timeout_s,
        },
        "vscbench_version": __version__,
    }
    manifest = store.get_run(run_id).manifest
    store.update_manifest(
        run_id,
        {
            "excluded_items": plan.excluded,
            "calibrations": [{"spec": c.spec, "manifest": c.manifest()} for c in cals],
            "dataset": dataset_fingerprint(paths, all_items),
            "started_at": manifest.get("started_at", started),
            "finished_at": None,
            "invocations": [*manifest.get("invocations", []), invocation],
        },
    )

    stats = ExecStats()
    try:
        stats = await execute_to_store(
            store, run_id, provider, requests, limits=limits, policy=policy, progress=progress
        )
    finally:
        counts = store.counts(run_id)
        finished = time.time()
        manifest = store.get_run(run_id).manifest
        invocations = list(manifest.get("invocations", []))
        if invocations:
            invocations[-1] = invocations[-1] | {"finished_at": finished, "stats": stats.to_dict()}
        store.update_manifest(
            run_id,
            {
                "finished_at": finished if counts["pending"] == 0 else None,
                "counts": counts,
                "invocations": invocations,
            },
        )
    return RunResult(
        run_id=run_id,
        store_path=store.path,
        counts=counts,
        stats=stats,
        sent=len(requests),
        skipped=len(all_items) - len(pending),
        excluded=plan.excluded,
        resumed=plan.resumed,
    )


def list_runs(store: str | Path | None = None) -> list[dict[str, Any]]:
    """Every run in the store with its kind, model, times and response counts (for ``vscbench runs``)."""
    with Store(store, create=False) as st:
        out = []
        for info in st.list_runs():
            out.append(
                {
                    "run_id": info.run_id,
                    "kind": info.kind,
                    "model": info.model,
                    "created_at": info.created_at,
                    "updated_at": info.updated_at,
                    "calibrations": info.manifest.get("calibration_specs", []),
                    "counts": st.counts(info.run_id),
                    "judges": st.judges(info.run_id),
                }
            )
        return out
