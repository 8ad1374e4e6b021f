"""Every bound and timeout in one place, with its unit and the precedent it follows.

Durations are float seconds, sizes are bytes, counts are plain ints. The gateway's
command line exposes the ones an operator tunes; the rest are fixed here on purpose.
"""

from typing import Final

SECONDS: Final = 1.0
KiB: Final = 1024
MiB: Final = 1024 * KiB

# --- tunnel protocol (proto/) -------------------------------------------------
# Initial per-stream credit. HTTP/2 starts at 64 KiB and most servers raise it at once;
# 256 KiB covers a typical page in one round trip on loopback and LAN.
INITIAL_STREAM_WINDOW: Final = 256 * KiB
# A window grows (doubling) only while the sender reports being window-bound and the
# receiver keeps up. 16 MiB is what Linux autotuning allows a TCP receive buffer by default.
MAX_STREAM_WINDOW: Final = 16 * MiB
# The sum of all stream windows one connection may have granted: bounds what a peer
# can make us buffer, whatever it does, to this plus the initial windows.
MAX_CONNECTION_WINDOW: Final = 64 * MiB
# Largest frame payload accepted. Bigger than one socket read (uvloop reads 256 KiB).
MAX_FRAME_PAYLOAD: Final = 1 * MiB
# Largest WebSocket message accepted on the tunnel: a batch of frames.
MAX_TUNNEL_MESSAGE: Final = 4 * MiB
# Control messages (register/registered/rejected) are small JSON objects.
MAX_CONTROL_PAYLOAD: Final = 16 * KiB
# The request target as a stream's OPEN metadata carries it, for the client's request log
# (the request head itself carries it whole): as much as a log line shows, and then some.
MAX_OPEN_TARGET: Final = 2 * KiB
# Concurrent streams per tunnel connection (HTTP/2 servers commonly allow 100-256;
# a tunnel multiplexes many browsers, so more).
MAX_STREAMS: Final = 512
# Data a stream may hold beyond its send window: one socket read; the source is paused
# as soon as anything is held back.
MAX_STREAM_PENDING: Final = 1 * MiB
# First read buffer of a tunnel WebSocket on the gateway. picows doubles it while messages
# are larger, so an idle tunnel costs 4 KiB here instead of the 64 KiB a bulk one grows to.
TUNNEL_READ_BUFFER: Final = 4 * KiB
# Tunnels one connection may register (`tunnelgate start` with several).
MAX_TUNNELS_PER_CONNECTION: Final = 32
# `register` messages one connection may send, rejected ones included; past it the
# connection is closed (ENHANCE_YOUR_CALM). Twice the tunnels leaves room for retries.
MAX_REGISTRATIONS_PER_CONNECTION: Final = 2 * MAX_TUNNELS_PER_CONNECTION

# --- flood budgets (proto/flood.py), after HTTP/2's CVE-2019-9512..9518, -2023-44487 --
# Frames that make us work but move no stream data (PING, PONG, refused OPEN, frames
# for closed streams, empty DATA, CONTROL...) spend tokens from a bucket of FLOOD_BURST
# that refills at FLOOD_RATE per second, plus FLOOD_EARN_PER_STREAM for every stream
# we open or reset (frames may cross its end in flight). nghttp2 closes a peer with
# 1,000 replies queued; honest peers send one PING per heartbeat (10 s).
FLOOD_BURST: Final = 1000
FLOOD_RATE: Final = 100.0  # tokens per second
FLOOD_EARN_PER_STREAM: Final = 4
# Credit is returned in quarter windows (64 KiB and up): a WINDOW below this is charged.
MIN_HONEST_WINDOW_INCREMENT: Final = 1 * KiB
# Frames handled per connection per event-loop turn; the rest waits for the next turn
# (its socket is not read meanwhile), so one huge message of tiny frames cannot starve
# other connections (about a millisecond of work per slice). Honest batches are a few
# KiB (sent at 1 KiB, EAGER_FLUSH_BYTES); a rare big one costs a few extra turns.
MAX_FRAMES_PER_TURN: Final = 1024
# Replies the core queued (PONG, refusals) while the peer was not reading what we sent
# (our write buffer over its high-water mark): past this the peer is closed, not
# buffered for (nghttp2's max_outbound_ack is 1,000).
MAX_UNREAD_REPLIES: Final = 1000
# A tunnel whose peer does not take what we send for this long is dropped: our unsent
# data can only be what its credit allowed, but it is held for nothing.
TUNNEL_WRITE_STALL_TIMEOUT: Final = 30 * SECONDS
# A graceful close waits for our unsent bytes to go out; a peer that does not read
# would hold it (and them) forever, so the socket is aborted after this long.
TUNNEL_CLOSE_TIMEOUT: Final = 5 * SECONDS

