"""The text-only baseline: each XSTest query with no image. Reported apart; gated only where
thresholds.yaml names the scope `setting=text`."""

import pytest

pytestmark = pytest.mark.vsc_items(half="text", settings=("text",))


def test_text_only(vsc_case):
    vsc_case.check()
