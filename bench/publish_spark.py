"""The publish benchmark's Spark leg (bench/publish.sh runs it): the seed design's way
of publishing a lake table to a database, Spark's JDBC append.

Reads the Parquet files of a lake table's history log (the Delta table's live files,
found by replaying its _delta_log: Spark reads them as plain Parquet, since delta-spark
would have to come from Maven), keeps the rows `--where` selects, and appends
`--columns` of them to an existing, empty PostgreSQL table with
`df.write.jdbc(url, table, mode="append", properties={driver, user, password,
batchsize})`, through Debian's PostgreSQL JDBC driver. Spark runs in local mode.

    publish_spark.py --history WH/bench/events/history \
        --url postgres://tidemark@127.0.0.1:35432/postgres --table bench_spark.events \
        --columns "id, customer_id, ..." --where "_op = 'r'" [--batchsize 10000] \
        [--master local[2]] [--jar /usr/share/java/postgresql.jar]

The password comes from PGPASSWORD. Prints one JSON object: Spark's start-up (the JVM
and the SparkSession), the read's planning (Parquet footers), and the write (the scan
of the Parquet files and the JDBC inserts), in seconds. The rows written are counted
by the caller at the target.
"""

import argparse
import glob
import json
import os
import sys
import time
from urllib.parse import unquote, urlparse


def live_files(table_dir):
    """The data files of a Delta table at its latest version, from its JSON commits."""
    log = os.path.join(table_dir, "_delta_log")
    commits = sorted(glob.glob(os.path.join(log, "[0-9]" * 20 + ".json")))
    if not commits or not commits[0].endswith("0" * 20 + ".json"):
        sys.exit(f"{log}: no JSON commit from version 0 (a checkpoint-only log is not read here)")
    files = {}
    for c in commits:
        with open(c) as f:
            for line in f:
                if not line.strip():
                    continue
                action = json.loads(line)
                if "add" in action:
                    files[action["add"]["path"]] = True
                elif "remove" in action:
                    files.pop(action["remove"]["path"], None)
    return [os.path.join(table_dir, unquote(p)) for p in files], len(commits)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--history", required=True, help="the history Delta table's directory")
    ap.add_argument("--url", required=True, help="postgres://user@host:port/db")
    ap.add_argument("--table", required=True, help="schema.table, existing and empty")
    ap.add_argument("--columns", required=True, help="comma-separated columns to write")
    ap.add_argument("--where", default=None, help="a Spark SQL filter on the rows")
    ap.add_argument("--batchsize", type=int, default=10000,
                    help="rows per JDBC batch (Spark's default is 1000)")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--jar", default="/usr/share/java/postgresql.jar")
    ap.add_argument("--driver-memory", default="2g")
    a = ap.parse_args()

    u = urlparse(a.url)
    jdbc_url = f"jdbc:postgresql://{u.hostname}:{u.port or 5432}{u.path or '/postgres'}"
    props = {
        "driver": "org.postgresql.Driver",
        "user": unquote(u.username or os.environ.get("PGUSER", "postgres")),
        "password": os.environ.get("PGPASSWORD", ""),
        "batchsize": str(a.batchsize),
    }
    columns = [c.strip() for c in a.columns.split(",") if c.strip()]
    files, commits = live_files(a.history)

    t0 = time.monotonic()
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(a.master)
        .appName("tidemark-publish-bench")
        .config("spark.jars", a.jar)
        .config("spark.driver.memory", a.driver_memory)
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    t1 = time.monotonic()

    df = spark.read.parquet(*files)
    if a.where:
        df = df.where(a.where)
    df = df.select(*columns)
    partitions = df.rdd.getNumPartitions()
    t2 = time.monotonic()

    df.write.jdbc(jdbc_url, a.table, mode="append", properties=props)
    t3 = time.monotonic()

    out = {
        "spark_version": spark.version,
        "master": a.master,
        "batchsize": a.batchsize,
        "files": len(files),
        "delta_commits": commits,
        "partitions": partitions,
        "startup_secs": round(t1 - t0, 2),
        "read_plan_secs": round(t2 - t1, 2),
        "write_secs": round(t3 - t2, 2),
    }
    spark.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
