#!/usr/bin/env python3
"""Folds an `ncu --csv --metrics gpu__time_duration.sum` log into one row per
kernel name: launches, total and mean device time, share of the total.

Usage: kernel_table.py PROFILE.csv [--top N]
The log may hold the profiled program's own output and ncu's ==PROF== lines
between the CSV rows; only rows under the CSV header are read.
"""
import argparse
import collections
import csv
import re
import sys

UNIT_NS = {"nsecond": 1.0, "ns": 1.0, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6,
           "second": 1e9, "s": 1e9}


def short_name(name: str) -> str:
    """Drops template arguments and parameter lists: 'void f<T>(int)' -> 'f'."""
    name = re.sub(r"^void ", "", name)
    depth, out = 0, []
    for ch in name:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out).strip() or name[:60]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv_log")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    header = None
    rows = []
    with open(args.csv_log, errors="replace") as f:
        for line in f:
            if not line.startswith('"'):
                continue
            fields = next(csv.reader([line]))
            if fields and fields[0] == "ID":
                header = fields
                continue
            if header and len(fields) == len(header):
                rows.append(dict(zip(header, fields)))
    if not rows:
        print(f"kernel_table: no CSV rows in {args.csv_log}")
        return 1
    total_ns = collections.Counter()
    launches = collections.Counter()
    for r in rows:
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        scale = UNIT_NS.get(r.get("Metric Unit", "ns"), 1.0)
        value = float(r["Metric Value"].replace(",", ""))
        name = short_name(r["Kernel Name"])
        total_ns[name] += value * scale
        launches[name] += 1
    grand = sum(total_ns.values())
    print(f"{'kernel':56s} {'launches':>8s} {'total ms':>10s} {'mean us':>9s} {'share':>6s}")
    for name, ns in total_ns.most_common(args.top):
        print(f"{name[:56]:56s} {launches[name]:8d} {ns / 1e6:10.3f} "
              f"{ns / launches[name] / 1e3:9.1f} {100 * ns / grand:5.1f}%")
    print(f"{'all':56s} {sum(launches.values()):8d} {grand / 1e6:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
