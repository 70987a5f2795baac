"""Checks made before the first request: everything a session can refuse with one line instead of after the
work is spent (a URL that is no URL, an output path whose folder is missing, CUDA that is not there, a
checkpoint that is neither on this machine nor reachable). Each check reads only local state (or one quick
socket connect) and raises :class:`~vscbench.errors.VscbenchError` naming the flag."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from vscbench.errors import VscbenchError
from vscbench.models.revision import hub_cached_commit

#: Seconds the quick reachability check of the model hub waits (a hub checkpoint not in the local cache).
HUB_PROBE_TIMEOUT_S = 3.0


def check_base_url(url: str, flag: str = "--base-url") -> str:
    """An ``http://`` or ``https://`` URL with a host; else one line naming ``flag``. Never echoes a
    password the URL may carry."""
    try:
        u = urlsplit(url)
        port = u.port  # raises on a port that is not a number
    except ValueError as exc:
        raise VscbenchError(f"{flag}: not a valid URL ({exc})") from None
    shown = url if not (u.password or u.query) else f"{u.scheme}://{u.hostname or ''}{u.path}"
    if u.scheme not in ("http", "https"):
        why = f"scheme '{u.scheme}:' is not http or https" if u.scheme else "no scheme (http:// or https://)"
        raise VscbenchError(f"{flag} {shown}: {why}; e.g. http://localhost:8000/v1")
    if not u.hostname:
        raise VscbenchError(f"{flag} {shown}: no host; e.g. http://localhost:8000/v1")
    del port
    return url


def check_output_path(flag: str, path: str | os.PathLike[str]) -> Path:
    """A file the session will write at its end: its folder must exist and it must not be a folder."""
    p = Path(path)
    if p.is_dir():
        raise VscbenchError(f"{flag} {p}: is a folder; give a file path")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise VscbenchError(f"{flag} {p}: folder {parent} does not exist (create it first)")
    if not os.access(parent, os.W_OK):
        raise VscbenchError(f"{flag} {p}: folder {parent} is not writable")
    return p


def check_cuda(device: str | None, flag: str = "--device", cpu_hint: str = "--device=cpu") -> None:
    """``cuda``/``cuda:N`` needs a GPU torch can see; say so (and name the CPU flag) before anything runs."""
    if not device or not str(device).startswith("cuda"):
        return
    try:
        import torch
    except ModuleNotFoundError:
        raise VscbenchError(
            f"{flag} {device}: torch is not installed (pip install 'vscbench[hf]'), or use {cpu_hint}"
        ) from None
    if not torch.cuda.is_available():
        why = "built without CUDA" if torch.version.cuda is None else "no GPU visible"
        raise VscbenchError(
            f"{flag} {device}: CUDA is not available on this machine (torch {torch.__version__}, {why}); "
            f"use {cpu_hint}"
        )
    index = str(device).partition(":")[2]
    if index.isdigit() and int(index) >= torch.cuda.device_count():
        raise VscbenchError(f"{flag} {device}: only {torch.cuda.device_count()} GPU(s) visible")


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set to a true value."""
    return any(
        os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    u = urlsplit(endpoint)
    try:
        with socket.create_connection((u.hostname or "huggingface.co", u.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def check_checkpoint(spec: str) -> None:
    """An ``hf/`` model must be on this machine (a local folder, or a hub id in the local cache) or the hub
    must be reachable: offline (``HF_HUB_OFFLINE``) or unreachable within a few seconds, a missing checkpoint
    is one line now rather than minutes of retries."""
    if not spec.startswith("hf/"):
        return
    name = spec[3:]
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise VscbenchError(
                f"model '{spec}': folder {local} has no config.json, not a transformers checkpoint"
            )
        return
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise VscbenchError(f"model '{spec}': no checkpoint folder {local} on this machine")
    if hub_cached_commit(name) is not None:
        return
    if hub_offline():
        raise VscbenchError(
            f"model '{spec}': not in the local hub cache and HF_HUB_OFFLINE is set; download it first "
            f"(huggingface-cli download {name}) or pass a checkpoint folder"
        )
    if not _hub_reachable():
        raise VscbenchError(
            f"model '{spec}': not in the local hub cache and the hub is not reachable from here; download it "
            f"first (huggingface-cli download {name}) or pass a checkpoint folder"
        )
