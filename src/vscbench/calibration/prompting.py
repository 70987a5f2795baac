"""Prompt-based calibration: ``reminder`` (a system prompt) and ``fewshot`` (demonstration turns).

Both change only what is sent, never the model, so they work with every provider.

``reminder[:file=PATH]``
    Adds a system prompt asking the model to decline what is harmful and to help fully with what is benign even
    when it looks risky. The text is ``assets/reminder.txt`` unless ``file=`` names another UTF-8 file. An
    existing system prompt is kept and the reminder is appended after a blank line.

``fewshot:k=N[,seed=S][,pool=PATH]``
    Puts N contrastive pairs of demonstrations before the item's user turn: a benign request with the desired
    helpful answer and a harmful request with the desired decline, each user turn carrying the pair's image.
    The pool is ``assets/fewshot_pool.json`` (pairs written for vscbench, images rendered as typography cards)
    or a JSON file of the same shape. Invariants:

    - no demonstration shares a query with an evaluated item: :meth:`FewShot.prepare` drops every pool pair
      whose ``query_ids`` or (normalised) query text meets an evaluated item's, and only then draws;
    - the draw is a pure function of (pool, evaluated items, k, seed), one draw per run, same demos for every
      item; the pool ids, the excluded ids and the draw go to :meth:`FewShot.manifest`, the exact turns (texts,
      image names and SHA-256) and the images to :meth:`FewShot.artifacts`;
    - ``Request.extra["demo_turns"]`` says how many leading turns are demonstrations. Images stay in those turns;
      the contract for a provider whose ``images_in_history`` is False is to drop them and send the texts
      unchanged (every provider in :mod:`vscbench.models` takes them today).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from vscbench.calibration.base import FACTORIES
from vscbench.errors import VscbenchError
from vscbench.hashing import sha256_file
from vscbench.types import Item, Request, Turn

#: Key in ``Request.extra``: the number of leading turns that are demonstrations.
DEMO_TURNS_KEY = "demo_turns"
#: Bumped when the card renderer changes, so cached cards are re-rendered.
_CARD_VERSION = "1"


def _asset(name: str) -> bytes:
    return (resources.files("vscbench.calibration") / "assets" / name).read_bytes()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_options(spec: str, opts: dict[str, str], allowed: Sequence[str]) -> None:
    for key in opts:
        if key not in allowed:
            names = ", ".join(allowed) or "none"
            raise VscbenchError(f"--calibration '{spec}': unknown option '{key}' (allowed: {names})")


def _read_file(spec: str, path: str) -> bytes:
    p = Path(path).expanduser()
    try:
        return p.read_bytes()
    except OSError as exc:
        raise VscbenchError(f"--calibration '{spec}': cannot read {p} ({exc.strerror or exc})") from exc


def _int_option(spec: str, opts: dict[str, str], key: str, default: int | None, minimum: int) -> int:
    raw = opts.get(key)
    if raw is None:
        if default is None:
            raise VscbenchError(f"--calibration '{spec}': option '{key}' is required (e.g. fewshot:k=2)")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise VscbenchError(
            f"--calibration '{spec}': option '{key}' must be an integer, got '{raw}'"
        ) from None
    if value < minimum:
        raise VscbenchError(f"--calibration '{spec}': option '{key}' must be at least {minimum}, got {value}")
    return value


# ==== reminder =======================================================================================
class Reminder:
    """A system prompt; composes with an existing one (existing text first, then a blank line, then this)."""

    requires_activations = False

    def __init__(self, opts: dict[str, str], spec: str) -> None:
        _check_options(spec, opts, ("file",))
        self.spec = spec
        if "file" in opts:
            data = _read_file(spec, opts["file"])
            self.source = str(Path(opts["file"]).expanduser().resolve())
        else:
            data = _asset("reminder.txt")
            self.source = "builtin:reminder.txt"
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise VscbenchError(f"--calibration '{spec}': {self.source} is not UTF-8 text") from None
        if not text:
            raise VscbenchError(f"--calibration '{spec}': {self.source} is empty")
        self.text = text

    def prepare(self, items: Sequence[Item]) -> None:
        return None

    def apply(self, item: Item, request: Request) -> Request:
        system = f"{request.system}\n\n{self.text}" if request.system else self.text
        return replace(request, system=system)

    def manifest(self) -> dict[str, Any]:
        return {
            "method": "reminder",
            "spec": self.spec,
            "source": self.source,
            "sha256": _sha256(self.text.encode("utf-8")),
            "text": self.text,
        }

    def artifacts(self) -> dict[str, tuple[bytes, str]]:
        return {"reminder.txt": (self.text.encode("utf-8"), "text/plain; charset=utf-8")}


# ==== fewshot ========================================================================================
@dataclass(frozen=True)
class Demo:
    """One request with its desired answer."""

    query: str
    answer: str


@dataclass(frozen=True)
class DemoPair:
    """A benign and a harmful request sharing one image (or none).

    ``query_ids`` are the benchmark query ids the pair was taken from, if any (built-in pairs have none);
    ``image`` is a file path, ``image_text`` the words rendered into a card when there is no file.
    """

    id: str
    safe: Demo
    unsafe: Demo
    image: str | None = None
    image_text: str | None = None
    query_ids: tuple[str, ...] = ()


def normalise_query(text: str) -> str:
    """Case-, accent-, punctuation- and whitespace-insensitive form used to compare queries."""
    t = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    t = re.sub(r"[^a-z0-9]+", " ", t)
    return " ".join(t.split())


def _pool_error(source: str, where: str, what: str) -> VscbenchError:
    return VscbenchError(f"fewshot pool {source}: {where}: {what}")


def _demo(source: str, where: str, obj: Any) -> Demo:
    if not isinstance(obj, dict):
        raise _pool_error(source, where, "must be an object with 'query' and 'answer'")
    q, a = obj.get("query"), obj.get("answer")
    if not isinstance(q, str) or not q.strip() or not isinstance(a, str) or not a.strip():
        raise _pool_error(source, where, "'query' and 'answer' must be non-empty strings")
    return Demo(query=q.strip(), answer=a.strip())


def parse_pool(data: bytes, source: str, base_dir: Path | None) -> list[DemoPair]:
    """Parse a pool file. ``image`` paths are relative to ``base_dir`` and must exist."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VscbenchError(f"fewshot pool {source}: not valid UTF-8 JSON ({exc})") from None
    pairs_raw = doc.get("pairs") if isinstance(doc, dict) else None
    if not isinstance(pairs_raw, list) or not pairs_raw:
        raise VscbenchError(f"fewshot pool {source}: needs a non-empty list 'pairs'")
    pairs: list[DemoPair] = []
    seen: set[str] = set()
    for n, raw in enumerate(pairs_raw):
        where = f"pairs[{n}]"
        if not isinstance(raw, dict):
            raise _pool_error(source, where, "must be an object")
        pid = raw.get("id")
        if not isinstance(pid, str) or not pid.strip():
            raise _pool_error(source, where, "needs a string 'id'")
        if pid in seen:
            raise _pool_error(source, where, f"duplicate id '{pid}'")
        seen.add(pid)
        image = raw.get("image")
        if image is not None:
            if not isinstance(image, str):
                raise _pool_error(source, where, "'image' must be a path string")
            p = Path(image) if base_dir is None else base_dir / image
            if not p.is_file():
                raise _pool_error(source, where, f"image {p} not found")
            image = str(p.resolve())
        image_text = raw.get("image_text")
        if image_text is not None and (not isinstance(image_text, str) or not image_text.strip()):
            raise _pool_error(source, where, "'image_text' must be a non-empty string")
        qids = raw.get("query_ids", [])
        if not isinstance(qids, list) or not all(isinstance(q, str) for q in qids):
            raise _pool_error(source, where, "'query_ids' must be a list of strings")
        pairs.append(
            DemoPair(
                id=pid,
                safe=_demo(source, f"{where}.safe", raw.get("safe")),
                unsafe=_demo(source, f"{where}.unsafe", raw.get("unsafe")),
                image=image,
                image_text=image_text,
                query_ids=tuple(qids),
            )
        )
    return pairs


