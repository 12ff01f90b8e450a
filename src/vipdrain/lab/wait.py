"""Waiting on lab conditions with deadlines (tenacity), never with bare sleeps."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryError, Retrying, retry_if_exception_type, retry_if_result, stop_after_delay, wait_fixed

from vipdrain.errors import RuntimeFailure

T = TypeVar("T")


class LabTimeout(RuntimeFailure):
    """A lab condition did not come true before its deadline."""


def until(probe: Callable[[], T], timeout: float, *, interval: float = 0.05, what: str = "condition",
          retry_on: tuple[type[BaseException], ...] = ()) -> T:
    """Call `probe` every `interval` s until it returns something truthy; return that value.

    Exceptions of the types in `retry_on` count as "not yet". Raises LabTimeout naming `what`
    (and the last value or error seen) when `timeout` s pass first.
    """
    retry = retry_if_result(lambda value: not value)
    if retry_on:
        retry = retry | retry_if_exception_type(retry_on)
    try:
        return Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(interval), retry=retry)(probe)
    except RetryError as exc:
        last = exc.last_attempt
        seen = repr(last.exception()) if last.failed else repr(last.result())
        raise LabTimeout(f"timed out after {timeout:g} s waiting for {what} (last seen: {seen})") from None
