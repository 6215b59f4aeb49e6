"""SQLAlchemy 2 (postgresql+psycopg) against `tidemark serve`: the dialect's connect
queries, the inspector's schema/table/column listing (what BI tools and notebooks
use to browse), and a Core select().

Run by tests/it/clients.rs with TIDEMARK_PG_PORT, TIDEMARK_PG_USER and
TIDEMARK_PG_PASSWORD set. Prints what it saw; prints "OK sqlalchemy" at the end.
"""

import datetime
import decimal
import os
import sys
import traceback

import sqlalchemy as sa
from sqlalchemy.engine import URL


def check(cond, what):
    if not cond:
        raise AssertionError(what)


TABLES = ["customers", "invoice_lines", "invoices", "payments", "products"]


def main():
    url = URL.create(
        "postgresql+psycopg",
        username=os.environ["TIDEMARK_PG_USER"],
        password=os.environ["TIDEMARK_PG_PASSWORD"],
        host="127.0.0.1",
        port=int(os.environ["TIDEMARK_PG_PORT"]),
        database="tidemark",
        query={"sslmode": "disable", "connect_timeout": "10"},
    )
    engine = sa.create_engine(url)
    print("sqlalchemy", sa.__version__)

    insp = sa.inspect(engine)
    print("server_version_info", engine.dialect.server_version_info)
    print("default_schema_name", engine.dialect.default_schema_name)

    schemas = insp.get_schema_names()
    print("schemas", schemas)
    for s in ("invoicing", "invoicing_history"):
        check(s in schemas, f"{s} in get_schema_names()")

    tables = insp.get_table_names(schema="invoicing")
    print("tables", tables)
    for t in TABLES:
        check(t in tables, f"{t} in get_table_names(schema='invoicing')")
    check(insp.has_table("invoices", schema="invoicing"), "has_table")
    check(not insp.has_table("nope", schema="invoicing"), "has_table of a missing table")

    # The history schema holds views over each table's change log.
    history = insp.get_view_names(schema="invoicing_history")
    print("history views", history)
    for t in TABLES:
        check(t in history, f"{t} in get_view_names(schema='invoicing_history')")
    hcols = [c["name"] for c in insp.get_columns("invoices", schema="invoicing_history")]
    print("history columns", hcols)
    check("id" in hcols and "total" in hcols, "history view columns reflected")

    cols = insp.get_columns("invoices", schema="invoicing")
    for c in cols:
        print("column", c["name"], repr(c["type"]), "nullable" if c["nullable"] else "not null")
    by_name = {c["name"]: c for c in cols}
    for name in ("id", "customer_id", "status", "total", "due_date", "issued_at", "_ingest_ts"):
        check(name in by_name, f"column {name} reflected")
    total = by_name["total"]["type"]
    check(isinstance(total, sa.Numeric), f"total is NUMERIC, got {total!r}")
    check(total.scale == 2 and total.precision is not None,
          f"total keeps precision and scale, got {total!r}")
    check(isinstance(by_name["due_date"]["type"], sa.Date), "due_date is DATE")
    check(isinstance(by_name["id"]["type"], sa.BigInteger), "id is BIGINT")
    ts = by_name["_ingest_ts"]["type"]
    check(isinstance(ts, sa.DateTime) and ts.timezone, f"_ingest_ts is TIMESTAMPTZ, got {ts!r}")
    check(isinstance(by_name["status"]["type"], sa.String), "status is a string type")

    # The table from the reflected columns, queried with Core and bound parameters.
    # Not Table(autoload_with=...): that also reflects keys and indexes, and
    # get_pk_constraint's unnest(pg_index.indkey) does not plan yet.
    md = sa.MetaData()
    invoices = sa.Table(
        "invoices", md, *[sa.Column(c["name"], c["type"]) for c in cols], schema="invoicing"
    )
    with engine.connect() as conn:
        first = conn.execute(sa.select(sa.func.min(invoices.c.id))).scalar_one()
        stmt = (
            sa.select(invoices.c.id, invoices.c.total, invoices.c.due_date,
                      invoices.c.status, invoices.c._ingest_ts)
            .where(invoices.c.id >= first)
            .order_by(invoices.c.id)
            .limit(3)
        )
        print("sql", stmt.compile(engine))
        rows = conn.execute(stmt).all()
        print("rows", rows)
        check(len(rows) == 3 and rows[0].id == first, "select() returns rows in order")
        check(isinstance(rows[0].total, decimal.Decimal), "numeric -> Decimal")
        check(rows[0]._ingest_ts.tzinfo is not None, "timestamptz aware")
        check(rows[0].due_date is None or type(rows[0].due_date) is datetime.date, "date")

        by_status = conn.execute(
            sa.select(invoices.c.status, sa.func.count().label("n"))
            .group_by(invoices.c.status)
            .order_by(invoices.c.status)
        ).all()
        print("by status", by_status)
        check(any(s == "paid" for s, _ in by_status), "some invoices are paid")

        n = conn.execute(
            sa.text("SELECT count(*) FROM invoicing.invoices WHERE status = :s"),
            {"s": "paid"},
        ).scalar_one()
        check(n == dict(by_status)["paid"], "text() with a named parameter")

    engine.dispose()
    print("OK sqlalchemy")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 (the test shows the traceback)
        traceback.print_exc()
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
