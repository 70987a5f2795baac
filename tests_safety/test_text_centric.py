"""Text-centric half: the 450 XSTest queries x 4 image settings (search, typography, concat, FigStep)."""

import pytest

pytestmark = pytest.mark.vsc_items(half="text", settings=("search", "typography", "concat", "figstep"))


def test_pair(vsc_case):
    vsc_case.check()
