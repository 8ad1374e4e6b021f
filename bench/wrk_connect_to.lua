-- wrk over HTTPS to a name that does not resolve (bench.localhost): the URL keeps the name,
-- which wrk sends as SNI, and this script says where to connect instead of looking it up.
-- wrk calls wrk.resolve(host, service) once before the run; WRK_CONNECT_TO is the address.
-- bench/loadgen.py passes it for HTTPS targets only. wrk verifies no certificate
-- (SSL_VERIFY_NONE): the servers are the benchmark's own processes on loopback.
function wrk.resolve(host, service)
   wrk.addrs = wrk.lookup(os.getenv("WRK_CONNECT_TO") or "127.0.0.1", service)
end
