"""Activation steering for ``hf/`` models: ``steer`` and ``revise``, and fitting their direction.

A *direction* is the difference of mean residual-stream activations at the last prompt token (the position
where the answer starts) on unsafe versus safe calibration inputs, taken at the output of decoder layer ``L``
of the language model: ``d = mean(h_L | unsafe) - mean(h_L | safe)``.

- ``steer:layer=L,alpha=A[,direction=FILE]`` adds ``A * d`` to layer ``L``'s output at every position, prompt
  and generated tokens alike (the residual stream keeps the shift for the whole answer). Negative ``A`` pushes
  towards "safe" (less over-refusal), positive ``A`` adds caution.
- ``revise:layer=L,alpha=A[,threshold=T][,direction=FILE]`` measures, before any change, the projection
  ``p = h_L[last] . d / |d|`` of each input; only inputs with ``p > T`` are steered (all positions, as
  ``steer``), the rest run untouched: their answers are bit-identical to the uncalibrated model's. ``T``
  defaults to the midpoint of the safe and unsafe class means of ``p`` recorded when the direction was fitted.

Directions come from ``vscbench calibrate fit`` (:func:`fit`) on a calibration split of whole queries drawn
with a seed; the query ids are stored in the file, and a run that evaluates any of them is refused
(:meth:`SteeringCalibration.prepare`) unless those items are left out (:meth:`excluded_query_ids`).

File format: one ``.safetensors`` file with tensors ``direction``, ``mean_safe``, ``mean_unsafe`` (float32,
``[hidden_size]``) and the provenance as JSON in the header metadata (key ``vscbench``).

This module imports torch only inside the functions that need it, so ``--calibration`` parses without torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vscbench import __version__
from vscbench.calibration.base import FACTORIES, Calibration, plain_request
from vscbench.data.paths import default_root
from vscbench.errors import VscbenchError, require
from vscbench.types import GenConfig, Item, Request

if TYPE_CHECKING:
    from vscbench.data.paths import DataPaths


class ActivationModel(Protocol):
    """What fitting needs from a model (the ``hf/`` provider implements it)."""

    spec: str
    model_name: str
    local_path: Path | None
    device: str
    dtype: str

    @property
    def num_layers(self) -> int: ...

    @property
    def hidden_size(self) -> int: ...

    def last_token_activations(self, requests: Sequence[Request], layer: int) -> Any: ...


def check_layer(layer: int, n_layers: int) -> None:
    """Decoder layers are numbered 0..n-1; layer L's output is the residual stream after block L."""
    if not 0 <= layer < n_layers:
        raise VscbenchError(
            f"layer {layer} does not exist: this model has {n_layers} decoder layers (0..{n_layers - 1})"
        )


def config_num_layers(model: str) -> int | None:
    """Decoder layers of ``model`` (a local folder or a hub id already in the local cache) read from its
    ``config.json`` (``text_config.num_hidden_layers``, else ``num_hidden_layers``); None when unknown.

    Never loads weights, never imports torch, never touches the network.
    """
    p = Path(model).expanduser()
    cfg_path: Path | None = p / "config.json" if p.is_dir() else None
    if cfg_path is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(model, "config.json")
            cfg_path = Path(hit) if isinstance(hit, str) else None
        except Exception:  # not installed, not a repo id, no cache: unknown
            cfg_path = None
    if cfg_path is None or not cfg_path.is_file():
        return None
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    text_cfg = cfg.get("text_config")
    for c in (text_cfg if isinstance(text_cfg, dict) else {}, cfg):
        n = c.get("num_hidden_layers")
        if isinstance(n, int) and n > 0:
            return n
    return None


log = logging.getLogger(__name__)

METADATA_KEY = "vscbench"
FORMAT = "vscbench-direction/1"


