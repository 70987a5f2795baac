"""The calibration interface and the plain request.

A calibration method changes what is sent for an item: ``reminder`` adds a system prompt, ``fewshot`` adds
demonstration turns, ``steer``/``revise`` attach an activation-steering spec in ``Request.extra`` that the
``hf/`` provider applies through forward hooks. Methods compose left to right.

Registry: ``parse_calibrations(["reminder", "fewshot:k=2"])`` -> list of Calibration objects. Each method
module registers a factory in :data:`FACTORIES` (name -> callable taking the option dict).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from vscbench.errors import VscbenchError
from vscbench.types import GenConfig, Item, Request, Turn


@runtime_checkable
class Calibration(Protocol):
    """One calibration method with its options bound."""

    #: The spec as given, e.g. ``fewshot:k=2``.
    spec: str
    #: True for methods that need model internals (only ``hf/`` providers can run them).
    requires_activations: bool

    def prepare(self, items: Sequence[Item]) -> None:
        """Called once with every evaluated item before the first request (e.g. to draw demonstrations
        from a pool that shares no query with them)."""
        ...

    def apply(self, item: Item, request: Request) -> Request:
        """Return the request with this method applied."""
        ...

    def manifest(self) -> dict[str, Any]:
        """What the run manifest records: options, exact texts, draws, hashes of vectors."""
        ...

    def artifacts(self) -> dict[str, tuple[bytes, str]]:
        """Files stored beside the run: name -> (bytes, media type)."""
        ...


#: name -> factory(options) ; filled by the method modules imported in :func:`_load_methods`.
FACTORIES: dict[str, Callable[[dict[str, str], str], Calibration]] = {}


def _load_methods() -> None:
    import importlib

    for mod in ("vscbench.calibration.prompting", "vscbench.calibration.steering"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``name:key=value,key=value`` -> (name, options)."""
    name, _, rest = spec.partition(":")
    opts: dict[str, str] = {}
    if rest:
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise VscbenchError(f"--calibration '{spec}': option '{part}' must be key=value")
            opts[key.strip()] = value.strip()
    return name.strip(), opts


def parse_calibrations(specs: Sequence[str] | None) -> list[Calibration]:
    _load_methods()
    out: list[Calibration] = []
    for spec in specs or ():
        name, opts = parse_spec(spec)
        if name not in FACTORIES:
            known = ", ".join(sorted(FACTORIES)) or "none installed"
            raise VscbenchError(f"--calibration '{spec}': unknown method '{name}' (known: {known})")
        out.append(FACTORIES[name](opts, spec))
    return out


def plain_request(item: Item, config: GenConfig) -> Request:
    """The uncalibrated request: the item's query and image as one user turn, and the item's own system
    prompt if it has one (an own case's ``system``; a ``reminder`` is appended after it)."""
    images = (item.image,) if item.image else ()
    turns = (Turn(role="user", text=item.query, images=images),)
    return Request(item_id=item.id, turns=turns, system=item.system, config=config)


def build_request(item: Item, config: GenConfig, calibrations: Sequence[Calibration] = ()) -> Request:
    req = plain_request(item, config)
    for cal in calibrations:
        req = cal.apply(item, req)
    return req
