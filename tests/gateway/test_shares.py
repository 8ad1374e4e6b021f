from __future__ import annotations

from tunnelgate import limits
from tunnelgate.gateway.shares import StreamShares


def test_an_address_gets_its_share_of_the_streams_and_no_more() -> None:
    shares = StreamShares(512)
    assert shares.limit == int(512 * limits.ADDRESS_STREAM_SHARE) == 384
    for _ in range(384):
        assert shares.take("192.0.2.1")
    assert not shares.take("192.0.2.1")
    assert shares.take("192.0.2.2")  # another address is not held back
    shares.give("192.0.2.1")
    assert shares.take("192.0.2.1")  # one ended: one more


def test_the_table_keeps_only_addresses_with_streams_and_a_share_is_at_least_one() -> None:
    shares = StreamShares(1)
    assert shares.limit == 1
    assert shares.take("192.0.2.1")
    shares.give("192.0.2.1")
    assert shares.held == {}
