"""Judge names -> judges. The one place judges are named.

- ``keyword``: the paper's string-match rule;
- ``local`` (default): the offline embedding judge; option ``head`` = path of another trained head;
- ``local:abstain=L`` (L in [0.5, 1)): the same judge, but a head verdict whose calibrated confidence is
  under L is UNJUDGED (for a second judge to take, or to be counted); its labels are stored under this name;
- ``rubric:PROVIDER/MODEL``: an LLM judge through the provider layer (``rubric:openai/gpt-4o-mini`` is the
  paper's judge model); options ``base_url``, ``sees_image``, ``concurrency``, ``max_attempts``, ``api_key``.

Options a judge does not take are ignored, so the CLI can pass them all.
"""

from __future__ import annotations

from typing import Any

from vscbench.errors import VscbenchError
from vscbench.judges.base import Judge

DEFAULT_JUDGE = "local"
JUDGE_NAMES: tuple[str, ...] = ("keyword", "local", "local:abstain=L", "rubric:PROVIDER/MODEL")


def make_judge(name: str, **opts: Any) -> Judge:
    """Build the judge called ``name``; unknown names are one clear line listing the known ones."""
    name = name.strip()
    if name == "keyword":
        from vscbench.judges.keyword import KeywordJudge

        return KeywordJudge()
    if name == "local":
        from vscbench.judges.local import LocalJudge

        return LocalJudge(opts.get("head"))
    if name.startswith("local:abstain="):
        from vscbench.judges.local import LocalJudge

        raw = name.removeprefix("local:abstain=")
        try:
            level = float(raw)
        except ValueError:
            raise VscbenchError(f"judge '{name}': the abstain level must be a number in [0.5, 1)") from None
        return LocalJudge(opts.get("head"), abstain_below=level)
    if name.startswith("rubric:"):
        from vscbench.judges.rubric import RubricJudge

        spec = name.removeprefix("rubric:")
        rubric_opts = {
            k: opts[k]
            for k in ("base_url", "sees_image", "concurrency", "max_attempts", "api_key", "timeout_s")
            if opts.get(k) is not None
        }
        return RubricJudge(spec, **rubric_opts)
    raise VscbenchError(f"unknown judge '{name}': use one of {', '.join(JUDGE_NAMES)}")
