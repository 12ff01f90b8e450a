"""Wait for an observable condition with a deadline (tenacity), with an injectable clock.

tenacity's own delay-based stops read `time.monotonic` directly; taking the clock from the
caller lets unit tests run a 30 s drain in microseconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

if TYPE_CHECKING:
    from tenacity import RetryCallState

T = TypeVar("T")


@dataclass(frozen=True)
class Waited(Generic[T]):
    """How a wait ended: `ok` when the condition held in time, `last` the last observation
    (tenacity's `RetryError.last_attempt` habit). True in a boolean context exactly when `ok`."""

    ok: bool
    last: T

    def __bool__(self) -> bool:
        return self.ok


@overload
def wait_until(condition: Callable[[], T], *, done: Callable[[T], bool], budget: float, step: float = ...,
               clock: Callable[[], float] = ..., sleep: Callable[[float], None] = ...) -> Waited[T]: ...
@overload
def wait_until(condition: Callable[[], Any], *, budget: float, step: float = ...,
               clock: Callable[[], float] = ..., sleep: Callable[[float], None] = ...) -> Waited[Any]: ...
def wait_until(
    condition: Callable[[], Any],
    *,
    done: Callable[[Any], bool] = bool,
    budget: float,
    step: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Waited[Any]:
    """Call `condition` until `done(result)` (default: the result is truthy) or `budget` seconds ran out.

    Returns a `Waited`: `.ok` whether it was done in time, `.last` the last result `condition`
    returned (so callers need not smuggle it out). It is called at least once.
    `step` is the pause between calls (0 when the condition itself blocks, e.g. listening for
    adverts). The deadline is never overrun by a pause: the last call starts before it.
    """
    # Imported here: tenacity (with concurrent.futures and datetime) costs 7-14 ms, a tenth of a
    # drain's start-up, and a drain that hands over at once never waits before its resign.
    from tenacity import RetryError, Retrying, retry_if_result, wait_fixed

    started = clock()

    def out_of_time(state: RetryCallState) -> bool:
        return clock() - started + step >= budget

    try:
        result = Retrying(
            stop=out_of_time,
            wait=wait_fixed(step),
            retry=retry_if_result(lambda value: not done(value)),
            sleep=sleep,
        )(condition)
    except RetryError as exc:
        return Waited(False, exc.last_attempt.result())
    return Waited(True, result)
