"""The one place VIPDRAIN_REQUIRE_LAB is read: may a test that cannot get its real components
(root, network namespaces, keepalived, haproxy) skip, or must it fail (CI)?"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_LAB_ENV = "VIPDRAIN_REQUIRE_LAB"


def lab_required() -> bool:
    """Set (to anything but "" or "0"): a missing lab is a failure, never a skip."""
    return os.environ.get(REQUIRE_LAB_ENV, "") not in ("", "0")


def unavailable(reason: str) -> NoReturn:
    """Skip the test for `reason` - or fail it when the lab is required."""
    if lab_required():
        pytest.fail(f"{REQUIRE_LAB_ENV}=1 but {reason}: this is a failure, not a skip", pytrace=False)
    pytest.skip(f"{reason} (set {REQUIRE_LAB_ENV}=1 to make this a failure)")
