"""``--model`` values: an alias from ``models.yaml``, an engine spec, or a local checkpoint folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from vscbench.errors import VscbenchError

#: Engine spec prefixes (``vscbench.models``).
PROVIDERS: tuple[str, ...] = ("hf", "openai", "openai-compatible", "anthropic", "google", "vllm")
#: Keys an alias entry may carry besides ``spec``.
ENTRY_KEYS: frozenset[str] = frozenset(
    {"spec", "device", "dtype", "batch_size", "concurrency", "rpm", "max_tokens", "temperature", "note", "revision",
     "serve", "vllm_args"}
)
#: ``serve:`` values: how an ``hf/`` checkpoint is served instead of in process.
SERVE_ENGINES: tuple[str, ...] = ("vllm",)
#: The spec of the offline tiny model: built on this machine, randomly initialised, meaningless.
TINY = "tiny"


@dataclass(frozen=True)
class ResolvedModel:
    """What ``--model`` named: its alias (if any), the engine spec, and the alias entry's options."""

    given: str
    spec: str
    alias: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """Names a thresholds entry or a snapshot folder may use for this model: alias first, then spec."""
        return tuple(n for n in (self.alias, self.given, self.spec) if n)

    @property
    def note(self) -> str:
        return str(self.options.get("note") or "")


def aliases_path() -> Path:
    return Path(str(resources.files("vsc_fixtures").joinpath("models.yaml")))


def load_aliases(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The alias table; a problem in it is one line naming the alias and key."""
    from vscbench.suite.gate import one_line

    try:
        return _load_aliases(path)
    except VscbenchError as exc:
        raise one_line(exc) from None


def _load_aliases(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    import yaml

    p = Path(path) if path is not None else aliases_path()
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise VscbenchError(f"{p}: cannot read the model aliases ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise VscbenchError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise VscbenchError(f"{p}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(doc, dict):
        raise VscbenchError(f"{p}: expected a mapping of alias -> model entry")
    out: dict[str, dict[str, Any]] = {}
    for alias, entry in doc.items():
        if isinstance(entry, str):
            entry = {"spec": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("spec"), str) or not entry["spec"].strip():
            raise VscbenchError(f"{p}: {alias}: expected a spec string or a mapping with 'spec'")
        if not str(alias).strip():
            raise VscbenchError(f"{p}: an alias is empty")
        for k in entry:
            if k not in ENTRY_KEYS:
                raise VscbenchError(f"{p}: {alias}.{k}: unknown key (use {', '.join(sorted(ENTRY_KEYS))})")
        _check_serving(p, str(alias), entry)
        out[str(alias)] = dict(entry)
    return out


def _check_serving(p: Path, alias: str, entry: dict[str, Any]) -> None:
    """``serve: vllm`` (only for an ``hf/`` or ``vllm/`` spec) and ``vllm_args:`` (a list of strings)."""
    serve = entry.get("serve")
    if serve is not None and serve not in SERVE_ENGINES:
        raise VscbenchError(f"{p}: {alias}.serve: '{serve}' (use {', '.join(SERVE_ENGINES)})")
    if serve is not None and not entry["spec"].startswith(("hf/", "vllm/")):
        raise VscbenchError(f"{p}: {alias}.serve: only an hf/ checkpoint can be served, not {entry['spec']}")
    args = entry.get("vllm_args")
    if args is not None and (not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args)):
        raise VscbenchError(f"{p}: {alias}.vllm_args: expected a list of command-line arguments")


def served_spec(spec: str, serve: str | None) -> str:
    """The engine spec of ``spec`` served by ``serve`` (``hf/X`` + ``vllm`` -> ``vllm/X``)."""
    if serve == "vllm" and spec.startswith("hf/"):
        return "vllm/" + spec.removeprefix("hf/")
    return spec


def is_engine_spec(value: str) -> bool:
    head, sep, rest = value.partition("/")
    return bool(sep and rest) and head in PROVIDERS


def resolve_model(value: str, aliases: dict[str, dict[str, Any]] | None = None) -> ResolvedModel:
    """An alias, an engine spec (``hf/…``, ``openai/…``, …) or a checkpoint folder; else one error line
    listing the aliases."""
    from vscbench.suite.gate import one_line

    try:
        return _resolve_model(value, aliases)
    except VscbenchError as exc:
        raise one_line(exc) from None


def _resolve_model(value: str, aliases: dict[str, dict[str, Any]] | None = None) -> ResolvedModel:
    table = load_aliases() if aliases is None else aliases
    v = value.strip()
    if v in table:
        entry = table[v]
        spec = served_spec(entry["spec"], entry.get("serve"))
        return ResolvedModel(v, spec, v, {k: x for k, x in entry.items() if k != "spec"})
    if is_engine_spec(v):
        return ResolvedModel(v, v)
    try:
        p = Path(v).expanduser()
    except RuntimeError:  # ~user that does not exist
        p = Path(v)
    try:
        is_dir = p.is_dir()
    except (OSError, ValueError):  # a name no file system accepts (NUL byte, too long)
        is_dir = False
    if is_dir:
        if not (p / "config.json").is_file():
            raise VscbenchError(f"--model {v}: a folder without config.json, not a transformers checkpoint")
        return ResolvedModel(v, f"hf/{p.resolve()}")
    raise VscbenchError(
        f"--model {v}: not an alias ({', '.join(sorted(table))}), an engine spec "
        f"({', '.join(p + '/…' for p in PROVIDERS)}) or a checkpoint folder"
    )


def ensure_tiny(root: Path) -> Path:
    """Build the offline tiny random VLM under ``root`` once (atomically) and return its folder."""
    import os
    import tempfile

    target = root / "tiny-vlm"
    if (target / "config.json").is_file():
        return target
    from vscbench.models.tiny import build_tiny_vlm

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-vlm.", dir=root))
    build_tiny_vlm(tmp, seed=0)
    try:
        os.replace(tmp, target)
    except OSError:  # another process built it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target
