"""Wait for an observable condition with a deadline (tenacity), with an injectable clock.

tenacity's own delay-based stops read `time.monotonic` directly; taking the clock from the
caller lets unit tests run a 30 s drain in microseconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tenacity import RetryCallState, RetryError, Retrying, retry_if_result, wait_fixed


def wait_until(
    condition: Callable[[], bool],
    *,
    budget: float,
    step: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Call `condition` until it returns True (-> True) or `budget` seconds ran out (-> False).

    `step` is the pause between calls (0 when the condition itself blocks, e.g. listening for
    adverts). The deadline is never overrun by a pause: the last call starts before it.
    """
    started = clock()

    def out_of_time(state: RetryCallState) -> bool:
        return clock() - started + step >= budget

    try:
        Retrying(
            stop=out_of_time,
            wait=wait_fixed(step),
            retry=retry_if_result(lambda done: not done),
            sleep=sleep,
        )(condition)
    except RetryError:
        return False
    return True
