"""Medians of the interleaved proxy comparison, as docs/performance.md's tables.

    python3 summarize.py RESULTS.tsv FLIGHT.txt GATEWAY_RSS_IDLE_KIB GATEWAY_RSS_PEAK_KIB
"""

import re
import statistics
import sys
from collections import defaultdict

HAPROXY_TLS = "HAProxy TLS only"
ENVOY_FULL = "Envoy TLS + jwt_authn + RBAC + access log"
GW_KEY = "gateway: API key + Cedar + audit file"
GW_BEARER = "gateway: cached ES256 bearer + Cedar + audit file"
GW_NOAUDIT = "gateway: API key + Cedar, audit off"


def main() -> None:
    results, flight, rss_idle, rss_peak = sys.argv[1:5]
    runs = defaultdict(list)
    order = []
    errors = 0
    for line in open(results):
        name, conns, _rep, _n, _secs, rps, p50, p99, errs, cpu = line.rstrip("\n").split("\t")
        key = (name, int(conns))
        if key not in runs:
            order.append(key)
        runs[key].append((float(rps), float(p50), float(p99), float(cpu)))
        errors += int(errs)
    med = {k: tuple(statistics.median(r[i] for r in v) for i in range(4)) for k, v in runs.items()}
    conns = sorted({c for _, c in order})
    names = list(dict.fromkeys(n for n, _ in order))
    for c in conns:
        print(f"\n| at {c} connection{'s' if c > 1 else ''} | req/s | p50 µs | p99 µs | proxy CPU µs/request |")
        print("|---|---:|---:|---:|---:|")
        for n in names:
            if (n, c) in med:
                rps, p50, p99, cpu = med[(n, c)]
                print(f"| {n} | {rps:,.0f} | {p50:,.0f} | {p99:,.0f} | {cpu:,.0f} |")
    print("\nRatios (CPU per request, same run, medians):")
    for c in conns:
        get = lambda n: med.get((n, c))
        if not all(get(n) for n in (GW_KEY, GW_BEARER, GW_NOAUDIT, HAPROXY_TLS, ENVOY_FULL)):
            continue
        gw, bearer, noaudit = get(GW_KEY), get(GW_BEARER), get(GW_NOAUDIT)
        print(f"- {c} conn: gateway full path / HAProxy TLS only = {gw[3] / get(HAPROXY_TLS)[3]:.2f}; "
              f"Envoy full / gateway full = {get(ENVOY_FULL)[3] / gw[3]:.2f}; "
              f"bearer / API key = {bearer[3] / gw[3]:.2f}; "
              f"audit file costs {100 * (1 - gw[0] / noaudit[0]):.1f}% of throughput")
    print(f"\nErrors over all runs: {errors}. Gateway RSS: idle {int(rss_idle) / 1024:.1f} MiB, "
          f"peak under load {int(rss_peak) / 1024:.1f} MiB.")
    rates = defaultdict(list)
    cpu = defaultdict(list)
    current = None
    for line in open(flight):
        if line.startswith("== "):
            current = line[3:].strip()
        elif m := re.search(r"([\d.]+) M rows/s", line):
            rates[current].append(float(m.group(1)))
        elif m := re.search(r"server CPU\s+([\d.]+) µs/request", line):
            cpu[current].append(float(m.group(1)) / 1000)
    if rates:
        print("\n| Flight DoGet, one large result | M rows/s | vs direct | server CPU ms/query |")
        print("|---|---:|---:|---:|")
        direct = statistics.median(rates["direct"]) if rates.get("direct") else None
        for t in ("direct", "gateway", "envoy", "haproxy"):
            if rates.get(t):
                r = statistics.median(rates[t])
                ratio = f"{r / direct:.2f}" if direct else "-"
                c = f"{statistics.median(cpu[t]):.0f}" if cpu.get(t) else "-"
                print(f"| {t} | {r:.1f} | {ratio} | {c} |")
        if rates.get("gateway") and rates.get("haproxy"):
            print(f"\nDoGet: gateway / HAProxy TLS pass-through = "
                  f"{statistics.median(rates['gateway']) / statistics.median(rates['haproxy']):.2f}")


if __name__ == "__main__":
    main()
