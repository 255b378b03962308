"""Which W&B failures are worth retrying, and the retry loop: the W&B backend's one rule for faults.

wandb-core already retries a request a few times; what still reaches us is sorted here. A 5xx, a 429, a timeout
or a reset connection is retried with exponential backoff (a 429's Retry-After is the least we wait) and, if it
persists, surfaces as :class:`~sweepflow.backends.base.TransientBackendError`, which the Prefect tasks retry.
A 401/403 (the key), a 404 (the sweep) or a rejected config is permanent: one line that names the fix, at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

from sweepflow.backends.base import SweepNotFound, TransientBackendError
from sweepflow.errors import SweepflowError

T = TypeVar("T")

_TRANSIENT_WORDS = re.compile(
    r"timed? ?out|timeout|connection (reset|refused|aborted)|reset by peer|EOF|temporar|unavailable|"
    r"too many requests|bad gateway|gateway|status(?: code)?:? ?(5\d\d|429)|\b(5\d\d|429)\b|"
    r"no such host|broken pipe|server closed",
    re.IGNORECASE,
)
_AUTH_WORDS = re.compile(r"\b(401|403)\b|invalid credentials|unauthorized|not logged in|permission denied", re.I)


class WandbAuthError(SweepflowError):
    """The W&B server refused the API key."""


def _status(exc: BaseException) -> int | None:
    """The HTTP status wandb-core reported for a failed request, looked up through the exception chain."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return None
        response = getattr(seen, "response", None)
        status = getattr(response, "http_status", None) or getattr(response, "status_code", None)
        if isinstance(status, int) and status:
            return status
        nested = getattr(seen, "exc", None)
        seen = nested if isinstance(nested, BaseException) else (seen.__cause__ or seen.__context__)
    return None


def _retry_after(exc: BaseException) -> float | None:
    match = re.search(r"retry-after:? ?(\d+(?:\.\d+)?)", str(exc), re.IGNORECASE)
    return float(match.group(1)) if match else None


def _text(exc: BaseException) -> str:
    """The exception's message on one line, with the chain's messages (wandb wraps wandb-core's)."""
    parts, seen = [], exc
    for _ in range(4):
        if seen is None:
            break
        parts.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    return " ".join(" ".join(parts).split())


def classify(exc: BaseException, base_url: str, what: str) -> SweepflowError:
    """The sweepflow error ``exc`` means: transient, not found, auth, or permanent (one line naming the fix)."""
    if isinstance(exc, SweepflowError):
        return exc
    status, text = _status(exc), _text(exc)
    if status in (401, 403) or (status is None and _AUTH_WORDS.search(text)):
        return WandbAuthError(
            f"W&B rejected the API key for {base_url} ({what}): set WANDB_API_KEY, or the api_key of the "
            "WandbCredentials block, to a valid key for that server."
        )
    if status == 404:
        return SweepNotFound(f"W&B at {base_url} has no {what.removeprefix('read ')} (404).")
    if status in (408, 429) or (status is not None and status >= 500) or isinstance(exc, (TimeoutError, OSError)):
        return TransientBackendError(f"W&B at {base_url} did not answer {what} (HTTP {status or 'error'}); try again.")
    if status is None and _TRANSIENT_WORDS.search(text):
        reason = " ".join(str(exc).split())[:120]
        return TransientBackendError(f"W&B at {base_url} did not answer {what} ({reason}); try again.")
    return SweepflowError(f"W&B at {base_url} refused {what}: {text[:300]}")


def retrying(
    call: Callable[[], T],
    *,
    base_url: str,
    what: str,
    attempts: int = 5,
    first_delay: float = 0.5,
    max_delay: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, retried with exponential backoff while it fails transiently; its error classified otherwise."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:  # wandb raises many types; classify() sorts them
            error = classify(exc, base_url, what)
            if not isinstance(error, TransientBackendError) or attempt == attempts:
                raise error from None
            sleep(max(delay, _retry_after(exc) or 0.0))
            delay = min(max_delay, delay * 2)
    raise AssertionError("unreachable")
