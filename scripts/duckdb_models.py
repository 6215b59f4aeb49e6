#!/usr/bin/env python3
"""Run tidemark's compiled models in DuckDB, an engine that shares no code with
tidemark, over the same input tables read from the warehouse's Delta tables (with the
`deltalake` package, not through tidemark), and compare or time the results.

    duckdb_models.py compare WAREHOUSE COMPILED_DIR   # exit 1 if any model differs
    duckdb_models.py time    WAREHOUSE COMPILED_DIR   # seconds to build every model,
                                                      # reading the inputs' Parquet files

COMPILED_DIR is what `tidemark compile --out DIR` writes. The inputs' current tables
must be compacted (`tidemark maintain`): this script reads each Delta table's files,
not tidemark's merge of a base with a tail.
"""
import decimal
import json
import sys
import time

import deltalake
import duckdb

TIDEMARK_COLUMNS = {"_ingest_ts", "_source_ts", "_op", "_source_pos", "_seq"}


def load(con, wh, schema, table, lazy):
    """Make `schema.table` the input's current rows: copied into DuckDB (`compare`),
    or (`time`) a view over the Delta table's Parquet files, read when a model runs."""
    dt = deltalake.DeltaTable(f"{wh}/{schema}/{table}/current")
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    if lazy:
        files = ", ".join("'" + f.replace("'", "''") + "'" for f in dt.file_uris())
        cols = [f.name for f in dt.schema().fields if f.name not in TIDEMARK_COLUMNS]
        select = ", ".join(f'"{c}"' for c in cols)
        con.execute(f'CREATE OR REPLACE VIEW "{schema}"."{table}" AS SELECT {select} FROM read_parquet([{files}])')
        return
    data = dt.to_pyarrow_table()
    keep = [c for c in data.column_names if c not in TIDEMARK_COLUMNS]
    con.register("__input", data.select(keep))
    con.execute(f'CREATE OR REPLACE TABLE "{schema}"."{table}" AS SELECT * FROM __input')
    con.unregister("__input")


def norm(v):
    if v is None:
        return "NULL"
    if isinstance(v, (decimal.Decimal, float, int)) and not isinstance(v, bool):
        d = decimal.Decimal(str(v)).normalize()
        return format(d, "f")
    if hasattr(v, "isoformat"):
        if getattr(v, "tzinfo", None) is not None:
            v = v.astimezone(__import__("datetime").timezone.utc).replace(tzinfo=None)
        return v.isoformat()
    return str(v)


def rows(con, sql, columns):
    cols = ", ".join(f'"{c}"' for c in columns)
    return sorted("|".join(norm(v) for v in r) for r in con.execute(f"SELECT {cols} FROM ({sql})").fetchall())


def main():
    mode, wh, compiled = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]
    manifest = json.load(open(f"{compiled}/manifest.json"))["models"]
    models = {(m["schema"], m["table"]) for m in manifest}
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    inputs = sorted({tuple(r.split(".", 1)) for m in manifest for r in m["reads"]} - models)
    for schema, table in inputs:
        load(con, wh, schema, table, lazy=(mode == "time"))
    start = time.monotonic()
    for m in manifest:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{m["schema"]}"')
        kind = "VIEW" if m["materialized"] == "view" else "TABLE"
        con.execute(f'CREATE OR REPLACE {kind} "{m["schema"]}"."{m["table"]}" AS {m["sql"]}')
    took = time.monotonic() - start
    if mode == "time":
        print(json.dumps({"models": len(manifest), "seconds": took}))
        return 0
    failed = 0
    checked = 0
    for m in manifest:
        if m["materialized"] == "view":
            # A view stores nothing to compare: tidemark evaluates it when read.
            print(f"{m['name']}: a view, nothing landed to compare")
            continue
        mine = f'SELECT * FROM "{m["schema"]}"."{m["table"]}"'
        columns = [d[0] for d in con.execute(f"{mine} LIMIT 0").description]
        dt = deltalake.DeltaTable(f"{wh}/{m['schema']}/{m['table']}/current")
        con.register("__landed", dt.to_pyarrow_table())
        landed = rows(con, "SELECT * FROM __landed", columns)
        con.unregister("__landed")
        expected = rows(con, mine, columns)
        checked += len(landed)
        if landed != expected:
            failed += 1
            only_l = [r for r in landed if r not in set(expected)][:3]
            only_e = [r for r in expected if r not in set(landed)][:3]
            print(f"{m['name']}: tidemark has {len(landed)} rows, DuckDB {len(expected)}; "
                  f"tidemark only: {only_l}; DuckDB only: {only_e}")
        else:
            print(f"{m['name']}: {len(landed)} rows equal")
    print(json.dumps({"models": len(manifest), "differ": failed, "rows": checked}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
