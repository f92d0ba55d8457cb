#!/usr/bin/env python3
"""Prints the markdown table of benches/peers.sh results (results.jsonl)."""
import json
import sys


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    print("| system | cell | run | request B | ops/s | records/s | MB/s | p50 ms | p99 ms | max ms | errors/refusals | server CPU s per M records |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        secs = r.get("seconds") or 1.0
        ops = r.get("ops_per_second", r.get("acked_requests", 0) / secs)
        records = r.get("records_per_second")
        errors = r.get("errors")
        if errors is None:
            refused = sum(r.get("refusals", {}).values())
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(r.get("server_refusals", {}).items()))
            errors = f"{refused}" + (f" ({reasons})" if reasons else "")
        cpu = r.get("server_cpu_seconds_per_million_records")
        print(
            "| {system} | {cell} | {run} | {req} | {ops:,.0f} | {records} | {mb:.1f} | {p50:.1f} | {p99:.1f} | {mx:.1f} | {errors} | {cpu} |".format(
                system=r["system"],
                cell=r["cell"],
                run=r["run"],
                req=r.get("request_bytes", ""),
                ops=ops,
                records=f"{records:,.0f}" if records is not None else "-",
                mb=r["payload_mb_per_second"],
                p50=r["latency_ms_p50"],
                p99=r["latency_ms_p99"],
                mx=r["latency_ms_max"],
                errors=errors,
                cpu=f"{cpu:.2f}" if cpu is not None else "-",
            )
        )


if __name__ == "__main__":
    main(sys.argv[1])