def split_pool(pool: Sequence[DemoPair], items: Sequence[Item]) -> tuple[list[DemoPair], list[str]]:
    """(eligible pairs, ids of excluded pairs): a pair is excluded when one of its query ids is an evaluated
    item's ``query_id`` or one of its two queries equals an evaluated item's query after normalisation."""
    qids = {it.query_id for it in items}
    texts = {normalise_query(it.query) for it in items}
    eligible: list[DemoPair] = []
    excluded: list[str] = []
    for pair in pool:
        clash = any(q in qids for q in pair.query_ids) or any(
            normalise_query(d.query) in texts for d in (pair.safe, pair.unsafe)
        )
        if clash:
            excluded.append(pair.id)
        else:
            eligible.append(pair)
    return eligible, excluded


def draw_pairs(
    pool: Sequence[DemoPair], excluded: Sequence[str], k: int, seed: int
) -> list[tuple[DemoPair, tuple[str, str]]]:
    """Draw k pairs not in ``excluded`` and, per pair, which of its two demos comes first.

    A seeded shuffle of the whole pool (sorted by id) fixes a preference order and each pair's demo order;
    the draw is the first k pairs of that order that are not excluded. So it depends only on the pool ids,
    the excluded ids, k and the seed, and excluding more pairs changes it only where a drawn pair is excluded
    (a run resumed with more items keeps its demonstrations unless they would now clash).
    """
    ordered = sorted(pool, key=lambda p: p.id)
    rng = random.Random(f"vscbench-fewshot:{seed}")
    rng.shuffle(ordered)
    orders = {p.id: (("safe", "unsafe") if rng.random() < 0.5 else ("unsafe", "safe")) for p in ordered}
    skip = set(excluded)
    chosen = [p for p in ordered if p.id not in skip][:k]
    return [(p, orders[p.id]) for p in chosen]


