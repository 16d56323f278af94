"""The renewal rules of ``certherd.manager.policy``, at fixed moments (no clock, no sleep)."""

from __future__ import annotations

import datetime as dt

import pytest

from certherd.manager.policy import (
    FAILURE_BACKOFF,
    RenewalDecision,
    failure_backoff,
    needs_renewal,
    renewal_threshold,
)

ISSUED = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def _decide(lifetime: dt.timedelta, now: dt.datetime, **facts: object) -> RenewalDecision:
    return needs_renewal(
        not_before=ISSUED,
        not_after=ISSUED + lifetime,
        now=now,
        **facts,  # type: ignore[arg-type]
    )


# -- a third of the lifetime, without ARI -------------------------------------------------


@pytest.mark.parametrize(
    ("days", "due_on_day"),
    [(90, 60), (45, 30), (6, 4)],
    ids=["90-day", "45-day", "6-day"],
)
def test_due_when_a_third_of_the_lifetime_remains(days: int, due_on_day: int) -> None:
    lifetime = days * DAY
    due_at = ISSUED + due_on_day * DAY
    assert renewal_threshold(ISSUED, ISSUED + lifetime) == due_at

    fresh = _decide(lifetime, ISSUED)
    assert not fresh.due
    assert fresh.next_check == due_at
    assert "not due until" in fresh.reason
    assert "2025-" in fresh.reason

    just_before = _decide(lifetime, due_at - SECOND)
    assert (just_before.due, just_before.next_check) == (False, due_at)

    at = _decide(lifetime, due_at)
    assert at.due
    assert at.next_check == due_at  # when due, "look again" is now
    assert "third" in at.reason

    later = _decide(lifetime, due_at + DAY)
    assert later.due
    assert later.next_check == due_at + DAY


def test_a_fixed_margin_would_fail_short_certificates() -> None:
    """A 6-day certificate is not due on issue (as "30 days before expiry" would make it),
    and a 90-day one is due long before its last week."""
    assert not _decide(6 * DAY, ISSUED + DAY).due
    assert _decide(90 * DAY, ISSUED + 61 * DAY).due


def test_threshold_of_an_uneven_lifetime() -> None:
    lifetime = 90 * DAY - SECOND  # Let's Encrypt: notAfter is inclusive
    threshold = renewal_threshold(ISSUED, ISSUED + lifetime)
    assert ISSUED + lifetime - threshold == lifetime / 3
    assert not _decide(lifetime, threshold - dt.timedelta(microseconds=1)).due
    assert _decide(lifetime, threshold).due


def test_times_in_other_zones_decide_alike() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    now = ISSUED + 59 * DAY
    in_utc = _decide(90 * DAY, now)
    elsewhere = needs_renewal(
        not_before=ISSUED.astimezone(paris),
        not_after=(ISSUED + 90 * DAY).astimezone(paris),
        now=now.astimezone(paris),
    )
    assert (elsewhere.due, elsewhere.next_check) == (in_utc.due, in_utc.next_check)
    assert elsewhere.reason == in_utc.reason  # stamps are always UTC
    assert "UTC" in elsewhere.reason


# -- ARI: the CA's window and the moment picked in it ------------------------------------

WINDOW_START = ISSUED + 50 * DAY
WINDOW_END = ISSUED + 52 * DAY
PICK = WINDOW_START + 30 * HOUR


def _ari(now: dt.datetime, **facts: object) -> RenewalDecision:
    window = {"ari_start": WINDOW_START, "ari_end": WINDOW_END, "ari_pick": PICK}
    return _decide(90 * DAY, now, **{**window, **facts})


def test_ari_due_at_the_stored_pick_not_before() -> None:
    before = _ari(PICK - SECOND)
    assert not before.due
    assert before.next_check == PICK
    assert "renewing at" in before.reason
    assert "window" in before.reason

    inside_window_before_pick = _ari(WINDOW_START + HOUR)
    assert (inside_window_before_pick.due, inside_window_before_pick.next_check) == (False, PICK)

    at = _ari(PICK)
    assert at.due
    assert "window" in at.reason
    assert _ari(PICK + HOUR).due


