"""Runner stage: items x model x calibration -> responses committed one by one to the store.

:func:`execute` (``runner.core``) is the one retry/concurrency engine of the project (the LLM judge uses it
too); :func:`~vscbench.runner.run.run` of a :class:`~vscbench.runner.run.RunSpec` is ``vscbench run``.
"""

from vscbench.runner.core import ExecStats, Limits, RetryPolicy, execute

__all__ = ["ExecStats", "Limits", "RetryPolicy", "execute"]
