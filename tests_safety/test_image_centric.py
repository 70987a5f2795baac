"""Image-centric half: 300 queries x 3 safe + 3 unsafe images, one case per image-query pair.

Each case reads its response (answered ahead, in batches) and its judge label; under-safe and over-safe
cases show as U and O, and the gate in thresholds.yaml decides the run.
"""

import pytest

pytestmark = pytest.mark.vsc_items(half="image")


def test_pair(vsc_case):
    vsc_case.check()
