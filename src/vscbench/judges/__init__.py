"""Judges stage: (query, response[, image]) -> Label, and validation against human labels.

``base`` (the protocol, :class:`Case`, :class:`Verdict`), ``factory`` (:func:`make_judge`), one file per judge
(``keyword``, ``local``, ``rubric``), ``cascade`` (judges in a row: what one abstains on goes to the next), ``validate`` (gold files, agreement metrics), ``apply`` (label a stored
run), ``train`` (rebuild the local judge's head). Heavy dependencies load only when a judge needs them.
"""

from vscbench.judges.base import Case, Judge, Verdict
from vscbench.judges.factory import DEFAULT_JUDGE, make_judge

__all__ = ["DEFAULT_JUDGE", "Case", "Judge", "Verdict", "make_judge"]
