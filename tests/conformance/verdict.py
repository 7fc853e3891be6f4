#!/usr/bin/python3
"""Reads an Autobahn|Testsuite report/index.json and judges it.

Prints how many cases got each behavior, per case group, then every case
that is not OK (with its behavior and close behavior); exits 1 when any
case is FAILED or UNIMPLEMENTED, 0 otherwise. A case's verdict is the worse
of its behavior and its closing behavior.

    verdict.py report/index.json
"""
import json
import sys

ORDER = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
BAD = {"FAILED", "UNIMPLEMENTED"}


def worse(a, b):
    rank = {k: i for i, k in enumerate(ORDER)}
    return a if rank.get(a, len(ORDER)) >= rank.get(b, len(ORDER)) else b


def case_key(case_id):
    return tuple(int(x) for x in case_id.split("."))


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        index = json.load(f)
    if not index:
        print("verdict: the report holds no agent", file=sys.stderr)
        return 1
    status = 0
    passed = failed = 0
    for agent, cases in sorted(index.items()):
        if not cases:
            print(f"verdict: {agent}: no case ran", file=sys.stderr)
            return 1
        groups = {}
        totals = {k: 0 for k in ORDER}
        notable = []
        for cid in sorted(cases, key=case_key):
            r = cases[cid]
            v = worse(r.get("behavior", "FAILED"), r.get("behaviorClose", "FAILED"))
            v = v if v in totals else "FAILED"
            g = groups.setdefault(cid.split(".")[0], {k: 0 for k in ORDER})
            g[v] += 1
            totals[v] += 1
            if v != "OK":
                notable.append((cid, v, r.get("behavior"), r.get("behaviorClose")))
        print(f"agent {agent}: {len(cases)} cases")
        print("  group " + "".join(f"{k:>15}" for k in ORDER))
        for g in sorted(groups, key=int):
            print(f"  {g:>5} " + "".join(f"{groups[g][k]:>15}" for k in ORDER))
        print("  total " + "".join(f"{totals[k]:>15}" for k in ORDER))
        for cid, v, b, bc in notable:
            print(f"  {cid:<10} {v:<14} behavior={b} close={bc}")
        failed += sum(totals[k] for k in BAD)
        passed += len(cases) - sum(totals[k] for k in BAD)
        if any(totals[k] for k in BAD):
            status = 1
    bad = "FAILED or UNIMPLEMENTED cases" if status else "no FAILED or UNIMPLEMENTED case"
    print(f"verdict: {bad}")
    print(f"conformance: {passed} passed, {failed} failed")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
