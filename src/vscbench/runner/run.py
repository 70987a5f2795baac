"""``vscbench run``: items x model x calibration -> responses committed one by one to the store.

Invariants:

- a run is a fixed set of items (``run_items``) plus one response row per answered item; each response is
  committed the moment it arrives, so a killed run loses only what was in flight;
- re-running the same run id sends nothing for items that already have a response (``--retry-errors``
  re-asks exactly the errored ones); its model, generation config, calibration specs, base-URL host and the
  key facts of each calibration (direction sha256, few-shot draw, reminder text hash, ...) must match the
  stored manifest, else it stops with an error before anything is written or sent; a resume never drops items;
- ``--limit`` samples the selected items first (all of them, sendable or not, so the sample does not depend
  on the calibration); items of the sample that cannot be sent (blank query in the source, a query a
  steering direction was fitted on) never become run items: the manifest maps them to their reason under
  ``excluded_items`` and the artifact ``excluded_items.jsonl`` holds their item snapshots;
- options are checked before the store is opened: a bad flag writes nothing;
- the manifest records the model, provider, base-URL host (never the URL's path, user or password, and never
  a key), generation config, calibrations and their own manifests, dataset fingerprint, package version,
  selection, limits, retry policy, start/end of every invocation and the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import hashlib
import json
import math
import re
import secrets
import shlex
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from vscbench import __version__
from vscbench.calibration import Calibration, build_request, parse_calibrations
from vscbench.data import load_items, resolve_paths
from vscbench.data.paths import DataPaths
from vscbench.errors import VscbenchError
from vscbench.hashing import sha256_file
from vscbench.models.base import Provider, parse_model_spec
from vscbench.runner.core import ExecStats, Limits, RetryPolicy, execute
from vscbench.runner.select import Selection, balanced_sample, check_selection, filter_by_ids, read_item_ids
from vscbench.store import CLAIM_LEASE_S, ClaimOwner, Store, check_run_id
from vscbench.types import GenConfig, Item, Request, Response, Status

RUN_KIND = "generation"
#: Manifest keys a resumed run must match exactly.
RESUME_KEYS: tuple[str, ...] = ("model", "config", "calibration_specs")
#: Artifact holding one ``Item.to_dict()`` JSON per line for every item the run never sent.
EXCLUDED_ARTIFACT = "excluded_items.jsonl"
#: Calibration manifest keys a resumed run must match (those present); ``pool`` is compared by its sha256.
CALIBRATION_FACTS: tuple[str, ...] = (
    "method",
    "sha256",
    "layer",
    "alpha",
    "threshold",
    "k",
    "seed",
    "draw",
    "demos_sha256",
)


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
    #: items not re-sent because they ended in error before (``--retry-errors`` re-asks them)
    skipped_errors: int = 0
    #: one error message of this invocation's failed items, if any
    error_example: str | None = None
    #: things the user should know (e.g. a resume keeps items the new selection leaves out)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The result as ``vscbench run --json`` prints it."""
        return {
            "run_id": self.run_id,
            "store": str(self.store_path),
            "counts": self.counts,
            "sent": self.sent,
            "skipped": self.skipped,
            "skipped_errors": self.skipped_errors,
            "excluded": len(self.excluded),
            "excluded_by_reason": excluded_by_reason(self.excluded),
            "stats": self.stats.to_dict(),
        }

    def summary(self) -> str:
        """Four lines: the run, the store, what was sent, kept and never sent, and the counts by status."""
        c = self.counts
        kept = f", errors not re-asked {self.skipped_errors}" if self.skipped_errors else ""
        return (
            f"run {self.run_id}{' (resumed)' if self.resumed else ''}\n"
            f"store {self.store_path}\n"
            f"items {c['items']}: sent {self.sent}, already answered {self.skipped - self.skipped_errors}"
            f"{kept}, never sent {exclusion_summary(self.excluded)}\n"
            f"ok {c['ok']}  blocked {c['blocked']}  empty {c['empty']}  error {c['error']}  "
            f"pending {c['pending']}  ({self.stats.retries} retries, {self.stats.wall_s:.1f}s)\n"
        )

    @property
    def all_failed(self) -> bool:
        """Every item this invocation sent ended in error (a dead endpoint, a wrong key, ...)."""
        return self.sent > 0 and self.stats.errors == self.sent

    def error_lines(self, retry_hint: str) -> list[str]:
        """What to tell about the run's errored items (none: no line): that every item sent failed, with
        an example, and how to re-ask them (``retry_hint``, e.g. :func:`retry_command`)."""
        if not self.counts["error"]:
            return []
        lines = []
        if self.all_failed:
            why = " ".join((self.error_example or "").split())
            why = f" (e.g. {why[:200]}{'...' if len(why) > 200 else ''})" if why else ""
            lines.append(f"error: every one of the {self.sent} item(s) sent ended in error{why}")
        lines.append(
            f"{self.counts['error']} item(s) of run {self.run_id} ended in error; re-ask them with '{retry_hint}'"
        )
        return lines

    def exit_code(self) -> int:
        """1 when items ended in error and every item sent failed; else 0 (errors alone are re-asked)."""
        return 1 if self.counts["error"] and self.all_failed else 0


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


