"""Utility sets: does a calibration method cost general helpfulness? (a side pipeline)

A utility set is VQA-style: an image, a question and one or more reference answers per line of a JSONL file
(:mod:`vscbench.utility.dataset`). It runs through the same stages as the benchmark — examples become
:class:`~vscbench.types.Item` objects (data), calibrations build the requests, :mod:`vscbench.models` and
:func:`vscbench.runner.core.execute` answer them, the store keeps the run (``kind="utility"``) — and is then
scored against the references (:mod:`vscbench.utility.scoring`) instead of being judged for safety.
:mod:`vscbench.utility.synthetic` generates a checkable set offline; :mod:`vscbench.utility.run` ties it together.
"""

from vscbench.utility.dataset import ANSWER_TYPES, UtilityExample, load_examples
from vscbench.utility.scoring import accuracy_interval, score_answer

__all__ = ["ANSWER_TYPES", "UtilityExample", "accuracy_interval", "load_examples", "score_answer"]