# ---- direction files ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Direction:
    """A fitted direction with its provenance. ``sha256`` is the hash of the file's bytes."""

    vector: np.ndarray[Any, np.dtype[np.float32]]
    provenance: dict[str, Any]
    path: Path | None = None
    sha256: str = ""
    data: bytes = b""

    @property
    def layer(self) -> int:
        return int(self.provenance["layer"])

    @property
    def query_ids(self) -> frozenset[str]:
        return frozenset(self.provenance.get("query_ids", ()))

    @property
    def unit(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        norm = float(np.linalg.norm(self.vector))
        return (self.vector / norm).astype(np.float32) if norm > 0 else self.vector

    @property
    def suggested_threshold(self) -> float | None:
        t = self.provenance.get("suggested_threshold")
        return None if t is None else float(t)


def directions_dir() -> Path:
    """Default home of fitted directions: ``$VSCBENCH_HOME/directions`` (or ``~/.cache/vscbench/directions``)."""
    return default_root() / "directions"


def model_slug(model: str) -> str:
    """File-name-safe model name: ``org--name`` for hub ids, ``name-<8 hex of the full path>`` for folders."""
    p = Path(model).expanduser()
    if p.exists():
        full = str(p.resolve())
        base = p.resolve().name or "model"
        return f"{_safe(base)}-{hashlib.sha256(full.encode()).hexdigest()[:8]}"
    return _safe(model.replace("/", "--"))


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("._") or "model"


def default_direction_path(model: str, layer: int) -> Path:
    return directions_dir() / f"{model_slug(model)}.layer{layer}.safetensors"


def direction_bytes(
    vector: np.ndarray[Any, Any],
    mean_safe: np.ndarray[Any, Any],
    mean_unsafe: np.ndarray[Any, Any],
    provenance: dict[str, Any],
) -> bytes:
    st = require("safetensors.numpy", "hf")
    tensors = {
        "direction": np.ascontiguousarray(vector, dtype=np.float32),
        "mean_safe": np.ascontiguousarray(mean_safe, dtype=np.float32),
        "mean_unsafe": np.ascontiguousarray(mean_unsafe, dtype=np.float32),
    }
    data: bytes = st.save(tensors, metadata={METADATA_KEY: json.dumps(provenance, sort_keys=True)})
    return data


def load_direction(path: str | Path) -> Direction:
    """Read a direction file; one clear line if it is missing or not a vscbench direction."""
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise VscbenchError(f"direction file {p}: {exc.strerror or exc}") from exc
    try:
        st = require("safetensors.numpy", "hf")
        tensors = st.load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        provenance = json.loads(header["__metadata__"][METADATA_KEY])
        vector = np.asarray(tensors["direction"], dtype=np.float32)
    except VscbenchError:
        raise
    except Exception as exc:  # malformed header, missing key, bad JSON
        raise VscbenchError(
            f"direction file {p} is not a vscbench direction (run vscbench calibrate fit)"
        ) from exc
    if vector.ndim != 1 or not np.all(np.isfinite(vector)):
        raise VscbenchError(f"direction file {p}: 'direction' must be a finite 1-D vector")
    return Direction(
        vector=vector,
        provenance=provenance,
        path=p.resolve(),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
    )


# ---- calibration split ----------------------------------------------------------------------------------
#: Settings whose images are rendered from the metadata alone (no download needed).
_RENDERED_SETTINGS = ("typography", "figstep")


def _usable(item: Item) -> bool:
    """Sendable here: a non-blank query and no image, an image file that exists, or one we can render."""
    if not item.query.strip():
        return False
    if item.image is None or Path(item.image).is_file():
        return True
    return item.half == "text" and item.setting in _RENDERED_SETTINGS


def _strata(items: Sequence[Item]) -> dict[str, list[str]]:
    """Usable query ids per stratum (image half; text half safe; text half unsafe), each query once."""
    strata: dict[str, list[str]] = {}
    seen: set[str] = set()
    for it in items:
        if not _usable(it) or it.query_id in seen:
            continue
        seen.add(it.query_id)
        key = "image" if it.half == "image" else f"text-{it.label}"
        strata.setdefault(key, []).append(it.query_id)
    return strata


def calibration_split(items: Sequence[Item], n_queries: int, seed: int) -> list[Item]:
    """Whole queries drawn with ``seed``, round-robin over strata (image half; text half safe; text half
    unsafe) so both labels are present; returns every usable item of the drawn queries, in input order.

    Deterministic: the same items, ``n_queries`` and ``seed`` give the same split. Asking for more queries
    than have usable items is an error (never a silent cut), as is a split without both labels.
    """
    if n_queries < 1:
        raise VscbenchError(f"--n {n_queries}: draw at least 1 calibration query")
    strata = _strata(items)
    available = sum(len(q) for q in strata.values())
    if available == 0:
        raise VscbenchError(
            f"no usable calibration items among the {len(items)} selected: each needs a non-blank query and "
            "an image file that is present (typography/figstep images are rendered); make the images "
            "available (vscbench data) or choose other --half/--setting"
        )
    if n_queries > available:
        raise VscbenchError(
            f"--n {n_queries}: only {available} queries have usable items here; ask for at most that many "
            "(every calibration query is left out of later evaluation, so fewer is usually better)"
        )
    rng = random.Random(seed)
    pools = []
    for key in sorted(strata):
        qids = sorted(strata[key])
        rng.shuffle(qids)
        pools.append(qids)
    chosen: list[str] = []
    while len(chosen) < n_queries and any(pools):
        for pool in pools:
            if pool and len(chosen) < n_queries:
                chosen.append(pool.pop(0))
    wanted = set(chosen)
    split = [i for i in items if _usable(i) and i.query_id in wanted]
    labels = sorted({i.label for i in split})
    if labels != ["safe", "unsafe"]:
        raise VscbenchError(
            f"the calibration split of {len(wanted)} queries has only {labels[0]} items: a direction needs "
            "safe and unsafe inputs; raise --n or choose other --half/--setting"
        )
    return split


def held_out_summary(all_items: Sequence[Item], query_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per half: how many of the benchmark's queries the split holds out of evaluation, and of how many."""
    held = set(query_ids)
    out: dict[str, dict[str, int]] = {}
    for half in ("image", "text"):
        qids = {i.query_id for i in all_items if i.half == half}
        if qids:
            out[half] = {"held_out": len(qids & held), "queries": len(qids)}
    return out


#: A calibration split holding out at least this share of a half's queries gets a warning.
HELD_OUT_WARN = 0.5


def held_out_warnings(summary: dict[str, dict[str, int]]) -> list[str]:
    """One line per half where the split leaves less than half the queries for evaluation."""
    lines = []
    for half, s in summary.items():
        if s["queries"] and s["held_out"] / s["queries"] >= HELD_OUT_WARN:
            left = s["queries"] - s["held_out"]
            lines.append(
                f"the calibration split holds out {s['held_out']} of the {s['queries']} {half}-half queries: "
                f"runs with this direction can evaluate only {left} of them (lower --n)"
            )
    return lines


# ---- fitting --------------------------------------------------------------------------------------------
def fit_direction(
    provider: ActivationModel, safe: Sequence[Request], unsafe: Sequence[Request], layer: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], dict[str, Any]]:
    """``(direction, mean_safe, mean_unsafe, stats)`` at decoder layer ``layer``: means accumulated in float64,
    returned as float32. ``stats`` holds the projections of both classes on the unit direction."""
    if not safe or not unsafe:
        raise VscbenchError("fitting a direction needs at least one safe and one unsafe input")
    acts_s = np.asarray(provider.last_token_activations(safe, layer), dtype=np.float64)
    acts_u = np.asarray(provider.last_token_activations(unsafe, layer), dtype=np.float64)
    mean_s = acts_s.mean(axis=0)
    mean_u = acts_u.mean(axis=0)
    direction = (mean_u - mean_s).astype(np.float32)
    norm = float(np.linalg.norm(direction))
    unit = direction.astype(np.float64) / norm if norm > 0 else direction.astype(np.float64)
    ps, pu = acts_s @ unit, acts_u @ unit

    def summary(p: np.ndarray[Any, Any]) -> dict[str, float]:
        return {"mean": float(p.mean()), "std": float(p.std()), "min": float(p.min()), "max": float(p.max())}

    stats = {
        "norm": norm,
        "projection_safe": summary(ps),
        "projection_unsafe": summary(pu),
        "suggested_threshold": float((ps.mean() + pu.mean()) / 2),
    }
    return direction, mean_s.astype(np.float32), mean_u.astype(np.float32), stats


@dataclass(frozen=True)
class FitResult:
    path: Path
    provenance: dict[str, Any]
    sha256: str
    #: Lines worth telling the user (e.g. a split that holds out most of a half's queries).
    warnings: tuple[str, ...] = ()


def direction_destination(
    model: str, layer: int, out: str | Path | None = None, *, force: bool = False
) -> Path:
    """Where :func:`fit` writes: ``out``, else :func:`default_direction_path`. An existing file there is
    refused unless ``force``: a run that used it records its sha256, so replacing it silently would let a
    resumed run mix answers steered by two directions."""
    dest = Path(out).expanduser() if out else default_direction_path(model, layer)
    if dest.is_dir():
        raise VscbenchError(
            f"--out {dest}: is a folder; give a file name such as {dest / 'direction.safetensors'}"
        )
    if dest.exists() and not force:
        try:
            digest = hashlib.sha256(dest.read_bytes()).hexdigest()[:12]
        except OSError:
            digest = "?"
        raise VscbenchError(
            f"direction file {dest} already exists (sha256 {digest}…, maybe used by runs): not replaced; "
            "pass --out NEW_FILE to keep it, or --force to overwrite it"
        )
    return dest


def fit(
    provider: ActivationModel,
    paths: DataPaths,
    layer: int,
    *,
    out: str | Path | None = None,
    n_queries: int = 32,
    seed: int = 0,
    half: str | None = None,
    settings: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    force: bool = False,
) -> FitResult:
    """Fit a direction for ``provider``'s model at ``layer`` on a seeded calibration split; save it to ``out``
    (default :func:`default_direction_path`), refusing to replace an existing file unless ``force``.
    ``exclude`` lists query ids that must not be drawn (e.g. those of a planned evaluation)."""
    from vscbench.data import load_items
    from vscbench.types import SETTINGS

    if n_queries < 2:
        raise VscbenchError(f"--n {n_queries}: need at least 2 calibration queries (one safe, one unsafe)")
    if half not in (None, "image", "text"):
        raise VscbenchError(f"--half {half}: unknown half (use image or text)")
    for s in settings or ():
        if s not in SETTINGS:
            raise VscbenchError(f"--setting {s}: unknown setting (use one of {', '.join(SETTINGS)})")
    dest = direction_destination(provider.model_name, layer, out, force=force)
    all_items = load_items(paths)
    wanted_settings = set(settings) if settings else None
    items = [
        i
        for i in all_items
        if (half is None or i.half == half) and (wanted_settings is None or i.setting in wanted_settings)
    ]
    if exclude:
        banned = set(exclude)
        items = [i for i in items if i.query_id not in banned]
    check_layer(layer, provider.num_layers)
    split = calibration_split(items, n_queries, seed)
    to_render = [i for i in split if i.image is not None and not Path(i.image).is_file()]
    if to_render:
        from vscbench.data.render import ensure_images

        ensure_images(paths, to_render)
    config = GenConfig()
    safe = [plain_request(i, config) for i in split if i.label == "safe"]
    unsafe = [plain_request(i, config) for i in split if i.label == "unsafe"]
    direction, mean_s, mean_u, stats = fit_direction(provider, safe, unsafe, layer)
    query_ids = sorted({i.query_id for i in split})
    held_out = held_out_summary(all_items, query_ids)
    import torch
    import transformers

    provenance: dict[str, Any] = {
        "format": FORMAT,
        "model": provider.spec,
        "model_resolved": str(provider.local_path) if provider.local_path else provider.model_name,
        "layer": layer,
        "hidden_size": int(direction.shape[0]),
        "num_layers": provider.num_layers,
        "position": "last prompt token (after the chat template's generation prompt)",
        "seed": seed,
        "n_queries": len(query_ids),
        "n_safe": len(safe),
        "n_unsafe": len(unsafe),
        "query_ids": query_ids,
        "item_ids": [i.id for i in split],
        "held_out": held_out,
        "half": half,
        "settings": list(settings) if settings else None,
        "metadata": str(paths.metadata),
        "device": provider.device,
        "dtype": provider.dtype,
        "vscbench": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **stats,
    }
    data = direction_bytes(direction, mean_s, mean_u, provenance)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
    except OSError as exc:
        raise VscbenchError(f"--out {dest}: cannot write ({exc.strerror or exc})") from exc
    return FitResult(
        path=dest.resolve(),
        provenance=provenance,
        sha256=hashlib.sha256(data).hexdigest(),
        warnings=tuple(held_out_warnings(held_out)),
    )


# ---- the calibration methods ----------------------------------------------------------------------------
@dataclass
class SteeringCalibration:
    """``steer`` or ``revise`` with its options bound; implements the Calibration protocol."""

    spec: str
    method: str
    alpha: float
    layer: int | None = None
    threshold: float | None = None
    direction_path: Path | None = None
    requires_activations: bool = True
    _direction: Direction | None = field(default=None, repr=False)
    _model: str | None = field(default=None, repr=False)

    # The runner may tell us the model (optional): then the default direction file is that model's.
    def bind_model(self, spec: str) -> None:
        self._model = spec[3:] if spec.startswith("hf/") else spec

    @property
    def direction(self) -> Direction:
        if self._direction is None:
            self._direction = self._load()
        return self._direction

    def _resolve_path(self) -> Path:
        if self.direction_path is not None:
            return self.direction_path
        if self.layer is None:
            raise VscbenchError(f"--calibration '{self.spec}': give layer=L or direction=FILE")
        self._check_layer_exists()
        if self._model is not None:
            p = default_direction_path(self._model, self.layer)
            if p.is_file():
                return p
        found = sorted(directions_dir().glob(f"*.layer{self.layer}.safetensors"))
        if len(found) == 1:
            return found[0]
        model = f"hf/{self._model}" if self._model is not None else "hf/MODEL"
        hint = f"run vscbench calibrate fit -m {model} --layer {self.layer}, or pass direction=FILE"
        if not found:
            raise VscbenchError(
                f"--calibration '{self.spec}': no direction for layer {self.layer} in {directions_dir()}: {hint}"
            )
        names = ", ".join(p.name for p in found)
        raise VscbenchError(
            f"--calibration '{self.spec}': several directions for layer {self.layer} in {directions_dir()} ({names}): pass direction=FILE"
        )

    def _check_layer_exists(self) -> None:
        """With a bound model whose config is readable: the layer must be one it has (0..N-1)."""
        if self.layer is None or self._model is None:
            return
        n = config_num_layers(self._model)
        if n is not None and not 0 <= self.layer < n:
            raise VscbenchError(
                f"--calibration '{self.spec}': layer {self.layer} does not exist: hf/{self._model} has "
                f"{n} decoder layers (0..{n - 1})"
            )

    def _load(self) -> Direction:
        self._check_layer_exists()
        d = load_direction(self._resolve_path())
        if self.layer is not None and d.layer != self.layer:
            raise VscbenchError(
                f"--calibration '{self.spec}': direction file {d.path} was fitted at layer {d.layer}, not {self.layer}"
            )
        if self.layer is None:
            self.layer = d.layer
            self._check_layer_exists()
        if self.method == "revise" and self.threshold is None:
            if d.suggested_threshold is None:
                raise VscbenchError(f"--calibration '{self.spec}': give threshold=T (the file suggests none)")
            self.threshold = d.suggested_threshold
        return d

    def excluded_query_ids(self) -> frozenset[str]:
        """Queries used to fit the direction: a runner should leave their items out of the evaluation."""
        return self.direction.query_ids

    def prepare(self, items: Sequence[Item]) -> None:
        overlap = sorted({i.query_id for i in items} & self.direction.query_ids)
        if overlap:
            shown = ", ".join(overlap[:3]) + (" ..." if len(overlap) > 3 else "")
            raise VscbenchError(
                f"--calibration '{self.spec}': {len(overlap)} evaluated queries ({shown}) were used to fit "
                f"{self.direction.path}: leave them out of the run or refit on other queries"
            )

    def steering_spec(self) -> dict[str, Any]:
        d = self.direction
        return {
            "method": self.method,
            "layer": d.layer,
            "alpha": self.alpha,
            "threshold": self.threshold if self.method == "revise" else None,
            "direction": str(d.path),
            "sha256": d.sha256,
        }

    def apply(self, item: Item, request: Request) -> Request:
        if item.query_id in self.direction.query_ids:
            raise VscbenchError(
                f"--calibration '{self.spec}': item {item.id} shares query {item.query_id} with the direction's calibration split"
            )
        if "steering" in request.extra:
            raise VscbenchError(f"--calibration '{self.spec}': only one of steer/revise can be used in a run")
        return replace(request, extra={**request.extra, "steering": self.steering_spec()})

    def manifest(self) -> dict[str, Any]:
        d = self.direction
        keep = (
            "model",
            "layer",
            "hidden_size",
            "seed",
            "n_queries",
            "n_safe",
            "n_unsafe",
            "vscbench",
            "norm",
            "suggested_threshold",
            "projection_safe",
            "projection_unsafe",
            "created",
        )
        return {
            "method": self.method,
            "spec": self.spec,
            **{k: v for k, v in self.steering_spec().items() if k != "method"},
            "artifact": self.artifact_name(),
            "fitted": {k: d.provenance.get(k) for k in keep},
            "calibration_query_ids": sorted(d.query_ids),
        }

    def artifact_name(self) -> str:
        return f"direction-{self.direction.sha256[:12]}.safetensors"

    def artifacts(self) -> dict[str, tuple[bytes, str]]:
        return {self.artifact_name(): (self.direction.data, "application/octet-stream")}


_OPTIONS = {"steer": {"layer", "alpha", "direction"}, "revise": {"layer", "alpha", "threshold", "direction"}}


def _number(spec: str, key: str, value: str, kind: type[int] | type[float]) -> Any:
    try:
        x = kind(value)
    except ValueError:
        raise VscbenchError(
            f"--calibration '{spec}': {key}={value} is not {'an integer' if kind is int else 'a number'}"
        ) from None
    if isinstance(x, float) and not math.isfinite(x):
        raise VscbenchError(f"--calibration '{spec}': {key} must be finite")
    return x


def _factory(method: str) -> Any:
    def make(opts: dict[str, str], spec: str) -> Calibration:
        unknown = sorted(set(opts) - _OPTIONS[method])
        if unknown:
            allowed = ", ".join(sorted(_OPTIONS[method]))
            raise VscbenchError(f"--calibration '{spec}': unknown option {unknown[0]} (allowed: {allowed})")
        if "alpha" not in opts:
            raise VscbenchError(
                f"--calibration '{spec}': alpha=A is required (e.g. {method}:layer=1,alpha=-4)"
            )
        layer = _number(spec, "layer", opts["layer"], int) if "layer" in opts else None
        if layer is not None and layer < 0:
            raise VscbenchError(f"--calibration '{spec}': layer must be >= 0")
        threshold = _number(spec, "threshold", opts["threshold"], float) if "threshold" in opts else None
        return SteeringCalibration(
            spec=spec,
            method=method,
            alpha=_number(spec, "alpha", opts["alpha"], float),
            layer=layer,
            threshold=threshold,
            direction_path=Path(opts["direction"]).expanduser() if opts.get("direction") else None,
        )

    return make


FACTORIES["steer"] = _factory("steer")
FACTORIES["revise"] = _factory("revise")


# ---- applying (used by the hf provider) -------------------------------------------------------------------
@dataclass
class HookState:
    """What the steering hook saw in one generate call: per input, its projection and whether it was steered."""

    method: str
    threshold: float | None
    projections: list[float] | None = None
    steered: list[bool] | None = None
    calls: int = 0

    def record(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method}
        if self.projections is not None:
            out["projection"] = round(self.projections[i], 6)
        if self.steered is not None:
            out["steered"] = self.steered[i]
        return out


_direction_cache: dict[tuple[str, str], Direction] = {}


def cached_direction(path: str, sha256: str) -> Direction:
    key = (path, sha256)
    if key not in _direction_cache:
        d = load_direction(path)
        if d.sha256 != sha256:
            raise VscbenchError(f"direction file {path} changed since the run started (sha256 differs)")
        _direction_cache[key] = d
    return _direction_cache[key]


def make_hook(spec: dict[str, Any], hidden_size: int, device: Any) -> tuple[Any, HookState]:
    """The forward-hook function ``spec`` describes, and the state it fills (for one generate call).

    On the first call (the prompt pass) both methods measure the projection of each row's last-position
    output (the last prompt token, before any change) on the unit direction and record it. ``steer``:
    output += alpha * direction at every position of every row (all recorded as steered). ``revise``: rows
    with projection > threshold get output += alpha * direction on that and every later call; other rows are
    returned untouched (``torch.where`` keeps their values bit for bit).
    """
    torch = require("torch", "hf")
    d = cached_direction(str(spec["direction"]), str(spec["sha256"]))
    if d.vector.shape[0] != hidden_size:
        raise VscbenchError(
            f"direction {spec['direction']} has size {d.vector.shape[0]}, this model's hidden size is {hidden_size}"
        )
    method = str(spec["method"])
    threshold = None if spec.get("threshold") is None else float(spec["threshold"])
    state = HookState(method=method, threshold=threshold)
    delta = (float(spec["alpha"]) * torch.from_numpy(d.vector.copy())).to(device)
    unit = torch.from_numpy(d.unit.copy()).to(device)
    masks: list[Any] = []

    def hook(_module: Any, _args: Any, output: Any) -> Any:
        hs = output[0] if isinstance(output, tuple) else output
        add = delta.to(hs.dtype)
        if state.calls == 0:
            proj = hs[:, -1, :].float() @ unit
            state.projections = [float(x) for x in proj.tolist()]
            if method == "revise":
                mask = proj > (threshold if threshold is not None else 0.0)
                state.steered = [bool(x) for x in mask.tolist()]
                masks.append(mask.view(-1, 1, 1))
            else:
                state.steered = [True] * len(state.projections)
        new = torch.where(masks[0], hs + add, hs) if method == "revise" else hs + add
        state.calls += 1
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook, state