# --- public HTTP edge (gateway/) ----------------------------------------------
# nginx's large_client_header_buffers is 4 x 8 KiB; node allows 16 KiB. We take 16 KiB.
MAX_HEADER_BYTES: Final = 16 * KiB
MAX_HEADER_COUNT: Final = 100  # as h11/node (node: 2000, apache: 100)
HEAD_TIMEOUT: Final = 10 * SECONDS  # nginx client_header_timeout is 60 s; slowloris wants less
RESPONSE_TIMEOUT: Final = 60 * SECONDS  # nginx proxy_read_timeout
KEEPALIVE_TIMEOUT: Final = 75 * SECONDS  # nginx keepalive_timeout
# Transport write-buffer water marks: above HIGH we stop granting credit to the tunnel.
WRITE_HIGH_WATER: Final = 256 * KiB
WRITE_LOW_WATER: Final = 64 * KiB
# Response bytes the whole gateway may hold for public clients that read slowly (high
# water marks of paused connections and what was written past them). Past it new
# requests get 503 and tunnel windows shrink (gateway/buffers.py). 512 stalled readers
# at the initial window fit; a slow-read attack on many tunnels does not grow past it.
MAX_HELD_RESPONSE_BYTES: Final = 256 * MiB
# ...of which one address (IPv6: one /64) may hold a quarter: a connection whose held bytes
# would take its address past it is reset (its response cut off), so slow readers from one
# address cannot put the whole gateway under pressure (slowhttptest -X from one address
# did, 12 s in). Envoy's overload manager resets the streams that hold the most buffer
# (reset_high_memory_stream); a quarter is 250 stalled readers or more per address.
MAX_HELD_RESPONSE_BYTES_PER_ADDRESS: Final = MAX_HELD_RESPONSE_BYTES // 4
# A public client whose write buffer is over its high-water mark and that takes nothing
# at all for this long is reset (its response cut off): nginx send_timeout (60 s, "if the
# client does not receive anything within this time"), HAProxy's `timeout client` (30 s in
# its examples). Any progress starts it again: a slow reader is bounded by the budgets.
SEND_TIMEOUT: Final = 30 * SECONDS
# A request body that stops for this long (no byte read from the client, while the tunnel
# takes what comes) gets 408 and the connection is closed; its stream is reset, so the
# app sees the body cut off. nginx client_body_timeout (60 s, between two reads); Apache
# mod_reqtimeout's body=20. The response timeout counts from the body's end (nginx's
# proxy_read_timeout from the last write upstream): an upload may take as long as it keeps
# moving; while the tunnel holds the body back (the app does not read it), the response
# timeout bounds that stall (nginx's proxy_send_timeout).
BODY_IDLE_TIMEOUT: Final = 20 * SECONDS
# Lingering close (RFC 9112 §9.6): after an answer given before the request was all read,
# the connection is half-closed and what the client still sends is read and dropped, so
# its unread bytes do not make the kernel reset the connection (and the answer with it)
# while the client is still uploading. nginx: lingering_time 30 s in all, lingering_timeout
# 5 s between reads; the connection keeps its place under the caps meanwhile. Bytes too
# are bounded (nginx has no such bound): dropping more than a large upload costs CPU only.
LINGER_TIME: Final = 30 * SECONDS
LINGER_TIMEOUT: Final = 5 * SECONDS
LINGER_MAX_BYTES: Final = 64 * MiB
# The streams of one tunnel connection that one address (IPv6: one /64) may hold at once,
# as a fraction of --max-streams (384 of 512): past it that address gets 503 tunnel_busy,
# and a quarter of the streams is always left to everyone else. nginx limit_conn keyed by
# address and host, HAProxy's per-source stick-table conn_cur limits per backend. No less:
# a NAT or a load test from one machine must fit (tests/e2e/test_bulk.py sends 300
# requests at once from one address; the bench sweeps to 200 connections).
ADDRESS_STREAM_SHARE: Final = 3 / 4
# While nothing is held for slow readers, free heap memory is given back to the kernel
# this often (allocator.trim): RSS returns near its baseline after a burst or an attack.
TRIM_INTERVAL: Final = 15 * SECONDS