def render_card(text: str, size: int = 336) -> bytes:
    """A white square PNG with ``text`` centred in black (Pillow's bundled font): deterministic bytes."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((6, 6, size - 7, size - 7), outline="black", width=4)
    font = ImageFont.load_default(size=size // 9)
    lines = text.split()
    heights = [draw.textbbox((0, 0), w, font=font) for w in lines]
    line_h = max(b[3] - b[1] for b in heights) + size // 30
    y = (size - line_h * len(lines)) // 2
    for word, box in zip(lines, heights, strict=True):
        x = (size - (box[2] - box[0])) // 2 - box[0]
        draw.text((x, y - box[1]), word, fill="black", font=font)
        y += line_h

    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _card_dir() -> Path:
    from vscbench.data.paths import default_root

    return default_root() / "calibration" / "fewshot"


def _card_path(text: str) -> Path:
    """Render ``text`` once into the cache (atomic write) and return the file."""
    key = _sha256(f"{_CARD_VERSION}\0{text}".encode())[:16]
    path = _card_dir() / f"card-{key}.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(render_card(text))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


class FewShot:
    """``fewshot:k=N[,seed=S][,pool=PATH]``; see the module docstring for the invariants."""

    requires_activations = False

    def __init__(self, opts: dict[str, str], spec: str) -> None:
        _check_options(spec, opts, ("k", "seed", "pool"))
        self.spec = spec
        self.k = _int_option(spec, opts, "k", None, 1)
        self.seed = _int_option(spec, opts, "seed", 0, 0)
        if "pool" in opts:
            raw = _read_file(spec, opts["pool"])
            path = Path(opts["pool"]).expanduser().resolve()
            self.pool_source = str(path)
            self.pool = parse_pool(raw, self.pool_source, path.parent)
        else:
            raw = _asset("fewshot_pool.json")
            self.pool_source = "builtin:fewshot_pool.json"
            self.pool = parse_pool(raw, self.pool_source, None)
        self.pool_sha256 = _sha256(raw)
        if self.k > len(self.pool):
            raise VscbenchError(
                f"--calibration '{spec}': k={self.k} but the pool {self.pool_source} has {len(self.pool)} pairs"
            )
        self._excluded: list[str] | None = None
        self._draw: list[tuple[DemoPair, tuple[str, str]]] = []
        self._images: dict[str, Path] = {}  # pair id -> image file
        self._turns: tuple[Turn, ...] = ()
        self._turn_pairs: tuple[str, ...] = ()  # pair id of each turn

    # -- the draw ---------------------------------------------------------------------------------
    def prepare(self, items: Sequence[Item]) -> None:
        eligible, excluded = split_pool(self.pool, items)
        if len(eligible) < self.k:
            raise VscbenchError(
                f"--calibration '{self.spec}': only {len(eligible)} pool pairs share no query with the "
                f"evaluated items (k={self.k}); lower k or pass a larger pool=PATH"
            )
        draw = draw_pairs(self.pool, excluded, self.k, self.seed)
        images: dict[str, Path] = {}
        turns: list[Turn] = []
        turn_pairs: list[str] = []
        for pair, order in draw:
            if pair.image:
                images[pair.id] = Path(pair.image)
            elif pair.image_text:
                images[pair.id] = _card_path(pair.image_text)
            shown = (str(images[pair.id]),) if pair.id in images else ()
            for which in order:
                demo = pair.safe if which == "safe" else pair.unsafe
                turns += [
                    Turn(role="user", text=demo.query, images=shown),
                    Turn(role="assistant", text=demo.answer),
                ]
                turn_pairs += [pair.id, pair.id]
        self._excluded, self._draw, self._images = excluded, draw, images
        self._turns, self._turn_pairs = tuple(turns), tuple(turn_pairs)

    @property
    def turns(self) -> tuple[Turn, ...]:
        """The demonstration turns, in the order sent (after :meth:`prepare`)."""
        return self._turns

    def apply(self, item: Item, request: Request) -> Request:
        if self._excluded is None:
            raise RuntimeError("FewShot.apply called before prepare(items)")
        turns = (*request.turns[:-1], *self._turns, request.turns[-1])
        extra = dict(request.extra)
        extra[DEMO_TURNS_KEY] = int(extra.get(DEMO_TURNS_KEY, 0)) + len(self._turns)
        return replace(request, turns=turns, extra=extra)

    # -- records ----------------------------------------------------------------------------------
    @staticmethod
    def image_artifact(pair_id: str) -> str:
        """Artifact name of a drawn pair's image."""
        return f"fewshot/{pair_id}.png"

    def demos_record(self) -> dict[str, Any]:
        """The exact demonstration turns: role, text, image artifact names and SHA-256 of their bytes."""
        digests = {pid: sha256_file(p) for pid, p in self._images.items()}
        turns = [
            {
                "pair": pid,
                "role": turn.role,
                "text": turn.text,
                "images": [self.image_artifact(pid) for _ in turn.images],
                "image_sha256": [digests[pid] for _ in turn.images],
            }
            for turn, pid in zip(self._turns, self._turn_pairs, strict=True)
        ]
        return {"spec": self.spec, "turns": turns}

    def manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": "fewshot",
            "spec": self.spec,
            "k": self.k,
            "seed": self.seed,
            "pool": {
                "source": self.pool_source,
                "sha256": self.pool_sha256,
                "pair_ids": [p.id for p in self.pool],
                "excluded": self._excluded,
            },
        }
        if self._excluded is not None:
            out["draw"] = [{"pair": p.id, "order": list(order)} for p, order in self._draw]
            out["demo_turns"] = len(self._turns)
            out["demos_sha256"] = _sha256(json.dumps(self.demos_record(), sort_keys=True).encode("utf-8"))
        return out

    def artifacts(self) -> dict[str, tuple[bytes, str]]:
        """``fewshot/demos.json`` (the exact turns) and each drawn pair's image; empty before prepare."""
        if self._excluded is None:
            return {}
        from vscbench.data.images import sniff_mime

        out: dict[str, tuple[bytes, str]] = {
            "fewshot/demos.json": (
                json.dumps(self.demos_record(), sort_keys=True, indent=1).encode("utf-8"),
                "application/json",
            )
        }
        for pid, path in self._images.items():
            data = path.read_bytes()
            out[self.image_artifact(pid)] = (data, sniff_mime(data) or "application/octet-stream")
        return out


FACTORIES["reminder"] = Reminder
FACTORIES["fewshot"] = FewShot
