"""RFC 3339 UTC times as the API writes them: Unix seconds (remembered) and aware datetimes give the same text
as ``datetime.isoformat`` with ``Z``; times outside four-digit years are shown at the nearest end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from app.domain.encoding import MAX_RFC3339, MIN_RFC3339, rfc3339


@given(st.integers(min_value=MIN_RFC3339, max_value=MAX_RFC3339))
def test_unix_seconds_as_isoformat_with_z_the_same_every_time(seconds: int) -> None:
    expected = datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
    assert rfc3339(seconds) == expected
    assert rfc3339(seconds) == expected  # the remembered answer


def test_examples_and_the_ends() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1_735_787_045) == "2025-01-02T03:04:05Z"
    assert rfc3339(MAX_RFC3339 + 10**12) == "9999-12-31T23:59:59Z"
    assert rfc3339(MIN_RFC3339 - 1) == "0001-01-01T00:00:00Z"
    assert rfc3339(None) is None


def test_an_aware_datetime_in_any_zone_is_written_in_utc() -> None:
    at = datetime(2025, 1, 2, 11, 4, 5, 120_000, tzinfo=timezone(timedelta(hours=8)))
    assert rfc3339(at) == "2025-01-02T03:04:05.120000Z"
    assert rfc3339(at.replace(microsecond=0)) == "2025-01-02T03:04:05Z"
