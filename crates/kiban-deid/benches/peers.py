"""Peers for benches/adult.rs: anjana (full-domain generalization with ARX-style hierarchies) and
anonypy (Mondrian). Usage: peers.py DATA_DIR K:SUPP,... TOOL. Prints one JSON object per line.
Times exclude interpreter start and imports; the CSV is read once before timing."""
import json
import sys
import time

import pandas as pd

data_dir = sys.argv[1]
configs = [(int(k), float(s)) for k, s in (c.split(":") for c in sys.argv[2].split(","))]
tool = sys.argv[3]
qis = ["age", "education", "marital-status", "native-country", "occupation", "race", "sex", "workclass"]
df = pd.read_csv(f"{data_dir}/adult.csv", sep=";", dtype=str)


def emit(**kw):
    print(json.dumps(kw), flush=True)


def run_anjana():
    from anjana.anonymity import _k_anonymity as ank

    hier = {q: dict(pd.read_csv(f"{data_dir}/adult_hierarchy_{q}.csv", header=None, sep=";", dtype=str)) for q in qis}
    for k, s in configs:
        t = time.perf_counter()
        _out, supp, levels = ank.k_anonymity_inner(df.copy(), [], qis, k, s * 100, hier)
        dt = time.perf_counter() - t
        emit(tool="anjana", k=k, supp=s, seconds=dt, detail=f"levels {dict(levels)}, {supp} suppressed")


def run_anonypy():
    from anonypy import anonypy

    d = df.copy()
    d["age"] = d["age"].astype(int)
    for q in qis[1:] + ["salary-class"]:
        d[q] = d[q].astype("category")
    for k, s in configs:
        if s > 0:
            continue  # Mondrian has no suppression limit
        t = time.perf_counter()
        rows = anonypy.Preserver(d, qis, "salary-class").anonymize_k_anonymity(k=k)
        dt = time.perf_counter() - t
        emit(tool="anonypy", k=k, supp=s, seconds=dt, detail=f"Mondrian (local recoding), {len(rows)} output rows")


try:
    {"anjana": run_anjana, "anonypy": run_anonypy}[tool]()
except Exception as e:  # noqa: BLE001
    emit(tool=tool, unavailable=repr(e))
