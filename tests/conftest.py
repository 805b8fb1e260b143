"""Suite-wide settings. Hypothesis runs without per-example deadlines: CI machines are shared and
noisy, and speed is measured in bench/, never in tests."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# CI=true: the same examples on every run, so a red CI is reproducible from its log.
settings.register_profile(
    "ci",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    print_blob=True,
)
settings.load_profile("ci" if os.environ.get("CI") else "default")