def test_ari_without_a_stored_pick_is_due_from_the_window_start() -> None:
    assert not _ari(WINDOW_START - SECOND, ari_pick=None).due
    assert _ari(WINDOW_START - SECOND, ari_pick=None).next_check == WINDOW_START
    assert _ari(WINDOW_START, ari_pick=None).due


def test_ari_window_end_passed_is_due_whatever_the_pick() -> None:
    late_pick = WINDOW_END + DAY  # a pick outside the window must not delay past its end
    assert not _ari(WINDOW_END - SECOND, ari_pick=late_pick).due
    assert _ari(WINDOW_END, ari_pick=late_pick).due
    assert _ari(WINDOW_END + DAY, ari_pick=late_pick).due


def test_ari_window_replaces_the_lifetime_rule() -> None:
    # Later than a third of the lifetime: the CA's window wins, not day 60.
    late_start, late_end = ISSUED + 70 * DAY, ISSUED + 72 * DAY
    day_61 = ISSUED + 61 * DAY
    decision = _ari(day_61, ari_start=late_start, ari_end=late_end, ari_pick=late_start + HOUR)
    assert not decision.due
    assert decision.next_check == late_start + HOUR
    # Earlier (a CA asking for early renewal, e.g. before a mass revocation): due now.
    early_start, early_end = ISSUED + 5 * DAY, ISSUED + 6 * DAY
    early = _ari(ISSUED + 5 * DAY + HOUR, ari_start=early_start, ari_end=early_end, ari_pick=None)
    assert early.due


def test_half_a_window_falls_back_to_the_lifetime_rule() -> None:
    day_40 = ISSUED + 40 * DAY
    for facts in ({"ari_end": None}, {"ari_start": None}):
        decision = _ari(day_40, **facts)
        assert not decision.due
        assert decision.next_check == ISSUED + 60 * DAY


def test_a_window_ending_after_expiry_falls_back_to_the_lifetime_rule() -> None:
    """A renewalInfo window past expiry (hostile, or broken) must not let it lapse."""
    expiry = ISSUED + 90 * DAY
    late = {"ari_start": ISSUED + 80 * DAY, "ari_end": expiry + DAY, "ari_pick": expiry + HOUR}
    day_61 = _ari(ISSUED + 61 * DAY, **late)
    assert day_61.due
    assert "third of the lifetime" in day_61.reason
    far = {
        "ari_start": dt.datetime(2100, 1, 1, tzinfo=dt.UTC),
        "ari_end": dt.datetime(2100, 1, 2, tzinfo=dt.UTC),
    }
    assert _ari(ISSUED + 40 * DAY, **far, ari_pick=None).next_check == ISSUED + 60 * DAY


# -- failures back off, but never past expiry --------------------------------------------


def test_failure_backoff_table() -> None:
    assert failure_backoff(0) == dt.timedelta(0)
    assert failure_backoff(-3) == dt.timedelta(0)
    assert [failure_backoff(n) for n in range(1, len(FAILURE_BACKOFF) + 1)] == list(FAILURE_BACKOFF)
    assert FAILURE_BACKOFF[0] == 5 * MINUTE
    assert list(FAILURE_BACKOFF) == sorted(FAILURE_BACKOFF)  # never shrinks
    cap = FAILURE_BACKOFF[-1]
    assert failure_backoff(len(FAILURE_BACKOFF) + 1) == cap
    assert failure_backoff(1000) == cap
    assert cap <= DAY / 2  # a 6-day certificate's last two days still see several tries


@pytest.mark.parametrize("failures", range(1, len(FAILURE_BACKOFF) + 3))
def test_backing_off_after_failures(failures: int) -> None:
    failed_at = ISSUED + 61 * DAY  # due by the lifetime rule
    wait = failure_backoff(failures)
    during = _decide(90 * DAY, failed_at + wait / 2, failures=failures, last_failure=failed_at)
    assert not during.due
    assert during.next_check == failed_at + wait
    assert f"{failures} failed attempt" in during.reason

    after = _decide(90 * DAY, failed_at + wait, failures=failures, last_failure=failed_at)
    assert after.due


def test_failures_without_a_time_do_not_block() -> None:
    assert _decide(90 * DAY, ISSUED + 61 * DAY, failures=3, last_failure=None).due


