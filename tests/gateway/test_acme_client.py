"""The ACME boundary's translation of every way a CA can fail into errors.AcmeError, once:
against a scripted server for what pebble never says (rate limits, 5xx, non-JSON), and a
closed port."""

from __future__ import annotations

import email.utils
import time

import pytest
from fake_acme import Answer, fake_acme, problem

from tunnelgate.errors import AcmeError
from tunnelgate.gateway.acme_client import AcmeSession, _retry_after, load_account_key
from tunnelgate.gateway.acme_store import new_key
from tunnelgate.testing.processes import free_port


def register(directory: str) -> None:
    session = AcmeSession(directory, load_account_key(new_key()), ca_bundle=None, timeout=2.0)
    try:
        session.register("ops@example.test")
    finally:
        session.close()


def failure(directory: str) -> AcmeError:
    with pytest.raises(AcmeError) as caught:
        register(directory)
    return caught.value


def test_rate_limited_carries_the_problem_detail_and_retry_after() -> None:
    answers = {
        "/new-account": problem(
            429, "rateLimited", "too many new accounts from this address", **{"Retry-After": "120"}
        )
    }
    with fake_acme(answers) as ca:
        error = failure(ca.directory)
    assert error.kind == "rate_limited"
    assert error.retry_after == 120.0
    assert "rateLimited: too many new accounts from this address" in str(error)
    assert str(error).startswith("registering the account:")


def test_a_429_without_a_problem_document_is_rate_limited_too() -> None:
    with fake_acme({"/new-account": Answer(429, b"slow down")}) as ca:
        error = failure(ca.directory)
    assert (error.kind, str(error)) == ("rate_limited", "registering the account: HTTP 429")


@pytest.mark.parametrize(
    ("answer", "kind", "words"),
    [
        (problem(500, "serverInternal", "database down"), "unavailable", "database down"),
        (Answer(502, b"<html>bad gateway</html>"), "unavailable", "HTTP 502"),
        (problem(400, "invalidContact", "no such domain"), "refused", "invalidContact"),
        (problem(403, "unauthorized", "account deactivated"), "refused", "account deactivated"),
    ],
)
def test_answers_are_sorted_by_what_they_mean_for_a_retry(
    answer: Answer, kind: str, words: str
) -> None:
    with fake_acme({"/new-account": answer}) as ca:
        error = failure(ca.directory)
    assert error.kind == kind
    assert words in str(error)


def test_a_directory_that_does_not_parse_means_unavailable() -> None:
    answers = {"/dir": Answer(200, b"not json", {"Content-Type": "text/plain"})}
    with fake_acme(answers) as ca:
        error = failure(ca.directory)
    assert error.kind == "unavailable"
    assert str(error).startswith("fetching the directory:")


def test_a_ca_that_cannot_be_reached_is_unavailable_in_the_sockets_words() -> None:
    error = failure(f"http://127.0.0.1:{free_port()}/dir")
    assert error.kind == "unavailable"
    assert "Connection refused" in str(error)
    assert "HTTPConnectionPool" not in str(error)  # not requests' wrapping


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert _retry_after("30") == 30.0
    assert _retry_after(None) is None
    assert _retry_after("soon") is None
    later = _retry_after(email.utils.formatdate(time.time() + 600, usegmt=True))
    assert later is not None
    assert 590 <= later <= 601
    assert _retry_after(email.utils.formatdate(time.time() - 600, usegmt=True)) == 0.0
