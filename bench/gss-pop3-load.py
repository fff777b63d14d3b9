#!/usr/bin/python3
"""popgate benchmark: full AUTH GSSAPI logins (RFC 4752 / RFC 5034) over plain POP3.

    /usr/bin/python3 bench/gss-pop3-load.py HOST PORT TARGET USER CONCURRENCY SECONDS

CONCURRENCY threads each run back-to-back logins until SECONDS have passed
(a login under way then is finished and counted; each thread does at least
one):

    connect, greeting, AUTH GSSAPI, "+ ", initial token (a NEW initiator
    context per login, mutual authentication), "+ <AP-REP token>", feed it
    to the context (complete), empty response, "+ <wrapped offer>", unwrap
    and check it offers "no security layer", wrap [01 00 00 00] + USER as
    authzid, "+OK" (popgate has logged in to the backend), QUIT, "+OK".

Uses the ccache/krb5.conf from the environment (KRB5CCNAME, KRB5_CONFIG).
Prints one JSON line: logins, elapsed_ms, latencies_ms, cpu_ms (this
process, all threads), and error (the first failure, which stops every
thread) when one happened. Needs Debian's python3-gssapi (/usr/bin/python3).
"""
import base64
import json
import socket
import sys
import threading
import time

import gssapi


class LoginError(Exception):
    pass


def read_line(f, step):
    line = f.readline(65536)
    if not line.endswith(b"\r\n"):
        raise LoginError("%s: connection closed or line too long (%r)" % (step, line[:80]))
    return line[:-2].decode("latin1")


def expect_ok(f, step):
    line = read_line(f, step)
    if not line.startswith("+OK"):
        raise LoginError("%s: server replied %r" % (step, line[:120]))
    return line


def expect_cont(f, step):
    line = read_line(f, step)
    if not line.startswith("+ ") and line != "+":
        raise LoginError("%s: expected a '+ ' continuation, got %r" % (step, line[:120]))
    return base64.b64decode(line[2:]) if len(line) > 2 else b""


def login_once(host, port, name, creds, user):
    t0 = time.perf_counter()
    s = socket.create_connection((host, port), timeout=15)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
        expect_ok(f, "greeting")
        s.sendall(b"AUTH GSSAPI\r\n")
        expect_cont(f, "AUTH GSSAPI")
        ctx = gssapi.SecurityContext(
            name=name,
            creds=creds,
            mech=gssapi.MechType.kerberos,
            usage="initiate",
            flags=[gssapi.RequirementFlag.integrity, gssapi.RequirementFlag.mutual_authentication],
        )
        s.sendall(base64.b64encode(ctx.step()) + b"\r\n")
        rep = expect_cont(f, "initial token")
        out = ctx.step(rep)
        if not ctx.complete:
            raise LoginError("context not complete after the acceptor's token")
        s.sendall(base64.b64encode(out or b"") + b"\r\n")
        offer = ctx.unwrap(expect_cont(f, "empty response"))
        if offer.message[:1] != b"\x01":
            raise LoginError("security layer offer %r lacks 'no security layer'" % offer.message[:4])
        answer = ctx.wrap(b"\x01\x00\x00\x00" + user.encode("utf-8"), False)
        s.sendall(base64.b64encode(answer.message) + b"\r\n")
        expect_ok(f, "security layer answer")
        s.sendall(b"QUIT\r\n")
        expect_ok(f, "QUIT")
    finally:
        s.close()
    return (time.perf_counter() - t0) * 1000.0


def main():
    if len(sys.argv) != 7:
        sys.stderr.write("usage: gss-pop3-load.py HOST PORT TARGET USER CONCURRENCY SECONDS\n")
        return 2
    host, port, target, user = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    concurrency, seconds = int(sys.argv[5]), float(sys.argv[6])
    name = gssapi.Name(target, gssapi.NameType.kerberos_principal)
    creds = gssapi.Credentials(usage="initiate")
    latencies = []
    errors = []
    lock = threading.Lock()
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds

    def worker():
        first = True  # every thread completes at least one login
        while not errors and (first or time.perf_counter() < deadline):
            first = False
            try:
                ms = login_once(host, port, name, creds, user)
            except Exception as e:  # first failure stops everyone
                with lock:
                    errors.append("%s: %s" % (type(e).__name__, e))
                return
            with lock:
                latencies.append(ms)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = {
        "logins": len(latencies),
        "elapsed_ms": (time.perf_counter() - start) * 1000.0,
        "latencies_ms": latencies,
        "cpu_ms": (time.process_time() - cpu0) * 1000.0,
    }
    if errors:
        result["error"] = errors[0]
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