def test_backoff_never_waits_past_expiry() -> None:
    not_after = ISSUED + 6 * DAY
    last_try = not_after - MINUTE
    failed_at = not_after - 2 * HOUR  # the cap (12 h) would end 10 h after expiry
    failures = len(FAILURE_BACKOFF)
    waiting = _decide(6 * DAY, failed_at + HOUR, failures=failures, last_failure=failed_at)
    assert not waiting.due
    assert waiting.next_check == last_try
    at_last_try = _decide(6 * DAY, last_try, failures=failures, last_failure=failed_at)
    assert at_last_try.due


@pytest.mark.parametrize("days", [90, 45, 6])
def test_no_backoff_ever_ends_after_expiry(days: int) -> None:
    lifetime = days * DAY
    not_after = ISSUED + lifetime
    step = lifetime / 97
    for failures in range(1, len(FAILURE_BACKOFF) + 2):
        failed_at = renewal_threshold(ISSUED, not_after)
        while failed_at < not_after:
            now = failed_at + MINUTE
            decision = _decide(lifetime, now, failures=failures, last_failure=failed_at)
            assert decision.due or decision.next_check <= not_after - MINUTE, (
                failures,
                failed_at,
            )
            failed_at += step


def test_expired_is_due_even_while_backing_off() -> None:
    not_after = ISSUED + 6 * DAY
    failed_at = not_after - SECOND
    decision = _decide(6 * DAY, not_after + MINUTE, failures=5, last_failure=failed_at)
    assert decision.due
    assert "expired" in decision.reason


# -- forced and expired --------------------------------------------------------------------


def test_force_is_due_whatever_the_facts() -> None:
    now = ISSUED + HOUR
    cases: list[dict[str, object]] = [
        {},
        {"failures": 7, "last_failure": now - MINUTE},
        {"ari_start": WINDOW_START, "ari_end": WINDOW_END, "ari_pick": PICK},
    ]
    for facts in cases:
        decision = _decide(90 * DAY, now, force=True, **facts)
        assert decision.due
        assert decision.next_check == now
        assert "forced" in decision.reason


def test_expired_certificates_are_due() -> None:
    not_after = ISSUED + 90 * DAY
    at_expiry = _decide(90 * DAY, not_after)
    assert at_expiry.due
    assert "expired" in at_expiry.reason
    assert "2025-05-30 12:00 UTC" in at_expiry.reason
    # An ARI window still in the future does not hold back an expired certificate.
    future = {"ari_start": not_after + 2 * DAY, "ari_end": not_after + 3 * DAY, "ari_pick": None}
    stale_window = _ari(not_after + DAY, **future)
    assert stale_window.due
    assert "expired" in stale_window.reason


# -- revoked (issue 10.5) ---------------------------------------------------------------


def test_a_revoked_certificate_is_due_at_once() -> None:
    day_2 = ISSUED + 2 * DAY
    assert not _decide(90 * DAY, day_2).due
    decision = _decide(90 * DAY, day_2, revoked_at=ISSUED + DAY)
    assert decision.due
    assert "revoked" in decision.reason
    # Also when the CA's ARI window (RFC 9773) is far away.
    far = {"ari_start": ISSUED + 60 * DAY, "ari_end": ISSUED + 62 * DAY}
    assert _decide(90 * DAY, day_2, revoked_at=ISSUED + DAY, **far).due


def test_ari_moving_the_window_into_the_past_is_due_at_once() -> None:
    """RFC 9773 §4.2: a CA signals revocation by a window in the past: due now."""
    day_2 = ISSUED + 2 * DAY
    past = {"ari_start": ISSUED, "ari_end": ISSUED + HOUR, "ari_pick": ISSUED + MINUTE}
    assert _decide(90 * DAY, day_2, **past).due


def test_failures_still_back_off_a_revoked_certificate() -> None:
    now = ISSUED + 2 * DAY
    decision = _decide(
        90 * DAY, now, revoked_at=ISSUED + DAY, failures=1, last_failure=now - MINUTE
    )
    assert not decision.due
    assert decision.next_check == now - MINUTE + FAILURE_BACKOFF[0]
