"""Peers for benches/suppression.rs: ACRO (primary suppression at threshold 10) and pytauargus
(secondary suppression by its modular MOD and optimal OPT methods, and its audit of kiban's
pattern) on the same small tables. Reads JSON on stdin, prints one
JSON line per peer result; a peer that cannot run prints {"peer":..., "unavailable": reason}."""
import json, sys, time
spec = json.load(sys.stdin)
out = []
def rows_of(t):
    rows = []
    for cell in t["cells"]:
        for _ in range(cell["n"]):
            rows.append({d: str(v) for d, v in zip(t["dims"], cell["c"])})
    return rows
for t in spec["tables"]:
    try:
        import pandas as pd, logging
        logging.disable(logging.CRITICAL)
        from acro import ACRO
        df = pd.DataFrame(rows_of(t))
        a = ACRO(suppress=True)
        t0 = time.time()
        if len(t["dims"]) == 2:
            ct = a.crosstab(df[t["dims"][0]], df[t["dims"][1]])
        else:
            ct = a.crosstab(df[t["dims"][0]], [df[t["dims"][1]], df[t["dims"][2]]])
        masked = []
        for r in ct.index:
            for c in ct.columns:
                v = ct.loc[r, c]
                if pd.isna(v):
                    key = [r] + (list(c) if isinstance(c, tuple) else [c])
                    masked.append([str(x) for x in key])
        out.append({"peer": "acro", "table": t["name"], "masked": masked, "secs": time.time() - t0})
    except Exception as e:  # noqa: BLE001
        out.append({"peer": "acro", "table": t["name"], "unavailable": f"{type(e).__name__}: {e}"[:300]})
    for method in t.get("methods", ["MOD(1)", "OPT(1)"]):
        try:
            import pytauargus
            micro = {d: [] for d in t["dims"]}
            micro["n"] = []
            for r in rows_of(t):
                for d in t["dims"]:
                    micro[d].append(r[d])
                micro["n"].append(1)
            t0 = time.time()
            # FREQ(10,0): threshold 10, protection level 1 each side (the bench gives kiban the same).
            res = pytauargus.protect(micro, list(t["dims"]), "n", safety_rules="FREQ(10,0)", suppress=method)
            secs = time.time() - t0
            rows = res.tables[0].rows
            prim = [r for r in rows if r["status"] == "U"]
            sec = [r for r in rows if r["status"] == "M"]
            out.append({"peer": "pytauargus", "table": t["name"], "method": method,
                        "primary_cells": len(prim), "primary_value": sum(r["n"] for r in prim),
                        "secondary_cells": len(sec), "secondary_value": sum(r["n"] for r in sec), "secs": secs})
        except Exception as e:  # noqa: BLE001
            out.append({"peer": "pytauargus", "table": t["name"], "method": method,
                        "unavailable": f"{type(e).__name__}: {e}"[:300]})
    # tau-Argus's own audit (the port of intervalle.exe) on kiban's pattern, written as a JJ file.
    if t.get("kiban_jj"):
        try:
            from pytauargus._tauargus import audit_jj
            rows = audit_jj(t["kiban_jj"])
            unsafe = [r["cell"] for r in rows if r["unsafe"]]
            # tau-Argus compares without tolerance; a bound met to 1e-6 is met (protection level 1).
            short = [r["cell"] for r in rows if r["status"] == "u"
                     and (r["max"] < r["value"] + 1 - 1e-6 or r["min"] > r["value"] - 1 + 1e-6)]
            out.append({"peer": "tau-audit", "table": t["name"], "audited": len(rows), "unsafe": unsafe,
                        "short_beyond_1e-6": short})
        except Exception as e:  # noqa: BLE001
            out.append({"peer": "tau-audit", "table": t["name"], "unavailable": f"{type(e).__name__}: {e}"[:300]})
for o in out:
    print(json.dumps(o, ensure_ascii=False))
