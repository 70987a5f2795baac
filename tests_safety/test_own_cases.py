"""The team's own cases: incidents and red-team finds, from the case files under tests_safety/cases/ (and any
``--vsc-cases=PATH``; ``--vsc-cases=none`` leaves them out). One case per case, id ``own/<file stem>/<id>``,
markers ``own``, ``safe``/``unsafe`` and one per tag; answered ahead with the benchmark's cases, snapshotted,
and gated in their own scopes (``source=own``, ``own-file=<stem>``, ``tag=<tag>``, ``own-category=<name>``),
never in ``benchmark``. The format and the commands: README, "Your own cases"."""

import pytest

pytestmark = pytest.mark.vsc_items(source="own")


def test_case(vsc_case):
    vsc_case.check()