class Selected(NamedTuple):
    """What a selection gives: the items to send, and the selected items never sent (reason and snapshot)."""

    items: list[Item]
    excluded: dict[str, str]
    excluded_items: list[Item]


def select_items(
    paths: DataPaths, selection: Selection, held_out_queries: frozenset[str] = frozenset()
) -> Selected:
    """The items to evaluate and the selected items that are never sent.

    ``--limit`` samples first, over every selected item (a stable order, independent of any calibration);
    then the sampled items that cannot be sent are set aside: blank queries (``Item.note``) and items of
    ``held_out_queries`` (queries a calibration method was fitted on), so evaluation never shares a query
    with calibration and only items of the sample count as never sent.
    """
    check_selection(selection)
    items = load_items(
        paths,
        half=selection.half,
        settings=selection.settings or None,
        categories=selection.categories or None,
    )
    if selection.items_file:
        items = filter_by_ids(items, read_item_ids(selection.items_file), selection.items_file)
    if selection.ids:
        items = filter_by_ids(items, selection.ids, "(the selected cases)")
    if selection.limit is not None and items:
        items = balanced_sample(items, selection.limit, selection.sample_seed)
    excluded: dict[str, str] = {}
    for it in items:
        if it.note:
            excluded[it.id] = it.note
        elif it.query_id in held_out_queries:
            excluded[it.id] = CALIBRATION_SPLIT_NOTE
    sendable = [it for it in items if it.id not in excluded]
    if not sendable:
        if excluded:
            first, why = next(iter(excluded.items()))
            raise VscbenchError(
                f"every selected item is excluded ({len(excluded)}, e.g. {first}: {why}): widen the selection"
            )
        raise VscbenchError("the selection is empty: check --half, --setting, --category and --items")
    return Selected(sendable, excluded, [it for it in items if it.id in excluded])


def check_items_file(paths: DataPaths, selection: Selection) -> None:
    """``--items FILE``: readable, and every id in it an item of the selection; checked before the store is
    opened (one line naming the file and the entry)."""
    if not selection.items_file:
        return
    ids = read_item_ids(selection.items_file)
    if not ids:
        raise VscbenchError(f"--items {selection.items_file}: names no item id")
    items = load_items(
        paths, half=selection.half, settings=selection.settings or None, categories=selection.categories or None
    )
    filter_by_ids(items, ids, selection.items_file)


def reason_label(reason: str) -> str:
    """A short name for why an item was never sent (``blank query``, ``calibration split``, ...)."""
    if reason == CALIBRATION_SPLIT_NOTE or "calibration split" in reason:
        return "calibration split"
    if reason.startswith("blank query"):
        return "blank query"
    return reason.split(":", 1)[0].strip() or "other"


def excluded_by_reason(excluded: Mapping[str, str]) -> dict[str, int]:
    """How many items were never sent, per short reason (:func:`reason_label`), sorted by reason."""
    return dict(sorted(Counter(reason_label(why) for why in excluded.values()).items()))


def exclusion_summary(excluded: Mapping[str, str]) -> str:
    """``12 (blank query), 16 (calibration split)``; ``0`` when nothing was left out."""
    counts = excluded_by_reason(excluded)
    return ", ".join(f"{n} ({why})" for why, n in counts.items()) or "0"


