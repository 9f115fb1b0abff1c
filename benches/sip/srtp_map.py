#!/usr/bin/env python3
"""SRTP variant of ../shared/bench/sip/sip_map.py (issue 14), for srtpgen.
  srtp_map.py csv N [--a-base 10000 --b-base 20000 --pool 16]  -> calls_uac.csv, calls_uas.csv
  srtp_map.py merge map_a.txt map_b.txt OUT.map                 -> srtpgen call map
csv: like sip_map.py (same generator port pools) plus one fresh random SDES key
(AES_CM_128_HMAC_SHA1_80: 16-byte key + 14-byte salt, base64) per call and side.
merge: joins "MAPA id a_port relay_a a_key relay_key_a" / "MAPB id b_port relay_b b_key
relay_key_b" by bench call id into
  id a_port relay_a b_port relay_b a_key relay_key_a b_key relay_key_b
(srtpgen: A sends with a_key and decrypts with relay_key_a; B likewise)."""
import base64, os, re, sys
if len(sys.argv) < 2 or sys.argv[1] not in ("csv", "merge"):
    sys.exit(__doc__)
key = lambda: base64.b64encode(os.urandom(30)).decode()
if sys.argv[1] == "csv":
    n = int(sys.argv[2]); a_base, b_base, pool = 10000, 20000, 16
    args = sys.argv[3:]
    for i in range(0, len(args), 2):
        v = int(args[i + 1])
        if args[i] == "--a-base": a_base = v
        if args[i] == "--b-base": b_base = v
        if args[i] == "--pool": pool = v
    with open("calls_uac.csv", "w") as f:
        f.write("SEQUENTIAL\n")
        for i in range(n):
            f.write("sip-%d;%d;%s;\n" % (i, a_base + i % pool, key()))
    with open("calls_uas.csv", "w") as f:
        f.write("SEQUENTIAL\n")
        for i in range(n):
            f.write("%d;%s;\n" % (b_base + i % pool, key()))
    print("wrote calls_uac.csv calls_uas.csv for %d calls (SRTP keys)" % n)
else:
    K = r"([A-Za-z0-9+/=]{40})"
    a, b = {}, {}
    for line in open(sys.argv[2], errors="replace"):
        m = re.search(r"MAPA (\S+) (\d+) (\d+) %s %s" % (K, K), line)
        if m: a[m.group(1)] = m.groups()[1:]
    for line in open(sys.argv[3], errors="replace"):
        m = re.search(r"MAPB (\S+) (\d+) (\d+) %s %s" % (K, K), line)
        if m: b[m.group(1)] = m.groups()[1:]
    n = 0
    with open(sys.argv[4], "w") as f:
        for cid in a:
            if cid in b:
                (ap, ra, ak, rak), (bp, rb, bk, rbk) = a[cid], b[cid]
                f.write("%s %s %s %s %s %s %s %s %s\n" % (cid, ap, ra, bp, rb, ak, rak, bk, rbk)); n += 1
    print("merged %d calls (uac %d, uas %d) -> %s" % (n, len(a), len(b), sys.argv[4]))
