"""The soak's verdict, apart from any I/O: what each request's fate counts as, and flatness.

Every request ends in one of:

- **ok**: 200 from the app, the right ``X-Soak-Id``, a body of the right length and digest;
- **refused** with a reason: a gateway error page (``X-Tunnelgate-Error: CODE``, counted by
  code); a connection refused, reset or closed before any answer while the gateway was being
  restarted; a response cut short of its framing (the gateway's way of saying the tunnel or
  app went away mid-body) while that tunnel's client or the gateway was being restarted;
- **corrupted**: a complete answer that is wrong (body, length, id, an app 422 for a request
  body that arrived damaged, a status neither the app's nor the gateway's);
- **lost**: nothing at all within the time bound (no head, or a body that stalled);
- **unexplained**: a connection-level failure (refused, reset, closed, cut off) outside every
  fault window: an error the client would see, but one no fault of the run accounts for.

The run passes only with no corrupted, no lost and no unexplained request. Failures are kept
with their times and judged at the end, once every fault window is closed.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

# Connection-level failures: no answer came, but the client saw an error.
CONNECTION_FAILURES: Final = frozenset(
    {"connect_refused", "connect_reset", "connect_timeout", "reset", "closed_before_answer"}
)
CUT_OFF: Final = "cut_off"
LOST: Final = frozenset({"timeout", "stalled"})
CORRUPT_SAMPLES: Final = 20  # corrupted requests described in the results, at most

# Flatness bounds, judged per gateway process on its samples after the warm-up: the median
# of the last minute may exceed the median of the first by at most this much.
RSS_GROWTH_MAX_KIB: Final = 16 * 1024
RSS_GROWTH_MAX_FRACTION: Final = 0.10
FDS_GROWTH_MAX: Final = 50
FDS_GROWTH_MAX_FRACTION: Final = 0.05


@dataclass(frozen=True, slots=True)
class Window:
    """A fault in progress: from its start until everything it disturbed was back (plus a
    margin); `tunnel` None means the gateway (every tunnel)."""

    start: float
    end: float
    tunnel: int | None
    what: str

    def covers(self, started: float, ended: float, tunnel: int) -> bool:
        if self.tunnel is not None and self.tunnel != tunnel:
            return False
        return started <= self.end and ended >= self.start


@dataclass(frozen=True, slots=True)
class Failure:
    kind: str
    started: float
    ended: float
    tunnel: int
    ident: int  # the request's id, 0 when none was sent (a failed connect)


@dataclass
class Tally:
    ok: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # X-Tunnelgate-Error codes
    refusal_times: list[tuple[float, float, int]] = field(default_factory=list)
    corrupted: int = 0
    corrupt_samples: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    bytes_up: int = 0
    bytes_down: int = 0

    def answered(self, up: int, down: int) -> None:
        self.ok += 1
        self.bytes_up += up
        self.bytes_down += down

    def refused_by_gateway(self, code: str, started: float, ended: float, tunnel: int) -> None:
        self.refused[f"X-Tunnelgate-Error: {code}"] += 1
        self.refusal_times.append((started, ended, tunnel))

    def corrupt(self, what: str) -> None:
        self.corrupted += 1
        if len(self.corrupt_samples) < CORRUPT_SAMPLES:
            self.corrupt_samples.append(what)

    def failed(self, kind: str, started: float, ended: float, tunnel: int, ident: int = 0) -> None:
        self.failures.append(Failure(kind, started, ended, tunnel, ident))

    def to_look_up(self) -> set[int]:
        """The requests whose connection failed: the gateway's log may say it answered."""
        return {f.ident for f in self.failures if f.ident and f.kind not in LOST}