# --- public connections (gateway/caps.py) -------------------------------------
# A connection holds its place from accept until it closes (a tunnel client's until its
# tunnel connection ends). One address (IPv6: one /64) may hold this many at once: enough
# for a NAT full of browsers (6 connections each) or an office of tunnel clients, far
# below what starves everyone else. nginx's limit_conn and HAProxy's per-source
# stick-table limits are the precedents; both are usually set in the tens to hundreds.
MAX_CONNECTIONS_PER_ADDRESS: Final = 1000
# With no --max-connections, the gateway holds as many public connections as its open-file
# limit allows (raised to the hard limit at start-up) minus a reserve for every descriptor
# that is not a public connection: stdio and log files, the listeners, the event loop's own
# (epoll, signal pipe, libuv's spare for EMFILE), admin API clients, outgoing connections
# (controller, Redis, other gateways) and local files (certificates, the state dir). A
# public connection costs one descriptor here, as its requests travel over a tunnel that is
# itself a public connection. HAProxy derives its maxconn from the open-file limit the same
# way, after setting aside what its listeners, pipes and checks need. The reserve is a tenth
# of the limit, and at least FD_RESERVE_MIN.
FD_RESERVE_DIVISOR: Final = 10
FD_RESERVE_MIN: Final = 64
# Whatever --max-connections says, a public connection is refused once accepting it left
# fewer than this many descriptors free (accept() returns the lowest free number, so the
# new one's number tells), visibly and counted. The log and the admin API keep working,
# and public connections alone never take accept() to EMFILE, where libuv closes new
# connections unseen and uvloop closes the listener if even that fails (docs/limits.md).
FD_HEADROOM: Final = 16


