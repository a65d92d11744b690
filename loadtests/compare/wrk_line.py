"""One wrk run → one TSV line: name, connections, repetition, requests, seconds, req/s,
p50 µs, p99 µs, errors, proxy CPU µs per request.

    wrk ... --latency | python3 wrk_line.py NAME CONNS REP CPU_TICKS CLK_TCK
"""

import re
import sys

UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def micros(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


def main() -> None:
    name, conns, rep, ticks, hz = sys.argv[1:6]
    out = sys.stdin.read()
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not total:
        raise SystemExit(f"{name}: no request count in wrk's output:\n{out}")
    requests = int(total.group(1))
    seconds = micros(total.group(2) + total.group(3)) / 1e6
    pct = {p: micros(v) for p, v in re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)", out, re.M)}
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    cpu_us = int(ticks) / int(hz) * 1e6 / max(requests, 1)
    print("\t".join(map(str, [name, conns, rep, requests, f"{seconds:.3f}", f"{requests / seconds:.0f}",
                              f"{pct.get('50', 0):.0f}", f"{pct.get('99', 0):.0f}", errors, f"{cpu_us:.1f}"])))


if __name__ == "__main__":
    main()
