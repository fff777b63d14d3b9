#!/usr/bin/python3
"""popgate benchmark: pre-generate GSS-API krb5 initial context tokens.

    /usr/bin/python3 bench/gss-tokens.py TARGET COUNT MUTUAL

With the ccache/krb5.conf from the environment (KRB5CCNAME, KRB5_CONFIG),
creates COUNT fresh initiator contexts for TARGET (e.g.
pop/localhost@POPGATE.TEST) and prints each one's initial token, base64, one
per line. Every token carries a new authenticator (fresh subkey, sequence
number and timestamp), so each is accepted exactly once by a replay-cached
acceptor. MUTUAL=1 requests mutual authentication (the acceptor answers with
an AP-REP), MUTUAL=0 does not (KPOP: a single round trip).

The first context fetches the service ticket from the KDC into the ccache;
later ones find it there. Needs Debian's python3-gssapi (/usr/bin/python3).
"""
import base64
import sys

import gssapi


def main() -> int:
    if len(sys.argv) != 4:
        sys.stderr.write("usage: gss-tokens.py TARGET COUNT MUTUAL(0|1)\n")
        return 2
    target, count, mutual = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    name = gssapi.Name(target, gssapi.NameType.kerberos_principal)
    creds = gssapi.Credentials(usage="initiate")
    flags = [gssapi.RequirementFlag.integrity]
    if mutual:
        flags.append(gssapi.RequirementFlag.mutual_authentication)
    out = sys.stdout
    batch = []
    for _ in range(count):
        ctx = gssapi.SecurityContext(
            name=name, creds=creds, mech=gssapi.MechType.kerberos, usage="initiate", flags=flags
        )
        batch.append(base64.b64encode(ctx.step()).decode("ascii"))
        del ctx
        if len(batch) >= 1000:
            out.write("\n".join(batch) + "\n")
            batch = []
    if batch:
        out.write("\n".join(batch) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