def default_max_connections(open_files: int) -> int:
    """The default --max-connections for a soft RLIMIT_NOFILE of `open_files`."""
    reserve = max(FD_RESERVE_MIN, open_files // FD_RESERVE_DIVISOR)
    return max(1, open_files - reserve)


# --- TLS certificates (gateway/certfile.py, selfsigned.py) ----------------------
# A certificate that expires within this long is logged as a warning at every load; the
# self-signed default is replaced instead. certbot renews 30 days before expiry, so a
# renewal that stopped working shows here with two weeks left to fix it by hand.
CERT_EXPIRY_WARNING: Final = 14 * 24 * 3600 * SECONDS
# The self-signed default's lifetime: Mozilla's guidelines (5.5 and later) allow a
# certificate at most 366 days; a year, then it is made anew.
SELF_SIGNED_VALIDITY: Final = 365 * 24 * 3600 * SECONDS
# ...and it starts this long before it was made, for clients whose clocks run behind.
SELF_SIGNED_BACKDATE: Final = 3600 * SECONDS
# Largest certificate chain or key file read. A chain with its intermediates is a few
# KiB (even a whole CA bundle is some 200 KiB); anything bigger is the wrong file.
MAX_CERT_FILE_BYTES: Final = 1 * MiB

# --- TCP tunnels (gateway/tcp.py) --------------------------------------------------
# Random ports tried for a tunnel that asked for none, before "no free port left".
TCP_PORT_TRIES: Final = 256
TCP_BACKLOG: Final = 1024  # per tunnel port; the public listener's is 4096

# --- ACME: per-host certificates from a CA (gateway/acme*.py) --------------------
# Orders in flight at once (one worker each). certbot orders one at a time; Let's
# Encrypt allows 300 new orders per account per 3 hours and 20 requests a second per
# address on its busiest endpoints, so four at once keep a burst of new tunnels moving
# without coming near either.
ACME_MAX_ORDERS: Final = 4
# Hosts waiting for a worker; past it ensure() drops the host (its next handshake asks
# again), so a burst of new names costs bounded memory.
ACME_MAX_QUEUED: Final = 256
# Certificates kept in memory with their SSLContext (a few KiB each); the least recently
# used is dropped from memory, not from disk, and loaded again on its next handshake
# (which gets the self-signed fallback meanwhile). Hosts in back-off: as many again.
ACME_MAX_CACHED_HOSTS: Final = 1024
# One HTTP exchange with the CA (requests' connect and read timeouts). certbot allows
# 45 s; a CA this slow is treated as unavailable, and shutdown waits at most this long
# for a worker thread that is in a call.
ACME_REQUEST_TIMEOUT: Final = 10 * SECONDS
# A whole order, newOrder to certificate: certbot's poll_and_finalize deadline.
ACME_ORDER_TIMEOUT: Final = 90 * SECONDS
# Polling an authorization or an order: once a second as certbot does, or when the CA's
# Retry-After says, up to the max.
ACME_POLL_INTERVAL: Final = 1 * SECONDS
ACME_MAX_POLL_INTERVAL: Final = 10 * SECONDS
# The CA refused an order for a host (failed challenge, refused name): that host waits
# 5 min, doubling, at most 6 h apart (Caddy's certmagic waits 1 min to 6 h). Starting at
# 5 min keeps a host that keeps failing under Let's Encrypt's 5 failed validations per
# hostname per hour (4 attempts in the first hour).
ACME_RETRY_INITIAL: Final = 300 * SECONDS
ACME_RETRY_MAX: Final = 6 * 3600 * SECONDS
# The CA could not be reached or failed (5xx, timeouts): every order waits, 5 s doubling
# to at most 10 min, then goes on where it was.
ACME_UNAVAILABLE_INITIAL: Final = 5 * SECONDS
ACME_UNAVAILABLE_MAX: Final = 600 * SECONDS
# Rate limited (HTTP 429, `rateLimited`): every order waits for the CA's Retry-After
# (Let's Encrypt sends one), or this long without one; a Retry-After is believed up to
# a day (its longest limits refill within a week, a day at a time).
ACME_RATE_LIMIT_HOLD: Final = 3600 * SECONDS
ACME_MAX_RETRY_AFTER: Final = 24 * 3600 * SECONDS
# Renewal: 30 days before expiry, or once a third of the lifetime is left if that is
# later (short-lived certificates). Let's Encrypt: renew 90-day certificates after 60
# days; certbot: renew_before_expiry 30 days.
ACME_RENEW_BEFORE: Final = 30 * 24 * 3600 * SECONDS
ACME_RENEW_FRACTION: Final = 1 / 3
# How often the certificates in memory are checked for renewal (each handshake's
# ensure() checks its own too). certbot's timer runs twice a day.
ACME_RENEW_CHECK_INTERVAL: Final = 3600 * SECONDS

# --- tunnel sessions ----------------------------------------------------------
HEARTBEAT_INTERVAL: Final = 10 * SECONDS
HEARTBEAT_TIMEOUT: Final = 30 * SECONDS
IDLE_TIMEOUT: Final = 0.0  # 0 = never
RECONNECT_GRACE: Final = 30 * SECONDS
HANDSHAKE_TIMEOUT: Final = 10 * SECONDS  # WebSocket upgrade + first registration
# --handshake-timeout: a TLS ClientHello and handshake, from accept (nginx gives the
# handshake its client_header_timeout, 60 s; a slowloris on the handshake wants less).
TLS_HANDSHAKE_TIMEOUT: Final = 10 * SECONDS
# After the drain (or a second signal): how long the gateway waits for its listeners and
# tasks to wind down once what was still open has been cut off.
SHUTDOWN_TIMEOUT: Final = 5 * SECONDS
# --drain-timeout: on SIGTERM, what in-flight requests, streamed responses and upgraded
# connections get to finish before they are cut off. 30 s as Kubernetes'
# terminationGracePeriodSeconds (hypercorn's graceful_timeout is 3 s; uvicorn has none:
# it waits for ever); a second signal cuts the wait short.
DRAIN_TIMEOUT: Final = 30 * SECONDS
# While draining, how often tunnel connections are checked for their last stream's end
# (the stream layer has no per-stream callback to the session: it would cost every
# request a call); a draining session is closed at most this long after it went idle.
DRAIN_CHECK_INTERVAL: Final = 0.1 * SECONDS
# --grace-hold: how long a public request to a name held for its owner waits for the
# owner's return before its 502; 0 = no waiting (today's answer, at once). Off by default:
# a wait looks like a slow app to the public client, which an operator should choose.
GRACE_HOLD: Final = 0.0
# Requests one held name may have waiting at once; past it, 503 hold_queue_full at once
# (HAProxy's per-server `maxqueue` answers 503 the same way). Each waiting request keeps
# its public connection (under the connection caps) and at most one read of it: 128 is a
# page's worth of browsers retrying, well under MAX_STREAMS, so the returning tunnel can
# open a stream for each.
GRACE_HOLD_QUEUE: Final = 128
MAX_TUNNELS_PER_TOKEN: Final = 32
AUTH_FAIL_RATE: Final = 20  # per minute per source address

# --- workers (--workers N: gateway/workers.py) ---------------------------------
# A worker that exits unexpectedly is started again after this delay, doubled for each
# fast crash in a row (one within WORKER_FAST_CRASH of its start), up to the maximum.
# systemd's RestartSec is 100 ms; nginx's master restarts a worker at once.
WORKER_RESTART_DELAY: Final = 0.1 * SECONDS
WORKER_RESTART_DELAY_MAX: Final = 5 * SECONDS
# A crash this soon after its start is "fast": the worker likely crashes again.
WORKER_FAST_CRASH: Final = 10 * SECONDS
# Fast crashes in a row of one worker after which the supervisor gives up: it stops the
# others and exits 1 (systemd's StartLimitBurst=5 in StartLimitIntervalSec=10s).
WORKER_MAX_FAST_CRASHES: Final = 5
# On SIGTERM the supervisor gives its workers --drain-timeout, plus SHUTDOWN_TIMEOUT, plus
# this, to exit; one still running then is killed (SIGKILL).
WORKER_STOP_MARGIN: Final = 5 * SECONDS

# --- JWT and the controller (gateway/jwt_auth.py, controller.py) ---------------
# Clock skew forgiven on a JWT's exp, nbf and iat. RFC 7519 (4.1.4) allows "some small
# leeway, usually no more than a few minutes"; Spring Security's JwtTimestampValidator
# forgives 60 s by default. Clocks kept by NTP are well inside it; an expired token is
# still refused a minute after its exp at most.
JWT_LEEWAY: Final = 60 * SECONDS
# RFC 7518 (3.2): an HS256 key must be at least as long as the hash, 256 bits; a shorter
# --jwt-secret could be brute-forced offline from any one token.
MIN_JWT_SECRET_BYTES: Final = 32
# RSA keys shorter than this are refused at start-up: NIST SP 800-131A disallows them
# for signatures, and PyJWT warns below the same size.
MIN_RSA_KEY_BITS: Final = 2048
# Largest --jwt-public-key file read: a PEM key or certificate is a few KiB, a JWKS with a
# key or two in rotation about as much. Anything bigger is the wrong file.
MAX_JWT_KEY_FILE_BYTES: Final = 256 * KiB
# Keys one JWKS may hold: an issuer publishes two or three while it rotates.
MAX_JWKS_KEYS: Final = 32
# Entries in a token's "tunnelgate" claim lists (names, ports), and the length of its
# subject: a token is sent on every connect and sits under MAX_HEADER_BYTES anyway.
MAX_CLAIM_ENTRIES: Final = 256
MAX_SUBJECT_LENGTH: Final = 256
# --controller-timeout and --controller-cache-ttl (SPEC). 3 s is well above a healthy
# controller's answer and well below the client's CONNECT_TIMEOUT.
CONTROLLER_TIMEOUT: Final = 3 * SECONDS
CONTROLLER_CACHE_TTL: Final = 60 * SECONDS
# Positive answers kept for reuse (least recently used go first), about 300 bytes each:
# 3 MB at most, and more tunnels than one gateway serves.
MAX_CONTROLLER_CACHE: Final = 10_000
# Tokens the controller allowed, remembered this long: from an address on a failed-auth
# cool-down they are still asked about (SPEC). As long as the longest cool-down
# (gateway/ratelimit.py), so a user behind a noisy NAT is never locked out by it.
CONTROLLER_KNOWN_TOKEN_TTL: Final = 3600 * SECONDS
# Names the controller reserved for its accounts, kept by the gateway (the oldest go
# first past it): far more than accounts name their subdomains.
MAX_RESERVED_NAMES: Final = 100_000
# Names one answer may reserve, and the largest answer read: an answer is a small JSON
# object; a controller that sends megabytes is broken, and is treated as unavailable.
MAX_CONTROLLER_NAMES: Final = 1000
MAX_CONTROLLER_ANSWER: Final = 64 * KiB
# A controller's refusal reason is shown to the client (stderr): one line, this long at most.
MAX_CONTROLLER_REASON: Final = 200
# Connections to the controller at once (aiohttp's default connector limit); more calls
# wait for one, within the same timeout.
MAX_CONTROLLER_CONNECTIONS: Final = 100

# --- cluster registry (gateway/redis_registry.py, docs/cluster.md) ---------------
# Every Redis call (one script, one round trip) fails after this long, and the
# registration it served is refused registry_unavailable (fail closed). A healthy Redis
# on the same network answers in well under a millisecond; as the controller's, looser.
REDIS_TIMEOUT: Final = 1 * SECONDS
# A node's online leases outlive its last refresh by 1.5 x max(--reconnect-grace, this),
# refreshed every third of that: a node killed with -9 frees its names between the grace
# and 1.5 x the grace after it died. The floor keeps a 0 grace from making every Redis
# hiccup of a second cost a node its leases.
LEASE_LIVENESS_MIN: Final = 3 * SECONDS
# While Redis is unreachable the keeper tries again this often (refresh, re-assert,
# queued releases and holds); once it answers, at the refresh interval again.
REDIS_RETRY_INTERVAL: Final = 1 * SECONDS
# Leases refreshed by one script call: a call stays short (Redis runs scripts one at a
# time) and a node with many names makes a few calls per round.
MAX_LEASES_PER_REFRESH: Final = 500
# Connections to Redis a node holds at once; more calls wait for one, within REDIS_TIMEOUT.
MAX_REDIS_CONNECTIONS: Final = 32

# --- client -------------------------------------------------------------------
LOCAL_CONNECT_TIMEOUT: Final = 5 * SECONDS
# Dev servers restart: a refused local connection is retried for this long before a 502.
LOCAL_CONNECT_RETRY: Final = 2 * SECONDS
LOCAL_CONNECT_RETRY_INTERVAL: Final = 0.1 * SECONDS
MAX_IDLE_LOCAL_CONNECTIONS: Final = 64  # keep-alive pool to the local app, per tunnel
# Below the keep-alive timeouts of common dev servers (Node and uvicorn close idle
# connections after 5 s), so we close a pooled connection before the app does and seldom
# write a request into a connection the app is closing.
LOCAL_IDLE_TIMEOUT: Final = 4 * SECONDS
# One connect attempt to the gateway: TCP connect, TLS and the answer to the upgrade
# together (then it is retried). As the gateway's HANDSHAKE_TIMEOUT; left to the OS, a
# connect to a silent address takes about two minutes.
CONNECT_TIMEOUT: Final = 10 * SECONDS
# Reconnect back-off, "full jitter" (AWS Architecture Blog, 2015): retry n waits a random
# time in [0, min(BACKOFF_MAX, BACKOFF_INITIAL * 2**(n-1))], so the first retry comes
# within 0.5 s and clients dropped together do not come back in step.
BACKOFF_INITIAL: Final = 0.5 * SECONDS
BACKOFF_MAX: Final = 30 * SECONDS
# When the client closes (after its drain, or on a second signal), how long it waits for
# its goodbye (GOAWAY, WebSocket close) to go out before it drops the connection.
GOODBYE_TIMEOUT: Final = 0.5 * SECONDS
# The client's --drain-timeout: on SIGINT/SIGTERM, what its streams (requests, upgraded and
# TCP/TLS connections) get to finish after its GOAWAY before they are cut off. Shorter than
# the gateway's 30 s: a person at a terminal waits for it (a second Ctrl+C ends it at once),
# and under Kubernetes' 30 s grace period it leaves the pod time to exit.
CLIENT_DRAIN_TIMEOUT: Final = 10 * SECONDS
# While the client drains, how often it looks for its last stream's end (the stream layer
# has no callback for it); it closes at most this long after that.
CLIENT_DRAIN_CHECK_INTERVAL: Final = 0.05 * SECONDS

# --- cluster: the link between gateways (proto/link.py, gateway/cluster*.py) ----------
# A link connection sends its whole preamble within this of accept, or is closed (as
# HANDSHAKE_TIMEOUT for a tunnel's first message).
LINK_PREAMBLE_TIMEOUT: Final = 5 * SECONDS
# A preamble's timestamp is accepted this far from our clock either way; nonces are kept
# twice as long, so a replay is refused by one check or the other. Kerberos allows 5 min
# of skew; gateways of one cluster run NTP.
LINK_CLOCK_WINDOW: Final = 30 * SECONDS
# Nonces remembered (only of preambles whose HMAC checked: no one without the secret can
# fill it); when full, new links are refused until the oldest expire. 64 Ki in 60 s is
# about 1,000 forwarded connections per second per receiving node.
MAX_LINK_NONCES: Final = 65_536
# Link connections waiting for their preamble at once; more are closed at accept.
MAX_PENDING_LINKS: Final = 1024
# Connecting to the node that has a tunnel; then 502 node_unreachable (nginx
# proxy_connect_timeout is 60 s; a peer on the same network answers in milliseconds).
LINK_CONNECT_TIMEOUT: Final = 3 * SECONDS
# A route miss asks the shared registry where the name is; then 502 registry_unavailable.
CLUSTER_LOOKUP_TIMEOUT: Final = 2 * SECONDS
# name -> node answers kept for the next miss: pub/sub drops an entry when its name moves,
# the TTL bounds how stale one may be without it, and a failed forward drops it at once.
ROUTE_CACHE_TTL: Final = 2 * SECONDS
MAX_ROUTE_CACHE: Final = 10_000
# How often a node reads which TCP ports other nodes hold (pub/sub brings changes sooner),
# to listen on them and forward.
PORT_SCAN_INTERVAL: Final = 2 * SECONDS

# --- names --------------------------------------------------------------------
RANDOM_NAME_LENGTH: Final = 10  # 36^10 ~ 3.6e15 names
