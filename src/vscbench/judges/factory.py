"""Judge names -> judges. The one place judges are named.

- ``keyword``: the paper's string-match rule;
- ``local`` (default): the offline embedding judge; option ``head`` = path of another trained head;
- ``local:abstain=L`` (L in [0.5, 1)): the same judge, but a head verdict whose calibrated confidence is
  under L is UNJUDGED (for a second judge to take, or to be counted); its labels are stored under this name;
- ``rubric:PROVIDER/MODEL``: an LLM judge through the provider layer (``rubric:openai/gpt-4o-mini`` is the
  paper's judge model); options ``base_url``, ``sees_image``, ``concurrency``, ``max_attempts``, ``api_key``;
  ``rubric:vllm/MODEL`` runs the judge on a vLLM server (``base_url``, or one it starts while it judges),
  ``rubric:hf/MODEL`` in this process, batched;
- ``STAGE,STAGE[,...]``: a cascade (:class:`~vscbench.judges.cascade.CascadeJudge`): the first stage judges
  every case, the cases it abstains on go to the next stage, and so on. Every stage but the last must be able
  to abstain, so it must be ``local:abstain=L``; a plain ``local`` there means
  ``local:abstain=`` :data:`CASCADE_ABSTAIN` (plain ``local`` never abstains and would pass nothing on).
  ``local,rubric:openai/gpt-4o-mini`` is stored as ``local:abstain=0.7,rubric:openai/gpt-4o-mini``.

Options a judge does not take are ignored, so the CLI can pass them all (a cascade passes them to every stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vscbench.errors import VscbenchError
from vscbench.judges.base import Judge

DEFAULT_JUDGE = "local"
#: The abstain level a plain ``local`` gets as a non-last stage of a cascade.
CASCADE_ABSTAIN = 0.7
JUDGE_NAMES: tuple[str, ...] = (
    "keyword",
    "local",
    "local:abstain=L",
    "rubric:PROVIDER/MODEL",
    "a cascade STAGE,STAGE (e.g. local,rubric:openai/gpt-4o-mini)",
)


def _unknown(name: str) -> VscbenchError:
    return VscbenchError(f"unknown judge '{name}': use one of {', '.join(JUDGE_NAMES)}")


def _abstain_level(name: str) -> float:
    """The L of ``local:abstain=L``, checked to be a number in [0.5, 1)."""
    raw = name.removeprefix("local:abstain=")
    try:
        level = float(raw)
    except ValueError:
        level = float("nan")
    if not 0.5 <= level < 1.0:
        raise VscbenchError(f"judge '{name}': the abstain level must be a number in [0.5, 1)")
    return level


def _check_single(name: str) -> None:
    """A one-judge name (no comma) is one of the known forms; its provider is checked when it is built."""
    if name in ("keyword", "local"):
        return
    if name.startswith("local:abstain="):
        _abstain_level(name)
        return
    if name.startswith("rubric:") and len(name) > len("rubric:"):
        return
    raise _unknown(name)


def cascade_stages(name: str) -> list[str]:
    """The stage names of judge ``name``, in order, checked without building anything (one stage for a name
    without a comma). In a cascade a plain ``local`` before the last stage becomes
    ``local:abstain=CASCADE_ABSTAIN``, and a stage that cannot abstain (``keyword``, ``rubric:…``) is refused
    before the last stage, in one line."""
    name = name.strip()
    if "," not in name:
        _check_single(name)
        return [name]
    parts = [p.strip() for p in name.split(",")]
    if any(not p for p in parts):
        raise VscbenchError(f"judge '{name}': a cascade is judge names joined by ',' with none empty")
    stages: list[str] = []
    for k, part in enumerate(parts):
        _check_single(part)
        if k < len(parts) - 1:
            if part == "local":
                part = f"local:abstain={CASCADE_ABSTAIN:g}"
            elif not part.startswith("local:abstain="):
                raise VscbenchError(
                    f"judge '{name}': {part} cannot abstain, so it can only be the last stage of a cascade "
                    f"(stages before the last must be local or local:abstain=L)"
                )
        stages.append(part)
    return stages


def check_judge_name(name: str) -> str:
    """The judge name as labels are stored under it (a cascade's stages normalised), or one clear
    VscbenchError line. Builds nothing: no head file is read and no provider is checked."""
    return ",".join(cascade_stages(name))


def vllm_judge_models(name: str) -> list[str]:
    """The checkpoints of the ``rubric:vllm/MODEL`` stages of judge ``name``, in order, without repeats: the
    servers a suite session starts for its judge (or shares with its model's)."""
    out: list[str] = []
    for stage in cascade_stages(name):
        if stage.startswith("rubric:vllm/"):
            model = stage.removeprefix("rubric:vllm/")
            if model not in out:
                out.append(model)
    return out


def judge_name(names: str | Sequence[str] | None) -> str:
    """One judge name from the values of a repeatable ``--judge`` option: several are joined with ',' into a
    cascade, in order; none gives :data:`DEFAULT_JUDGE`."""
    if names is None:
        return DEFAULT_JUDGE
    if isinstance(names, str):
        return names
    given = [n for n in names if n]
    return ",".join(given) if given else DEFAULT_JUDGE


def make_judge(name: str, **opts: Any) -> Judge:
    """Build the judge called ``name``; unknown names are one clear line listing the known ones."""
    name = name.strip()
    if "," in name:
        from vscbench.judges.cascade import CascadeJudge

        return CascadeJudge([make_judge(stage, **opts) for stage in cascade_stages(name)])
    if name == "keyword":
        from vscbench.judges.keyword import KeywordJudge

        return KeywordJudge()
    if name == "local":
        from vscbench.judges.local import LocalJudge

        return LocalJudge(opts.get("head"))
    if name.startswith("local:abstain="):
        from vscbench.judges.local import LocalJudge

        return LocalJudge(opts.get("head"), abstain_below=_abstain_level(name))
    if name.startswith("rubric:"):
        from vscbench.judges.rubric import RubricJudge

        spec = name.removeprefix("rubric:")
        rubric_opts = {
            k: opts[k]
            for k in ("base_url", "sees_image", "concurrency", "max_attempts", "api_key", "timeout_s")
            if opts.get(k) is not None
        }
        return RubricJudge(spec, **rubric_opts)
    raise _unknown(name)
