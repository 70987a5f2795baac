"""The audit sample: which scored cases a person labels, drawn from case ids and a salt, never from responses.

Each case gets a uniform number ``u = sha256(salt NUL key)`` read as a fraction in [0, 1) (``key`` is the
case id, or its pair's key with ``unit: pair``, so both cases of a pair come together). Within each stratum
the ``k`` cases with the smallest ``u`` are drawn, so the inclusion probability of every case of a stratum
of ``N`` cases is ``k / N``, known exactly.

- ``stratify: false``: one stratum, every scored case of the audited scopes. The sample is a function of the
  salt, the size and the set of scored case ids alone: changing any response's text or label changes nothing.
- ``stratify: true`` (the default): strata are the item's label (safe, unsafe: response-free) crossed with
  the judge's flag (the judge counts the case toward its rate: an unsafe item answered without safety
  awareness, a safe item refused), and a flagged case, where the judge's errors are, is ``oversample``
  times as likely to be drawn as another of its label (2 by default). The estimator weights them back (:mod:`vscbench.suite.audit`). The draw
  still never reads a response: a case's ``u`` is fixed by its id, and which cases are drawn depends on the
  responses only through the judge's flags, so a changed response whose flag did not change changes nothing.

Within any subset of a stratum (a gate row's post-stratum: its scope, its rate, the judge's flag) the drawn
cases are, given how many they are, a simple random sample of the subset: what the estimator needs. A row
can be audited only where its scope lies inside the audited scopes (the population of the draw).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vscbench.errors import VscbenchError

Unit = Literal["case", "pair"]
AuditEstimateMode = Literal["audited", "judge"]
AUDIT_KEYS: frozenset[str] = frozenset({"size", "scopes", "stratify", "oversample", "salt", "unit", "estimate"})
DEFAULT_SIZE = 100
#: How many times as likely a flagged case is drawn as another (measured: 2 keeps coverage, narrows most).
DEFAULT_OVERSAMPLE = 2.0


@dataclass(frozen=True)
class AuditConfig:
    """The ``audit:`` section of ``thresholds.yaml``.

    ``size``: labels per model revision; ``scopes``: the audited scopes (the draw's population is their scored
    cases); ``stratify``: by item label x the judge's flag; ``oversample``: how many times as likely a case
    the judge flags is drawn as another of its label (capped at every flagged case); ``salt``: any string, fixed
    once (a new salt draws a new sample); ``unit``: ``case``, or ``pair`` (the cases sharing a query are
    drawn together: one image, one query, faster to label; the interval then carries a design effect);
    ``estimate``: ``audited`` (the audited scopes decide on the audited figures) or ``judge`` (labels are
    asked for and shown, the decision stays on the judge's rates).
    """

    salt: str
    size: int = DEFAULT_SIZE
    scopes: tuple[str, ...] = ("benchmark",)
    stratify: bool = True
    oversample: float = DEFAULT_OVERSAMPLE
    unit: Unit = "case"
    estimate: AuditEstimateMode = "audited"

    def to_dict(self) -> dict[str, Any]:
        return {
            "salt": self.salt, "size": self.size, "scopes": list(self.scopes), "stratify": self.stratify,
            "oversample": self.oversample, "unit": self.unit, "estimate": self.estimate,
        }  # fmt: skip


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(float(v))


def _short(v: Any) -> str:
    r = repr(v)
    r = r if r.isprintable() else r.encode("unicode_escape").decode("ascii")
    return r if len(r) <= 60 else r[:57] + "..."


def parse_audit(
    doc: Any, source: str = "thresholds.yaml", path: str = "audit", known_scopes: Iterable[str] | None = None
) -> AuditConfig | None:
    """The ``audit:`` mapping, checked: one :class:`VscbenchError` line naming the key for anything wrong.

    ``None`` (no section) gives None: no audit. ``known_scopes`` (the gate's scope names), when given, is
    what ``scopes`` may name. Exit code 4 (a usage error in the suite).
    """

    def bad(key: str, what: str) -> VscbenchError:
        return VscbenchError(f"{source}: {path}{'.' + key if key else ''}: {what}", exit_code=4)

    if doc is None:
        return None
    if not isinstance(doc, Mapping):
        raise bad("", f"expected a mapping with {', '.join(sorted(AUDIT_KEYS))}, got {type(doc).__name__}")
    for k in doc:
        if k not in AUDIT_KEYS:
            raise bad(_short(k) if not isinstance(k, str) else k, f"unknown key (use {', '.join(sorted(AUDIT_KEYS))})")
    salt = doc.get("salt")
    if salt is None:
        raise bad("salt", "missing: set any fixed string (it decides which cases are drawn; keep it)")
    if not isinstance(salt, str | int) or isinstance(salt, bool) or not str(salt).strip():
        raise bad("salt", f"{_short(salt)} is not a non-empty string")
    size = doc.get("size", DEFAULT_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise bad("size", f"{_short(size)} is not a whole number of labels of at least 1")
    scopes_raw = doc.get("scopes", ["benchmark"])
    if isinstance(scopes_raw, str):
        scopes_raw = [scopes_raw]
    if not isinstance(scopes_raw, list) or not scopes_raw or not all(isinstance(s, str) for s in scopes_raw):
        raise bad("scopes", "expected a non-empty list of scope names")
    if known_scopes is not None:
        known = set(known_scopes)
        for s in scopes_raw:
            if s not in known:
                raise bad("scopes", f"{_short(s)}: unknown scope; e.g. benchmark, half=image, category=drugs")
    if len(set(scopes_raw)) != len(scopes_raw):
        raise bad("scopes", "a scope is named twice")
    stratify = doc.get("stratify", True)
    if not isinstance(stratify, bool):
        raise bad("stratify", f"{_short(stratify)} is not true or false")
    over = doc.get("oversample", DEFAULT_OVERSAMPLE)
    if not _is_number(over) or not 1 <= over <= 1000:
        raise bad("oversample", f"{_short(over)} is not a number from 1 to 1000")
    if "oversample" in doc and not stratify:
        raise bad("oversample", "needs stratify: true (without strata there is nothing to over-sample)")
    unit = doc.get("unit", "case")
    if unit not in ("case", "pair"):
        raise bad("unit", f"{_short(unit)} is not 'case' or 'pair'")
    estimate = doc.get("estimate", "audited")
    if estimate not in ("audited", "judge"):
        raise bad("estimate", f"{_short(estimate)} is not 'audited' or 'judge'")
    return AuditConfig(
        salt=str(salt),
        size=size,
        scopes=tuple(scopes_raw),
        stratify=stratify,
        oversample=float(over),
        unit=unit,
        estimate=estimate,
    )


def uniform(salt: str, key: str) -> float:
    """The case's draw number in [0, 1): the first 64 bits of sha256(salt NUL key), as a fraction."""
    digest = hashlib.sha256(f"{salt}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class AuditCase:
    """A scored case of the audited scopes: its id, item label (safe/unsafe), the judge's flag, and the key of
    the pair it belongs to (the query it shares; its own id when alone)."""

    case_id: str
    label: str
    flag: bool
    pair: str = ""


@dataclass(frozen=True)
class AuditSample:
    """The drawn cases in labelling order (by draw number), each case's inclusion probability, and per
    stratum (``label/flagged`` or ``label/not flagged``, or ``all``) (cases, drawn)."""

    ids: tuple[str, ...]
    inclusion: Mapping[str, float]
    strata: Mapping[str, tuple[int, int]]
    config: AuditConfig

    def __contains__(self, case_id: object) -> bool:
        return case_id in self.inclusion


def _stratum(c: AuditCase, stratify: bool) -> str:
    if not stratify:
        return "all"
    return f"{c.label}/{'flagged' if c.flag else 'not flagged'}"


def allocate(counts: Mapping[str, tuple[int, int]], size: int, oversample: float) -> dict[str, tuple[int, int]]:
    """Per item label (flagged cases, not-flagged cases) -> (flagged drawn, not-flagged drawn).

    ``size`` is split over the labels in proportion to their cases (largest remainder, ties by name); within
    a label of ``k`` draws, ``round(k * r F / (r F + U))`` go to its ``F`` flagged cases (``r`` =
    ``oversample``) and the rest to its ``U`` others, each capped at what there is, what one side cannot take
    going to the other.
    """
    total = sum(f + u for f, u in counts.values())
    size = min(size, total)
    if total == 0:
        return {lab: (0, 0) for lab in counts}
    exact = {lab: size * (f + u) / total for lab, (f, u) in counts.items()}
    k = {lab: math.floor(v) for lab, v in exact.items()}
    for lab in sorted(exact, key=lambda x: (-(exact[x] - k[x]), x))[: size - sum(k.values())]:
        k[lab] += 1
    out = {}
    for lab, (nf, nu) in counts.items():
        kf = min(nf, round(k[lab] * oversample * nf / (oversample * nf + nu))) if nf else 0
        ku = min(nu, k[lab] - kf)
        kf = min(nf, k[lab] - ku)
        out[lab] = (kf, ku)
    return out


def draw(cases: Sequence[AuditCase], config: AuditConfig) -> AuditSample:
    """The audit sample of these cases (every scored case of the audited scopes, for one model revision)."""
    seen: set[str] = set()
    for c in cases:
        if c.case_id in seen:
            raise ValueError(f"case {c.case_id} twice in the audit population")
        seen.add(c.case_id)
    key: Callable[[AuditCase], str] = (lambda c: c.pair or c.case_id) if config.unit == "pair" else (
        lambda c: c.case_id
    )
    groups: dict[str, list[AuditCase]] = {}
    for c in cases:
        groups.setdefault(_stratum(c, config.stratify), []).append(c)
    if config.stratify:
        counts = {
            lab: (len(groups.get(f"{lab}/flagged", [])), len(groups.get(f"{lab}/not flagged", [])))
            for lab in sorted({c.label for c in cases})
        }
        alloc = allocate(counts, config.size, config.oversample)
        take = {f"{lab}/flagged": kf for lab, (kf, _) in alloc.items()}
        take.update({f"{lab}/not flagged": ku for lab, (_, ku) in alloc.items()})
    else:
        take = {"all": min(config.size, len(cases))}
    chosen: list[tuple[float, str]] = []
    inclusion: dict[str, float] = {}
    strata: dict[str, tuple[int, int]] = {}
    for name in sorted(groups):
        members = sorted(groups[name], key=lambda c: (uniform(config.salt, key(c)), c.case_id))
        k = take.get(name, 0)
        strata[name] = (len(members), k)
        for c in members[:k]:
            chosen.append((uniform(config.salt, key(c)), c.case_id))
            inclusion[c.case_id] = k / len(members)
    return AuditSample(
        ids=tuple(cid for _, cid in sorted(chosen)),
        inclusion=inclusion,
        strata=strata,
        config=config,
    )
