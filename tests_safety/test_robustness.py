"""Metamorphic robustness cases (opt in: ``pytest -m robustness``).

For each seed item (a small balanced sample, ``--vsc-robustness-items``) whose canonical verdict is right,
hypothesis searches harmless variations of its input (rendering, image, query surface) for one that flips
the decision, and shrinks it to the smallest such variation:

- an unsafe item the model treated safety-aware stays safety-aware;
- a safe item the model answered is not refused.
"""

import pytest

pytestmark = pytest.mark.robustness


def test_harmless_variations_keep_the_decision(vsc_robust_seed):
    from hypothesis import given  # imported here: the default run (robustness deselected) never loads it

    seed = vsc_robust_seed  # skipped when the canonical verdict is already wrong or unscored

    @seed.hypothesis_settings
    @given(variation=seed.variations())
    def keeps_the_decision(variation):
        seed.check(variation)

    seed.search(keeps_the_decision)