def judge(
    tally: Tally, windows: list[Window], logged: dict[int, int] | None = None
) -> dict[str, Any]:
    """The counts by category, with each connection-level failure and cut-off judged against
    the fault windows (a gateway window explains both, a client's only its own cut-offs).

    `logged` maps request ids to the status the gateway's log says it answered: a reset or
    close outside every window after the gateway logged an error answer is refused with that
    reason (the answer was sent, and lost to the reset: see docs/reliability.md, "Soak")."""
    logged = logged or {}
    refused = Counter(tally.refused)
    unexplained: Counter[str] = Counter()
    samples: list[str] = []  # the first few unexplained and lost, to look into
    lost: Counter[str] = Counter()
    gateway = [w for w in windows if w.tunnel is None]
    for f in tally.failures:
        what = f"{f.kind} on tunnel s{f.tunnel}, {f.started:.2f}-{f.ended:.2f} s, id {f.ident}"
        if f.kind in LOST:
            lost[f.kind] += 1
            samples.append(what)
        elif f.kind == CUT_OFF and any(w.covers(f.started, f.ended, f.tunnel) for w in windows):
            refused[CUT_OFF] += 1
        elif f.kind in CONNECTION_FAILURES and any(
            w.covers(f.started, f.ended, f.tunnel) for w in gateway
        ):
            refused[f.kind] += 1
        elif f.kind in CONNECTION_FAILURES and logged.get(f.ident, 0) >= 400:
            refused[f"{f.kind} after the gateway's {logged[f.ident]} (its log)"] += 1
        else:
            unexplained[f.kind] += 1
            samples.append(what)
    outside = sum(not any(w.covers(s, e, t) for w in windows) for s, e, t in tally.refusal_times)
    requests = tally.ok + sum(refused.values()) + tally.corrupted + sum(lost.values())
    requests += sum(unexplained.values())
    return {
        "requests": requests,
        "ok": tally.ok,
        "refused": dict(sorted(refused.items())),
        "refused_total": sum(refused.values()),
        "gateway_refusals_outside_fault_windows": outside,
        "corrupted": tally.corrupted,
        "corrupt_samples": tally.corrupt_samples,
        "lost": sum(lost.values()),
        "lost_by_kind": dict(lost),
        "unexplained": sum(unexplained.values()),
        "unexplained_by_kind": dict(unexplained),
        "failure_samples": samples[:CORRUPT_SAMPLES],
        "bytes_up": tally.bytes_up,
        "bytes_down": tally.bytes_down,
        "passed": tally.corrupted == 0 and not lost and not unexplained and tally.ok > 0,
    }


# --- flatness -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # seconds since the run started
    life: int  # which gateway process (0, then 1 after the restart)
    rss_kib: int
    fds: int
    loadavg: float


def _median(values: list[int]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, value), per minute."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    den = sum((t - mean_t) ** 2 for t, _ in points)
    if den == 0:
        return 0.0
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / den


def flatness(samples: list[Sample], warmup: float, window: float) -> dict[str, Any]:
    """One gateway process's RSS and fds: at its start, its first `window` after `warmup`,
    its last `window`, its max, the slope after the warm-up, and whether the growth from the
    first window to the last stays within the bounds. A life too short for two windows after
    its warm-up is reported, not judged."""
    begin, end = samples[0].t, samples[-1].t
    settled = [s for s in samples if s.t >= begin + warmup]
    first = [s for s in settled if s.t <= begin + warmup + window]
    last = [s for s in settled if s.t >= end - window]
    judged = end - begin >= warmup + 2 * window and bool(first) and bool(last)
    rss_first, rss_last = _median([s.rss_kib for s in first]), _median([s.rss_kib for s in last])
    fds_first, fds_last = _median([s.fds for s in first]), _median([s.fds for s in last])
    rss_bound = max(RSS_GROWTH_MAX_KIB, RSS_GROWTH_MAX_FRACTION * rss_first)
    fds_bound = max(FDS_GROWTH_MAX, FDS_GROWTH_MAX_FRACTION * fds_first)
    return {
        "life": samples[0].life,
        "from_s": round(begin, 1),
        "to_s": round(end, 1),
        "samples": len(samples),
        "judged": judged,
        "rss_kib": {
            "start": samples[0].rss_kib,
            "first_window": round(rss_first),
            "last_window": round(rss_last),
            "max": max(s.rss_kib for s in samples),
            "slope_per_min": round(_slope_per_minute([(s.t, s.rss_kib) for s in settled]), 1),
            "growth_bound": round(rss_bound),
        },
        "fds": {
            "start": samples[0].fds,
            "first_window": round(fds_first),
            "last_window": round(fds_last),
            "max": max(s.fds for s in samples),
            "slope_per_min": round(_slope_per_minute([(s.t, s.fds) for s in settled]), 2),
            "growth_bound": round(fds_bound),
        },
        "flat": (not judged)
        or (rss_last - rss_first <= rss_bound and fds_last - fds_first <= fds_bound),
    }


def flatness_by_life(samples: list[Sample], warmup: float, window: float) -> list[dict[str, Any]]:
    lives = sorted({s.life for s in samples})
    return [flatness([s for s in samples if s.life == n], warmup, window) for n in lives]
