"""psycopg 3 against `tidemark serve`: SCRAM login, server-side parameter binding
(unnamed and named prepared statements), and the Python types rows arrive as.

Run by tests/it/clients.rs with TIDEMARK_PG_PORT, TIDEMARK_PG_USER and
TIDEMARK_PG_PASSWORD set. Prints what it saw, so a failing assertion shows the
data; prints "OK psycopg" at the end.
"""

import datetime
import decimal
import os
import sys
import traceback

import psycopg


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    conninfo = psycopg.conninfo.make_conninfo(
        host="127.0.0.1",
        port=os.environ["TIDEMARK_PG_PORT"],
        user=os.environ["TIDEMARK_PG_USER"],
        password=os.environ["TIDEMARK_PG_PASSWORD"],
        dbname="tidemark",
        connect_timeout=10,
        sslmode="disable",
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        print("psycopg", psycopg.__version__, "libpq", psycopg.pq.version(),
              "server_version", conn.info.server_version)
        check(conn.info.server_version >= 160000, "server_version parses as 16+")

        with conn.cursor() as cur:
            cur.execute("SELECT min(id), max(id) FROM invoicing.invoices")
            first, last = cur.fetchone()
            print("ids", first, last, type(first).__name__)
            check(isinstance(first, int) and first <= last, "min/max ids are ints")

            # Server-side binding: psycopg sends Parse/Bind with $1, the int typed.
            sql = (
                "SELECT id, customer_id, total, due_date, status, currency, issued_at, "
                "_ingest_ts, status = 'paid' AS paid "
                "FROM invoicing.invoices WHERE id = %s"
            )
            cur.execute(sql, (first,))
            names = [d.name for d in cur.description]
            print("description", [(d.name, d.type_code) for d in cur.description])
            check(
                names == ["id", "customer_id", "total", "due_date", "status",
                          "currency", "issued_at", "_ingest_ts", "paid"],
                f"column names {names}",
            )
            rows = cur.fetchall()
            print("row", rows)
            check(len(rows) == 1, "one invoice per id")
            row = dict(zip(names, rows[0]))
            check(row["id"] == first, "the bound id came back")
            check(isinstance(row["customer_id"], int), "bigint -> int")
            total = row["total"]
            check(isinstance(total, decimal.Decimal), f"numeric -> Decimal, got {type(total)}")
            check(total.as_tuple().exponent == -2, f"numeric keeps scale 2: {total!r}")
            check(row["due_date"] is None or type(row["due_date"]) is datetime.date,
                  f"date -> date, got {type(row['due_date'])}")
            check(isinstance(row["status"], str), "text -> str")
            for c in ("issued_at", "_ingest_ts"):
                ts = row[c]
                if ts is None:
                    continue
                check(isinstance(ts, datetime.datetime), f"{c}: timestamptz -> datetime")
                check(ts.tzinfo is not None and ts.utcoffset() is not None,
                      f"{c}: timestamptz -> aware datetime, got {ts!r}")
            check(row["_ingest_ts"] <= datetime.datetime.now(datetime.timezone.utc),
                  "_ingest_ts is in the past")
            check(type(row["paid"]) is bool, f"bool -> bool, got {type(row['paid'])}")

            # A text parameter, and a date one, several rows.
            cur.execute(
                "SELECT id, due_date FROM invoicing.invoices "
                "WHERE status = %s AND due_date >= %s ORDER BY id LIMIT 5",
                ("open", datetime.date(2000, 1, 1)),
            )
            some = cur.fetchall()
            print("open invoices", some)
            check(all(type(d) is datetime.date for _, d in some), "dates")

            # A named prepared statement, executed with two parameters in turn.
            psql = "SELECT id, total FROM invoicing.invoices WHERE id = %s"
            got = []
            for n in (first, last, first):
                cur.execute(psql, (n,), prepare=True)
                got.append(cur.fetchone())
            print("prepared", got)
            check([g[0] for g in got] == [first, last, first], "prepared rebinding")
            check(all(isinstance(g[1], decimal.Decimal) for g in got), "prepared numeric")

            # Binary results: psycopg's binary loaders for the same types.
            with conn.cursor(binary=True) as bcur:
                bcur.execute(sql, (last,))
                b = dict(zip([d.name for d in bcur.description], bcur.fetchone()))
                print("binary row", b)
                check(b["id"] == last, "binary id")
                check(isinstance(b["total"], decimal.Decimal), "binary numeric -> Decimal")
                check(b["total"].as_tuple().exponent == -2, "binary numeric scale")
                check(b["_ingest_ts"].tzinfo is not None, "binary timestamptz aware")
                check(type(b["paid"]) is bool, "binary bool")

            # Other column types of the demo: int, small int, date, a count.
            cur.execute(
                "SELECT p.id, p.sku, p.unit_price, p.active, count(l.id) AS n_lines "
                "FROM invoicing.products p LEFT JOIN invoicing.invoice_lines l "
                "ON l.product_id = p.id GROUP BY p.id, p.sku, p.unit_price, p.active "
                "ORDER BY p.id LIMIT 3"
            )
            print("products description", [(d.name, d.type_code) for d in cur.description])
            prods = cur.fetchall()
            print("products", prods)
            check(len(prods) == 3, "three products")
            for pid, sku, price, active, n in prods:
                check(isinstance(pid, int) and isinstance(n, int), "ints")
                check(isinstance(price, decimal.Decimal), "unit_price -> Decimal")
                check(isinstance(active, int), f"tinyint active -> int, got {active!r}")

            # The history schema through the same path.
            cur.execute(
                "SELECT count(*) FROM invoicing_history.invoices WHERE id = %s", (first,)
            )
            (versions,) = cur.fetchone()
            print("history versions of", first, versions)
            check(versions >= 1, "history has the invoice")

            # An error is an exception with a SQLSTATE, and the connection survives.
            try:
                cur.execute("SELECT no_such_column FROM invoicing.invoices")
                check(False, "an unknown column is an error")
            except psycopg.Error as e:
                print("error", e.sqlstate, str(e).splitlines()[0])
                check(e.sqlstate is not None, "errors carry a SQLSTATE")
            cur.execute("SELECT 1")
            check(cur.fetchone() == (1,), "connection usable after an error")

    # Default (non-autocommit) mode wraps statements in BEGIN ... COMMIT/ROLLBACK.
    with psycopg.connect(conninfo) as conn:
        n = conn.execute("SELECT count(*) FROM invoicing.customers").fetchone()[0]
        print("customers", n)
        check(n > 0, "customers counted inside a transaction")
        conn.rollback()

    print("OK psycopg")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 (the test shows the traceback)
        traceback.print_exc()
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
