"""Which revision of a model answers: stored responses are reused only for the same one.

- given (``--vsc-model-revision``, an alias's ``revision:``): taken as it is;
- ``hf/``: the hub cache's commit hash of the checkpoint, or, for a local folder, a digest of its
  config and the names and sizes of its weight files (``local-<12 hex>``);
- ``openai-compatible/``: the model ids the server lists at ``GET {base_url}/models`` (vLLM adds ``root``,
  the checkpoint it serves);
- the APIs (``openai/``, ``anthropic/``, ``google/``): unknown before a request; each response carries the
  dated model name, which the store keeps per response.

``None`` means the revision cannot be known here; the caller decides (see
:func:`vscbench.runner.identity.choose_suite_run`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from vscbench.errors import VscbenchError

#: Seconds ``GET /models`` may take before the revision is called unknown.
MODELS_TIMEOUT_S = 5.0
#: Files of a checkpoint whose names and sizes make its local revision.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


@dataclass(frozen=True)
class Revision:
    """A model revision and where it came from (``given``, ``hub-cache``, ``files``, ``/models``) or why it is
    unknown (``value`` None)."""

    value: str | None
    source: str

    @property
    def known(self) -> bool:
        return self.value is not None


def local_checkpoint_revision(folder: Path) -> str:
    """``local-<12 hex>``: config.json's bytes and the weight files' names and sizes (no weights are read)."""
    h = hashlib.sha256()
    config = folder / "config.json"
    if config.is_file():
        h.update(config.read_bytes())
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix in _WEIGHT_SUFFIXES:
            h.update(f"{f.relative_to(folder)}\0{f.stat().st_size}\n".encode())
    return "local-" + h.hexdigest()[:12]


def hub_cached_commit(repo_id: str) -> str | None:
    """The commit the local hub cache holds for ``repo_id`` (``refs/main``), or None when it is not cached."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ModuleNotFoundError:
        return None
    folder = Path(HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    ref = folder / "refs" / "main"
    try:
        commit = ref.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit if (folder / "snapshots" / commit / "config.json").is_file() else None


def hf_revision(name: str) -> Revision:
    """A local folder: its hub snapshot commit (``…/snapshots/<commit>``) or its files' digest; a hub id: the
    commit the local cache holds."""
    p = Path(name).expanduser()
    if p.is_dir():
        p = p.resolve()
        if p.parent.name == "snapshots" and len(p.name) == 40:
            return Revision(p.name, "hub-cache")
        return Revision(local_checkpoint_revision(p), "files")
    commit = hub_cached_commit(name)
    return Revision(commit, "hub-cache") if commit else Revision(None, "not in the local hub cache")


def served_models_revision(body: object) -> str | None:
    """The revision a ``GET /models`` body names: its ids (with vLLM's ``root``), sorted; None if it lists none."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    names = []
    for entry in data:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            root = entry.get("root")
            names.append(entry["id"] + (f"@{root}" if isinstance(root, str) and root != entry["id"] else ""))
    return ",".join(sorted(names)) or None


def openai_compatible_revision(base_url: str, timeout: float = MODELS_TIMEOUT_S) -> Revision:
    """``GET {base_url}/models`` (the key in ``OPENAI_API_KEY``, if set, is sent as the SDK would)."""
    import os
    import urllib.error
    import urllib.request

    url = base_url.rstrip("/") + "/models"
    key = os.environ.get("OPENAI_API_KEY")
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - http(s) checked beforehand
            body = json.loads(r.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        return Revision(None, f"GET /models answered HTTP {exc.code}")
    except (OSError, ValueError) as exc:
        return Revision(None, f"GET /models failed ({type(exc).__name__})")
    value = served_models_revision(body)
    return Revision(value, "/models") if value else Revision(None, "GET /models listed no model")


def discover_revision(spec: str, *, base_url: str | None = None, given: str | None = None) -> Revision:
    """The revision of the model ``spec`` names (see the module docstring); ``given`` wins."""
    if given is not None:
        if not str(given).strip():
            raise VscbenchError("--vsc-model-revision: empty revision")
        return Revision(str(given).strip(), "given")
    provider, _, name = spec.partition("/")
    if provider == "hf":
        return hf_revision(name)
    if provider == "openai-compatible" and base_url:
        return openai_compatible_revision(base_url)
    return Revision(None, f"{provider} names its dated model only in each response")


def revision_digest(value: str) -> str:
    """8 hex digits of a revision: part of a run id."""
    return hashlib.sha256(json.dumps(value).encode("utf-8")).hexdigest()[:8]
