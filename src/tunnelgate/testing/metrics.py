"""Reading ``/metrics`` in tests: the exposition parsed with prometheus_client's own parser
(what a Prometheus server would read), flattened to ``name{k=v,...}`` -> value with the
labels sorted, so a test names one sample in one string."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from .http_client import build_request, http_request


def samples(text: str) -> dict[str, float]:
    """Every sample of an exposition: ``"tunnelgate_requests_total{status=2xx}": 3.0``."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


async def scrape(port: int, token: str | None = None) -> dict[str, float]:
    """``GET /metrics`` from the admin API on 127.0.0.1:`port` (with `token` if given)."""
    headers = [("Authorization", f"Bearer {token}")] if token else []
    raw = build_request("GET", "/metrics", host=f"127.0.0.1:{port}", headers=headers)
    response = await http_request(port, raw)
    assert response.status == 200, response
    return samples(response.body.decode())
