#!/usr/bin/env python3
"""The feature store benchmark's Python half (bench/features.sh runs it).

Subcommands:
  feast-setup DIR      a Feast repo over DIR/feast/*.parquet (file offline store,
                       SQLite online store), the same three views as tidemark's
  feast-train DIR      Feast's training set for DIR/entities.parquet (timed inside;
                       run under /usr/bin/time -v for the peak memory)
  feast-materialize DIR  Feast's materialisation of every entity into SQLite
  compare DIR          tidemark's and Feast's training sets, row by row (a sample)
  lookups DIR          online lookups of 1 and 100 keys, p50/p99: Feast's SQLite
                       store (Python SDK), tidemark over HTTP and over PostgreSQL
                       (reads DIR/bench.env for the ports, token and password)

Prints JSON lines; bench/features.sh collects them.
"""

import json
import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone

FEATURES = {
    "profile": [("age", "int"), ("country", "str"), ("score", "float"), ("plan", "str")],
    "account": [("balance", "float"), ("tier", "int"), ("open_days", "int")],
    "activity": [("logins", "int"), ("clicks", "int"), ("device", "str")],
}
TABLES = {"profile": "users", "account": "accounts", "activity": "activity"}
REFS = [f"{v}:{f}" for v, fs in FEATURES.items() for f, _ in fs]


def repo(dir):
    return os.path.join(dir, "feast_repo")


def feast_objects(dir):
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64, String

    types = {"int": Int64, "float": Float64, "str": String}
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    views = []
    for v, fs in FEATURES.items():
        src = FileSource(
            name=f"{v}_source",
            path=os.path.join(dir, "feast", f"{TABLES[v]}.parquet"),
            timestamp_field="event_timestamp",
        )
        views.append(
            FeatureView(
                name=v,
                entities=[user],
                # tidemark's views have no TTL; ten years is none for this data.
                ttl=timedelta(days=3650),
                schema=[Field(name=f, dtype=types[t]) for f, t in fs],
                source=src,
                online=True,
            )
        )
    return [user] + views


def store(dir):
    from feast import FeatureStore

    return FeatureStore(repo_path=repo(dir))


def feast_setup(dir):
    r = repo(dir)
    os.makedirs(r, exist_ok=True)
    with open(os.path.join(r, "feature_store.yaml"), "w") as f:
        f.write(
            "project: bench\nregistry: registry.db\nprovider: local\n"
            "offline_store:\n  type: file\n"
            "online_store:\n  type: sqlite\n  path: online.db\n"
            "entity_key_serialization_version: 3\n"
        )
    store(dir).apply(feast_objects(dir))
    print(json.dumps({"feast_setup": "ok"}))


def feast_train(dir):
    import pandas as pd

    t = time.time()
    entities = pd.read_parquet(os.path.join(dir, "entities.parquet"))
    df = store(dir).get_historical_features(entity_df=entities, features=REFS).to_df()
    df.to_parquet(os.path.join(dir, "feast_train.parquet"))
    print(json.dumps({"feast_train_s": time.time() - t, "rows": len(df)}))


def feast_materialize(dir):
    t = time.time()
    end = datetime.now(timezone.utc) + timedelta(minutes=1)
    store(dir).materialize(start_date=end - timedelta(days=60), end_date=end)
    print(json.dumps({"feast_materialize_s": time.time() - t}))


def compare(dir):
    import pandas as pd

    tm = pd.read_parquet(os.path.join(dir, "tidemark_train.parquet"))
    fe = pd.read_parquet(os.path.join(dir, "feast_train.parquet"))
    cols = [f for fs in FEATURES.values() for f, _ in fs]
    tm = tm.set_index("user_id").sort_index()
    fe = fe.set_index("user_id").sort_index()
    sample = random.Random(7).sample(list(tm.index), min(20000, len(tm)))
    same = differ = 0
    for k in sample:
        a = tm.loc[k, cols]
        b = fe.loc[k, cols]
        ok = all(
            (pd.isna(x) and pd.isna(y)) or (x == y) or (isinstance(x, float) and abs(x - y) < 1e-9)
            for x, y in zip(a.tolist(), b.tolist())
        )
        same += ok
        differ += not ok
    print(json.dumps({"compared_rows": len(sample), "equal": same, "different": differ,
                      "tidemark_rows": len(tm), "feast_rows": len(fe)}))


def pct(xs, p):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * p)]


def timed(f, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        out.append((time.perf_counter() - t) * 1e3)
    return {"p50_ms": pct(out, 0.5), "p99_ms": pct(out, 0.99), "n": n}


def lookups(dir):
    import psycopg
    import requests

    env = dict(l.strip().split("=", 1) for l in open(os.path.join(dir, "bench.env")) if "=" in l)
    n = int(env["N"])
    rng = random.Random(11)
    key = lambda: rng.randrange(n)
    results = {}

    # tidemark over HTTP: one view (4 features), keep-alive session.
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {env['TOKEN']}"
    base = f"http://127.0.0.1:{env['API_PORT']}/api/v1/features/profile"

    def http1():
        r = s.get(f"{base}/{key()}")
        assert r.status_code == 200 and r.json()["found"], r.text

    def http100():
        r = s.post(base, json={"keys": [key() for _ in range(100)]})
        assert r.status_code == 200 and len(r.json()["results"]) == 100, r.text

    for _ in range(200):
        http1()
    results["tidemark_http_1"] = timed(http1, 5000)
    results["tidemark_http_100"] = timed(http100, 1000)

    # tidemark over PostgreSQL: a prepared statement with the key as a parameter.
    conn = psycopg.connect(
        f"host=127.0.0.1 port={env['PG_PORT']} user=bench password={env['PASSWORD']} dbname=tidemark",
        autocommit=True,
    )

    def pg1():
        rows = conn.execute("SELECT * FROM features.profile WHERE user_id = %s", (key(),), prepare=True).fetchall()
        assert len(rows) == 1, rows

    def pg100():
        ks = ",".join(str(key()) for _ in range(100))
        rows = conn.execute(f"SELECT * FROM features.profile WHERE user_id IN ({ks})").fetchall()
        assert len(rows) >= 99, len(rows)

    for _ in range(200):
        pg1()
    results["tidemark_pg_1"] = timed(pg1, 5000)
    results["tidemark_pg_100"] = timed(pg100, 1000)

    # Feast's SQLite online store through its Python SDK: the same view's 4 features.
    fs = store(dir)
    refs = [f"profile:{f}" for f, _ in FEATURES["profile"]]

    def feast1():
        d = fs.get_online_features(features=refs, entity_rows=[{"user_id": key()}]).to_dict()
        assert d["age"][0] is not None, d

    def feast100():
        d = fs.get_online_features(features=refs, entity_rows=[{"user_id": key()} for _ in range(100)]).to_dict()
        assert len(d["age"]) == 100

    for _ in range(50):
        feast1()
    results["feast_sqlite_1"] = timed(feast1, 2000)
    results["feast_sqlite_100"] = timed(feast100, 500)
    print(json.dumps(results))


if __name__ == "__main__":
    cmd, dir = sys.argv[1], sys.argv[2]
    {
        "feast-setup": feast_setup,
        "feast-train": feast_train,
        "feast-materialize": feast_materialize,
        "compare": compare,
        "lookups": lookups,
    }[cmd](dir)