def _finite(flag: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise VscbenchError(f"{flag} {value}: must be a finite number")


def check_options(
    config: GenConfig, limits: Limits, policy: RetryPolicy, batch_size: int | None = None, flag_prefix: str = "--"
) -> None:
    """Refuse out-of-range generation, execution and batch options (one line naming the flag, spelt with
    ``flag_prefix``: ``--vsc-`` in the suite)."""
    checks: list[tuple[str, float | None, bool, str]] = [
        ("--max-tokens", config.max_tokens, config.max_tokens >= 1, "must be at least 1"),
        ("--temperature", config.temperature, config.temperature >= 0, "must be zero or more"),
        ("--concurrency", limits.concurrency, limits.concurrency >= 1, "must be at least 1"),
        ("--max-attempts", policy.max_attempts, policy.max_attempts >= 1, "must be at least 1"),
        ("--timeout", policy.timeout_s, policy.timeout_s >= 0, "must be zero (no timeout) or more"),
    ]
    if config.top_p is not None:
        checks.append(("--top-p", config.top_p, 0 < config.top_p <= 1, "must be above 0 and at most 1"))
    for flag, budget in (("--rpm", limits.rpm), ("--tpm", limits.tpm)):
        if budget is not None:
            checks.append((flag, budget, budget > 0, "must be above 0"))
    if batch_size is not None:
        checks.append(("--batch-size", batch_size, batch_size >= 1, "must be at least 1"))
    for flag, value, ok, why in checks:
        shown = flag_prefix + flag.removeprefix("--")
        if flag != "--timeout":
            _finite(shown, value)
        if value is not None and (value != value or not ok):  # NaN fails every comparison
            raise VscbenchError(f"{shown} {value:g}: {why}")


def calibration_facts(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a calibration's ``manifest()`` that decide what is sent (JSON-normalised)."""
    out = {k: manifest[k] for k in CALIBRATION_FACTS if k in manifest}
    pool = manifest.get("pool")
    if isinstance(pool, Mapping) and "sha256" in pool:
        out["pool_sha256"] = pool["sha256"]
    normalised: dict[str, Any] = json.loads(json.dumps(out, sort_keys=True, default=str))
    return normalised


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 16 else text[:12] + "..."


def _check_calibrations(run_id: str, stored: Mapping[str, Any], cals: Sequence[Calibration]) -> None:
    """A resumed run's calibrations must match what the run was made with (see :data:`CALIBRATION_FACTS`)."""
    records = stored.get("calibrations")
    if not isinstance(records, list):
        return  # the run stopped before its calibrations were recorded: nothing was sent with them
    for k, cal in enumerate(cals):
        rec = records[k] if k < len(records) and isinstance(records[k], Mapping) else {}
        old = calibration_facts(rec.get("manifest") or {})
        new = calibration_facts(cal.manifest())
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                raise VscbenchError(
                    f"run '{run_id}': calibration '{cal.spec}' is not the one the run was made with "
                    f"({key} {_short(old.get(key))} then, {_short(new.get(key))} now; e.g. a refitted direction "
                    "file or a selection that changes the few-shot draw): restore it, or use a new --run-id"
                )


def unsent_sampling(describe: Mapping[str, Any], config: GenConfig) -> dict[str, float]:
    """The sampling parameters of ``config`` that the provider will not send (its ``describe()`` says
    ``sampling_params_sent: False``, e.g. an Anthropic SDK whose API version rejects them): the API's own
    defaults apply instead. Empty when the provider sends them (or does not say)."""
    if describe.get("sampling_params_sent") is not False:
        return {}
    out = {"temperature": config.temperature}
    if config.top_p is not None:
        out["top_p"] = config.top_p
    return out


def warn_unsent_sampling(model: str, unsent: Mapping[str, float]) -> None:
    """One stderr line when the user asked for a non-default temperature/top-p that will not be sent."""
    asked = {k: v for k, v in unsent.items() if k != "temperature" or v != GenConfig().temperature}
    if asked:
        flags = ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in asked.items())
        sys.stderr.write(
            f"vscbench: warning: {model}: {flags} not sent (the installed SDK cannot send sampling "
            "parameters; the API default applies; recorded in the manifest as sampling_not_sent)\n"
        )


def _check_base_url(run_id: str, stored: Mapping[str, Any], describe: Mapping[str, Any]) -> None:
    """A resumed run must talk to the same endpoint (compared by host, the part the manifest keeps)."""
    if "base_url_host" not in stored:
        return
    old, new = stored.get("base_url_host"), describe.get("base_url_host")
    if old != new:
        raise VscbenchError(
            f"run '{run_id}' was made against {old or 'no base URL'}, this command would send to "
            f"{new or 'no base URL'}: pass the run's --base-url to resume it, or use a new --run-id"
        )


def _check_dataset(run_id: str, stored: Mapping[str, Any], paths: DataPaths, have: Sequence[Item]) -> None:
    """The run's already-stored items must still see the data they started with.

    The stored ``dataset`` fingerprint was computed, at the end of the last invocation's setup, over exactly
    the run's items as stored now (``have``); recomputing it over them (with this command's metadata) must
    give the same hashes, else an image was overwritten or the metadata/--root changed. Items a resume adds
    are not part of the comparison. Runs without a stored fingerprint are not checked.
    """
    old = stored.get("dataset")
    if not isinstance(old, Mapping):
        return
    new = dataset_fingerprint(paths, have)
    if old.get("metadata_sha256") != new["metadata_sha256"]:
        what = f"metadata sha256 {_digests(old.get('metadata_sha256'))} then, {_digests(new['metadata_sha256'])} now"
    elif old.get("images_sha256") != new["images_sha256"]:
        what = f"image hash {str(old.get('images_sha256'))[:12]}… then, {new['images_sha256'][:12]}… now"
    else:
        return
    raise VscbenchError(
        f"run '{run_id}': images or metadata changed since it started ({what}): use a new --run-id"
    )


def _digests(meta: Any) -> str:
    """``name:abcd1234,...`` for a ``metadata_sha256`` mapping (short, for an error line)."""
    if not isinstance(meta, Mapping) or not meta:
        return "none"
    return ",".join(f"{k}:{str(v)[:8]}" for k, v in sorted(meta.items()))


def _check_resume(run_id: str, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
    for key in RESUME_KEYS:
        if stored.get(key) != wanted.get(key):
            raise VscbenchError(
                f"run '{run_id}' was made with {key}={stored.get(key)!r}, this command asks for "
                f"{wanted.get(key)!r}: use the same settings to resume, or a new --run-id"
            )


def merged_selection(old: Mapping[str, Any] | None, new: Selection) -> dict[str, Any] | None:
    """One selection standing for a run's items after a resume with ``new`` (a larger ``--limit`` extends a
    smaller one); None when no single selection can say it (other settings, categories, seed, ...)."""
    new_d = new.to_dict()
    if not old:
        return new_d
    if any(old.get(k) != v for k, v in new_d.items() if k != "limit"):
        return None
    limits = (old.get("limit"), new.limit)
    return new_d | {"limit": None if None in limits else max(int(x) for x in limits if x is not None)}


def _read_excluded_artifact(store: Store, run_id: str) -> list[Item]:
    data = store.get_artifact(run_id, EXCLUDED_ARTIFACT)
    if not data:
        return []
    return [Item.from_dict(json.loads(line)) for line in data.decode("utf-8").splitlines() if line.strip()]


def excluded_artifact(items: Sequence[Item]) -> bytes:
    """``excluded_items.jsonl``: one ``Item.to_dict()`` JSON object per line."""
    return "".join(json.dumps(it.to_dict(), sort_keys=True) + "\n" for it in items).encode("utf-8")


@dataclass
class _Plan:
    """What a ``run`` invocation will work on, decided before any model is loaded or any request sent."""

    run_id: str
    resumed: bool
    items: list[Item]  # what this invocation's selection names (a resume adds those not in the run yet)
    all_items: list[Item]  # the run's items once this invocation has added its own
    excluded: dict[str, str]
    excluded_items: list[Item]
    stored: dict[str, Any] = field(default_factory=dict)  # the resumed run's manifest
    notes: list[str] = field(default_factory=list)


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
        snapshots = {it.id: it for it in _read_excluded_artifact(store, run_id)}
        have = store.run_items(run_id)
        if selection == Selection():  # no selection flags: exactly the run's own items
            return _Plan(run_id, True, have, have, stored_excluded, list(snapshots.values()), info.manifest)
        sel = select_items(paths, selection, held_out)
        have_ids = {it.id for it in have}
        added = [it for it in sel.items if it.id not in have_ids]
        for it in sel.excluded_items:
            snapshots.setdefault(it.id, it)
        notes = []
        if len(have) > len(sel.items) or not added:
            notes.append(
                f"run '{run_id}' keeps all its {len(have)} items (a resume never drops any); "
                f"this selection names {len(sel.items)} and adds {len(added)}"
            )
        return _Plan(
            run_id, True, sel.items, have + added, stored_excluded | sel.excluded,
            list(snapshots.values()), info.manifest, notes,
        )  # fmt: skip
    sel = select_items(paths, selection, held_out)
    return _Plan(run_id or new_run_id(model), False, sel.items, sel.items, sel.excluded, sel.excluded_items)


def retry_command(
    model: str,
    run_id: str,
    *,
    base_url: str | None = None,
    root: str | None = None,
    metadata: str | None = None,
    store: str | Path | None = None,
    config: GenConfig = GenConfig(),
    calibrations: Sequence[str] = (),
    device: str | None = None,
    dtype: str | None = None,
    batch_size: int | None = None,
) -> str:
    """The ``vscbench run`` command line that re-asks run ``run_id``'s errored items: everything a resume must
    repeat (model, base URL, generation config, calibrations) and where the data and store are. A base URL
    carrying a user, password or query string is shown as ``$BASE_URL`` (it may hold a secret)."""
    parts = ["vscbench", "run", "-m", model]
    shown_url = None
    if base_url:
        u = urlsplit(base_url)
        shown_url = "$BASE_URL" if (u.username or u.password or u.query) else base_url
    default = GenConfig()
    flags: list[tuple[str, Any]] = [
        ("--base-url", shown_url),
        ("--root", root),
        ("--metadata", metadata),
        ("--store", store),
        ("--run-id", run_id),
        ("--max-tokens", config.max_tokens if config.max_tokens != default.max_tokens else None),
        ("--temperature", config.temperature if config.temperature != default.temperature else None),
        ("--top-p", config.top_p),
        ("--seed", config.seed if config.seed != default.seed and config.seed is not None else None),
        *(("--calibration", c) for c in calibrations),
        ("--device", device),
        ("--dtype", dtype),
        ("--batch-size", batch_size),
    ]
    for flag, value in flags:
        if value is not None:
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join([*parts, "--retry-errors"]).replace("'$BASE_URL'", '"$BASE_URL"')


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
    only_selected: bool = False,
    model_revision: str | None = None,
) -> RunResult:
    """:func:`run` with the spec given flag by flag (kept for callers that predate :class:`RunSpec`): ``root``
    and ``metadata`` are resolved where :func:`run` resolves its data, so the checks run in the same order.

    Create or resume a generation run and answer every pending item (see the module invariants).

    Order: check and select (nothing written), render missing images, build the provider (an ``hf/`` model
    loads here), record the run, send. ``provider`` replaces the one ``model`` names (tests, embedding); it
    is then not closed here. With ``only_selected`` a resume sends only the selected items, never the run's
    other pending ones: processes sharing one run (the suite's xdist workers) each send the items they own,
    while another may be sending the rest at that moment.
    """
    setup = ModelSetup(
        model=model,
        base_url=base_url,
        config=config,
        calibrations=tuple(calibrations),
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        limits=limits,
        policy=policy,
        revision=model_revision,
    )
    spec = RunSpec(
        setup,
        selection=selection,
        store=store,
        run_id=run_id,
        retry_errors=retry_errors,
        only_selected=only_selected,
    )
    return _run_spec(spec, provider=provider, progress=progress, root=root, metadata=metadata)


def _run_spec(
    spec: RunSpec,
    *,
    provider: Provider | None,
    progress: bool | None,
    root: str | None = None,
    metadata: str | None = None,
) -> RunResult:
    """The body of :func:`run`; ``root``/``metadata`` stand in for ``spec.data`` when it is None."""
    spec.check()
    setup, selection, store, run_id = spec.setup, spec.selection, spec.store, spec.run_id
    model, base_url, config, calibrations = setup.model, setup.base_url, setup.config, setup.calibrations
    limits, policy, device, batch_size, dtype = setup.limits, setup.policy, setup.device, setup.batch_size, setup.dtype
    retry_errors, only_selected, model_revision = spec.retry_errors, spec.only_selected, setup.revision
    if spec.data is not None:
        root, metadata = str(spec.data.root), str(spec.data.metadata)
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
    check_items_file(paths, selection)  # before the store is opened: a bad file leaves no trace
    wanted: dict[str, Any] = {
        "model": model,
        "config": config.to_dict(),
        "calibration_specs": list(calibrations),
    }
    revision = {"model_revision": model_revision} if model_revision else {}
    with Store(store) as st, contextlib.ExitStack() as planning:
        # Planning and recording hold the store's lock (another process may resume the same run now, as
        # the suite's xdist workers do); it is released before the first request is sent.
        planning.enter_context(st.exclusive())
        plan = _plan(st, paths, run_id, selection, wanted, model, held_out)
        for cal in cals:
            cal.prepare(plan.all_items)
        if plan.resumed:
            _check_calibrations(plan.run_id, plan.stored, cals)
            have = st.run_items(plan.run_id)
            # rendered images are deterministic: rebuild any deleted ones first, so only real changes refuse
            wanted_ids = {i.id for i in have}
            _ensure_images(paths, [*have, *(i for i in plan.items if i.id not in wanted_ids)])
            _check_dataset(plan.run_id, plan.stored, paths, have)
        else:
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
                if plan.resumed:
                    _check_base_url(plan.run_id, plan.stored, prov.describe())
                return await _run(
                    st, prov, provider_name, wanted, paths, plan, selection, config, cals, limits, policy,
                    retry_errors, progress, planning.close, only_selected, revision,
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


#: Seconds between looks at the items another process has in flight.
CLAIM_POLL_S = 0.2


async def _with_heartbeat(store: Store, run_id: str, owner: ClaimOwner, job: Awaitable[ExecStats]) -> ExecStats:
    """Await ``job`` while renewing ``owner``'s claims every third of their lease."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(CLAIM_LEASE_S / 3)
            store.renew_claims(run_id, owner)

    task = asyncio.create_task(beat())
    try:
        return await job
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _send_claimed(
    store: Store,
    run_id: str,
    provider: Provider,
    requests: Sequence[Request],
    owner: ClaimOwner,
    mine: set[str],
    held: set[str],
    sent_ids: set[str],
    *,
    limits: Limits,
    policy: RetryPolicy,
    progress: bool | None,
) -> ExecStats:
    """Send the requests ``owner`` claimed; then wait for those another process holds: each ends answered
    there, or its claim frees (that process died, its lease ran out) and it is claimed and sent here.
    ``sent_ids`` gathers what was sent here."""
    total = ExecStats()
    batch = [r for r in requests if r.item_id in mine]
    waiting = set(held)
    while True:
        if batch:
            got = await _with_heartbeat(
                store, run_id, owner,
                execute_to_store(store, run_id, provider, batch, limits=limits, policy=policy, progress=progress),
            )  # fmt: skip
            sent_ids.update(r.item_id for r in batch)
            for name in ("done", "ok", "blocked", "empty", "errors", "retries"):
                setattr(total, name, getattr(total, name) + getattr(got, name))
            total.wall_s += got.wall_s
            store.release_claims(run_id, owner, [r.item_id for r in batch])
        if not waiting:
            return total
        await asyncio.sleep(CLAIM_POLL_S)
        waiting -= store.completed_item_ids(run_id)  # answered (or errored) where it was in flight
        mine, waiting = store.claim(run_id, sorted(waiting), owner)
        batch = [r for r in requests if r.item_id in mine]


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
    done_planning: Callable[[], None] = lambda: None,
    only_selected: bool = False,
    revision: Mapping[str, Any] = MappingProxyType({}),
) -> RunResult:
    run_id = plan.run_id
    # An in-process model (hf/) answers in batches: let at least a batch of requests queue up.
    batch = int(getattr(provider, "batch_size", 1) or 1)
    if batch > limits.concurrency:
        limits = replace(limits, concurrency=batch)
    describe = dict(provider.describe())
    unsent = unsent_sampling(describe, config)
    warn_unsent_sampling(wanted["model"], unsent)
    all_items = plan.all_items
    ids = {it.id for it in all_items}
    answered = store.completed_item_ids(run_id, include_errors=False) & ids if plan.resumed else set()
    errored = (store.completed_item_ids(run_id) & ids) - answered if plan.resumed else set()
    to_send = plan.items if only_selected else all_items
    pending = [it for it in to_send if it.id not in answered and (retry_errors or it.id not in errored)]
    requests = [build_request(it, config, cals) for it in pending]  # may refuse an item: nothing written yet

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
            **revision,
        }
        store.create_run(run_id, kind=RUN_KIND, model=wanted["model"], manifest=manifest, items=plan.items)
    if plan.excluded_items:
        store.put_artifact(
            run_id, EXCLUDED_ARTIFACT, excluded_artifact(plan.excluded_items), "application/x-ndjson"
        )
    for cal in cals:
        for name, (data, media_type) in cal.artifacts().items():
            store.put_artifact(run_id, name, data, media_type)

    started = time.time()
    invocation = {
        "started_at": started,
        "pending": len(pending),
        "retry_errors": retry_errors,
        "selection": selection.to_dict(),
        "base_url_host": describe.get("base_url_host"),
        "provider_info": describe,
        "sampling_not_sent": unsent,
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
    patch: dict[str, Any] = {
        "excluded_items": plan.excluded,
        "calibrations": [{"spec": c.spec, "manifest": c.manifest()} for c in cals],
        "dataset": dataset_fingerprint(paths, all_items),
        "sampling_not_sent": unsent,
        "started_at": manifest.get("started_at", started),
        "finished_at": None,
        "invocations": [*manifest.get("invocations", []), invocation],
    }
    if plan.resumed and selection != Selection():
        merged = merged_selection(manifest.get("selection"), selection)
        if merged is not None:
            patch["selection"] = merged
        else:  # the run is now a union of selections: keep each one
            patch["added_selections"] = [*manifest.get("added_selections", []), selection.to_dict()]
    store.update_manifest(run_id, patch)
    invocation_index = len(patch["invocations"]) - 1
    # Claimed under the planning lock: what another process (a second session on this store) has in flight
    # is waited for, never sent twice.
    owner = ClaimOwner.this_process()
    mine, held = store.claim(run_id, [r.item_id for r in requests], owner)
    done_planning()

    stats = ExecStats()
    sent_ids: set[str] = set()
    try:
        stats = await _send_claimed(
            store, run_id, provider, requests, owner, mine, held, sent_ids, limits=limits, policy=policy,
            progress=progress,
        )  # fmt: skip
    finally:
        store.release_claims(run_id, owner)
        with store.exclusive():
            counts = store.counts(run_id)
            finished = time.time()
            manifest = store.get_run(run_id).manifest
            invocations = list(manifest.get("invocations", []))
            if 0 <= invocation_index < len(invocations):
                invocations[invocation_index] = invocations[invocation_index] | {
                    "finished_at": finished,
                    "stats": stats.to_dict(),
                }
            store.update_manifest(
                run_id,
                {
                    "finished_at": finished if counts["pending"] == 0 else None,
                    "counts": counts,
                    "invocations": invocations,
                },
            )
    example = None
    if stats.errors:
        example = next(
            (
                r.error
                for r in store.responses(run_id).values()
                if r.item_id in sent_ids and r.status is Status.ERROR
            ),
            None,
        )
    return RunResult(
        run_id=run_id,
        store_path=store.path,
        counts=counts,
        stats=stats,
        sent=len(sent_ids),
        skipped=len(to_send) - len(pending),
        excluded=plan.excluded,
        resumed=plan.resumed,
        skipped_errors=0 if retry_errors else sum(1 for it in to_send if it.id in errored),
        error_example=example,
        notes=plan.notes,
    )


def list_runs(store: str | Path | None = None) -> list[dict[str, Any]]:
    """Every run in the store with its kind, model, times and response counts (for ``vscbench runs``)."""
    with Store(store, create=False, missing_ok=True) as st:
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


# -- the small API: what answers, and one call to get answers --------------------------------------


@dataclass(frozen=True)
class ModelSetup:
    """What answers the items and how it is asked: the model, how to reach or load it, the generation
    config, the calibrations, and the execution limits. The CLI's ``run`` and the safety suite both build
    one and hand it to :func:`run` inside a :class:`RunSpec`."""

    model: str
    base_url: str | None = None
    config: GenConfig = GenConfig()
    calibrations: tuple[str, ...] = ()
    device: str | None = None
    dtype: str | None = None
    batch_size: int | None = None
    limits: Limits = Limits()
    policy: RetryPolicy = RetryPolicy()
    #: The model revision the run records (see :mod:`vscbench.models.revision`); not part of :meth:`key`.
    revision: str | None = None

    def key(self) -> str:
        """12 hex digits over what decides a response (model, base-URL host, generation config and
        calibrations); the same key means stored responses can be reused."""
        host = urlsplit(self.base_url).netloc.rsplit("@", 1)[-1] if self.base_url else None
        if self.model.startswith("vllm/"):
            host = None  # a server the suite starts: a new port each session, the same model
        facts = {
            "model": self.model,
            "base_url_host": host,
            "config": self.config.to_dict(),
            "calibrations": list(self.calibrations),
        }
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode("utf-8")).hexdigest()[:12]

    def run_id(self, prefix: str = "suite") -> str:
        """A stable run id for this setup (``suite-<model>-<key>``): every session of the suite with the same
        setup resumes the same run, so nothing already answered is sent again."""
        _, model = parse_model_spec(self.model)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", model.rstrip("/").rsplit("/", 1)[-1]).strip("-.") or "model"
        return f"{prefix}-{stem[:40]}-{self.key()}"

    def check(self, flag_prefix: str = "--") -> None:
        """The option checks of :func:`generate`, with nothing loaded, sent or written."""
        check_options(self.config, self.limits, self.policy, self.batch_size, flag_prefix)
        from vscbench.models.factory import check_spec

        check_spec(self.model, base_url=self.base_url)
        parse_calibrations(self.calibrations)

    def open(self) -> Provider:
        """The provider (an ``hf/`` model loads here); close it with :func:`aclose_quietly`."""
        return open_provider(
            self.model,
            base_url=self.base_url,
            limits=self.limits,
            device=self.device,
            batch_size=self.batch_size,
            dtype=self.dtype,
        )


@dataclass(frozen=True)
class RunSpec:
    """One generation run as the CLI, the suite, the demo and the benchmarks ask for it, built once: what
    answers (``setup``, its revision included), which items (``selection`` of the release at ``data``;
    None: the default release), where it goes (``store``, ``run_id``: None = a new generated id, an existing
    id is resumed), and how a resume treats what is there (``retry_errors`` re-asks errored items;
    ``only_selected`` sends only the selected items, never the run's other pending ones: processes sharing
    one run, as the suite's xdist workers do, each send the items they own). How this process runs it (the
    ``provider`` to use, a ``progress`` bar) is not part of the spec: see :func:`run`."""

    setup: ModelSetup
    selection: Selection = Selection()
    data: DataPaths | None = None
    store: str | Path | None = None
    run_id: str | None = None
    retry_errors: bool = False
    only_selected: bool = False

    def check(self) -> None:
        """The checks made before anything is loaded, opened, sent or written: generation options, limits,
        retry policy and batch size; the selection; the run id's form. (The model spec is checked by
        :func:`run`, against the factory or the provider it is given.)"""
        s = self.setup
        check_options(s.config, s.limits, s.policy, s.batch_size)
        check_selection(self.selection)
        if self.run_id is not None:
            check_run_id(self.run_id)


def run(spec: RunSpec, *, provider: Provider | None = None, progress: bool | None = None) -> RunResult:
    """Create or resume the run ``spec`` describes and answer every pending item (see the module invariants).

    Order: check and select (nothing written), render missing images, build the provider (an ``hf/`` model
    loads here), record the run, send. ``provider`` replaces the one the spec's model names (tests,
    embedding, the suite's in-process model); it is then not closed here. ``progress``: None = a bar on a
    terminal only."""
    return _run_spec(spec, provider=provider, progress=progress)


def generate(
    setup: ModelSetup,
    *,
    data: DataPaths | None = None,
    store: str | Path | None = None,
    run_id: str | None = None,
    selection: Selection = Selection(),
    retry_errors: bool = False,
    progress: bool | None = None,
    provider: Provider | None = None,
    only_selected: bool = False,
) -> RunResult:
    """:func:`run` of ``RunSpec(setup, ...)``, the spec given field by field."""
    spec = RunSpec(setup, selection, data, store, run_id, retry_errors, only_selected)
    return run(spec, provider=provider, progress=progress)


# -- arbitrary items (robustness variants): answered through the same execution, cached by item id ------

#: Run kind of a run of items that are not benchmark items (the suite's robustness variants).
VARIANTS_KIND = "variants"


def generate_items(
    setup: ModelSetup,
    items: Sequence[Item],
    *,
    store: str | Path | None = None,
    run_id: str,
    provider: Provider | None = None,
    retry_errors: bool = True,
    progress: bool | None = False,
) -> RunResult:
    """Answer arbitrary ``items`` (ids, queries and image files of their own, e.g. the suite's robustness
    variants ``rb/<seed id>/<hash>``) with ``setup`` into run ``run_id`` of kind ``variants`` (created, or
    resumed: its model, generation config and calibration specs must match).

    Only items without an ``ok``/``blocked``/``empty`` response are sent (with ``retry_errors``, errored ones
    are asked again), through the same request building, concurrency, retry policy and per-response commits
    as :func:`run_generation`; with nothing to send no provider is opened. Items whose query a calibration
    was fitted on are never sent (``excluded``). ``provider`` (e.g. the suite's in-process model) is used and
    not closed; otherwise ``setup.open()`` gives one, closed at the end."""
    check_run_id(run_id)
    cals = parse_calibrations(setup.calibrations)
    held_out: frozenset[str] = frozenset()
    for cal in cals:
        bind = getattr(cal, "bind_model", None)
        if bind is not None:
            bind(setup.model)
        held = getattr(cal, "excluded_query_ids", None)
        if held is not None:
            held_out |= held()
    unique = list({it.id: it for it in items}.values())
    excluded = {it.id: CALIBRATION_SPLIT_NOTE for it in unique if it.query_id in held_out}
    wanted: dict[str, Any] = {
        "model": setup.model,
        "config": setup.config.to_dict(),
        "calibration_specs": list(setup.calibrations),
    }
    provider_name, _ = parse_model_spec(setup.model)
    with Store(store) as st, contextlib.ExitStack() as planning:
        planning.enter_context(st.exclusive())
        resumed = st.has_run(run_id)
        if resumed:
            info = st.get_run(run_id)
            if info.kind != VARIANTS_KIND:
                raise VscbenchError(f"run '{run_id}' is a {info.kind} run, not a {VARIANTS_KIND} run")
            _check_resume(run_id, info.manifest, wanted)
        answered = st.completed_item_ids(run_id, include_errors=False) if resumed else set()
        errored = st.completed_item_ids(run_id) - answered if resumed else set()
        pending = [
            it
            for it in unique
            if it.id not in excluded and it.id not in answered and (retry_errors or it.id not in errored)
        ]
        for it in pending:
            if it.image is not None and not Path(it.image).is_file():
                raise VscbenchError(f"{it.image}: image missing (item {it.id})")
        if not pending:
            return RunResult(run_id, st.path, st.counts(run_id) if resumed else {}, ExecStats(), 0,
                             len(unique) - len(excluded), excluded, resumed)  # fmt: skip
        for cal in cals:
            cal.prepare(pending)
        requests = [build_request(it, setup.config, cals) for it in pending]
        own = provider is None
        prov = setup.open() if provider is None else provider
        describe = dict(prov.describe())
        invocation = {"started_at": time.time(), "pending": len(pending), "base_url_host": describe.get("base_url_host")}
        if resumed:
            st.add_run_items(run_id, pending)
            manifest = st.get_run(run_id).manifest
            st.update_manifest(run_id, {"invocations": [*manifest.get("invocations", []), invocation]})
        else:
            manifest = wanted | {
                "kind": VARIANTS_KIND,
                "provider": provider_name,
                "base_url_host": describe.get("base_url_host"),
                "provider_info": describe,
                "calibrations": [{"spec": c.spec, "manifest": c.manifest()} for c in cals],
                "vscbench_version": __version__,
                "created_at": time.time(),
                "invocations": [invocation],
            }
            st.create_run(run_id, kind=VARIANTS_KIND, model=setup.model, manifest=manifest, items=pending)
        planning.close()  # the lock is released before the first request is sent

        limits = setup.limits
        batch = int(getattr(prov, "batch_size", 1) or 1)  # an in-process model: let a batch queue up
        if batch > limits.concurrency:
            limits = replace(limits, concurrency=batch)

        async def main() -> ExecStats:
            try:
                return await execute_to_store(
                    st, run_id, prov, requests, limits=limits, policy=setup.policy, progress=progress
                )
            finally:
                if own:
                    await aclose_quietly(prov)

        stats = asyncio.run(main())
        return RunResult(
            run_id=run_id,
            store_path=st.path,
            counts=st.counts(run_id),
            stats=stats,
            sent=len(requests),
            skipped=len(unique) - len(excluded) - len(pending),
            excluded=excluded,
            resumed=resumed,
        )
