"""The tunnelgate benchmark: tunnelgate against the direct path, the nginx two-hop proxy chain
(the C floor of a two-relay path, :mod:`bench.twohop`) and PageKite, on loopback.

``make bench`` runs :mod:`bench.run` (requests per second, latency, bulk throughput, CPU per
request, memory per tunnel, integrity; tunnelgate also as ratios to direct and to the two-hop
chain, measured in the same run); ``make bench-scale`` runs :mod:`bench.scale` (10,000
idle tunnels and 10,000 idle public connections on one gateway). Both write to
``bench/results/``; scratch files (nginx config, logs, the random files) go to ``bench/.work/``.

Every process the benchmark starts is tracked by PID in :class:`bench.procs.Processes` and
stopped by PID when the run ends, fails or is interrupted. The pieces that need Debian packages
(nginx, wrk, PageKite) have pure-Python stand-ins (:func:`bench.origin.start_python_origin`,
the relays of :mod:`bench.relay`, :class:`bench.loadgen.PyLoad`) that the smoke test runs
through the same orchestration.
"""
