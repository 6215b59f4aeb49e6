// The PostgreSQL JDBC driver (pgjdbc) against `tidemark serve`: the DatabaseMetaData
// calls SQL tools (DBeaver, Metabase, DataGrip) browse with, and a PreparedStatement
// read with the JDBC getters for numeric, timestamptz and date.
//
// Run by tests/it/clients.rs as a single-file program
// (java -cp postgresql.jar JdbcMetadata.java) with TIDEMARK_PG_PORT, TIDEMARK_PG_USER
// and TIDEMARK_PG_PASSWORD set. Prints what it saw; prints "OK jdbc" at the end.

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.Date;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.Statement;
import java.sql.Timestamp;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

public class JdbcMetadata {
    // Failed checks are collected, not thrown, so one run shows every problem.
    static final List<String> failures = new ArrayList<>();

    static void check(boolean cond, String what) {
        if (!cond) {
            System.out.println("CHECK FAILED: " + what);
            failures.add(what);
        }
    }

    public static void main(String[] args) throws Exception {
        // socketTimeout: a server that stops answering fails the run, not hangs it.
        String url = "jdbc:postgresql://127.0.0.1:" + System.getenv("TIDEMARK_PG_PORT")
                + "/tidemark?sslmode=disable&connectTimeout=10&socketTimeout=300";
        Properties props = new Properties();
        props.setProperty("user", System.getenv("TIDEMARK_PG_USER"));
        props.setProperty("password", System.getenv("TIDEMARK_PG_PASSWORD"));
        try (Connection conn = DriverManager.getConnection(url, props)) {
            run(conn);
        } catch (Throwable e) {
            System.out.println("FAILED: " + e);
            e.printStackTrace(System.out);
            System.exit(1);
        }
        if (!failures.isEmpty()) {
            System.out.println("FAILED: " + failures.size() + " checks: " + failures);
            System.exit(1);
        }
        System.out.println("OK jdbc");
    }

    static void run(Connection conn) throws Exception {
        DatabaseMetaData md = conn.getMetaData();
        System.out.println("driver " + md.getDriverName() + " " + md.getDriverVersion()
                + ", server " + md.getDatabaseProductName() + " " + md.getDatabaseProductVersion());
        check(md.getDatabaseMajorVersion() >= 16, "server version parses as 16+");

        List<String> schemas = new ArrayList<>();
        try (ResultSet rs = md.getSchemas()) {
            while (rs.next()) {
                schemas.add(rs.getString("TABLE_SCHEM"));
            }
        }
        System.out.println("schemas " + schemas);
        check(schemas.contains("invoicing"), "getSchemas() has invoicing");
        check(schemas.contains("invoicing_history"), "getSchemas() has invoicing_history");

        List<String> types = new ArrayList<>();
        try (ResultSet rs = md.getTableTypes()) {
            while (rs.next()) {
                types.add(rs.getString(1));
            }
        }
        System.out.println("table types " + types);

        // What DBeaver and Metabase ask for: tables and views of a schema.
        List<String> tables = new ArrayList<>();
        try (ResultSet rs = md.getTables(null, "invoicing", "%", new String[] {"TABLE", "VIEW"})) {
            while (rs.next()) {
                System.out.println("table " + rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME")
                        + " " + rs.getString("TABLE_TYPE"));
                tables.add(rs.getString("TABLE_NAME"));
            }
        }
        for (String t : new String[] {"invoices", "invoice_lines", "payments", "customers", "products"}) {
            check(tables.contains(t), "getTables(TABLE, VIEW) lists " + t + ": " + tables);
        }
        List<String> onlyTables = new ArrayList<>();
        try (ResultSet rs = md.getTables(null, "invoicing", "%", new String[] {"TABLE"})) {
            while (rs.next()) {
                check("TABLE".equals(rs.getString("TABLE_TYPE")), "TABLE_TYPE is TABLE");
                onlyTables.add(rs.getString("TABLE_NAME"));
            }
        }
        System.out.println("getTables(TABLE) " + onlyTables);
        check(onlyTables.containsAll(tables), "the demo tables are of type TABLE");
        // The history schema's tables are views over each table's change log.
        List<String> history = new ArrayList<>();
        try (ResultSet rs = md.getTables(null, "invoicing_history", "%", new String[] {"TABLE", "VIEW"})) {
            while (rs.next()) {
                history.add(rs.getString("TABLE_NAME") + " " + rs.getString("TABLE_TYPE"));
            }
        }
        System.out.println("history " + history);
        check(history.contains("invoices VIEW"), "invoicing_history.invoices is a VIEW: " + history);
        int all = 0;
        try (ResultSet rs = md.getTables(null, null, "%", null)) {
            while (rs.next()) {
                all++;
            }
        }
        System.out.println("getTables(null types) rows " + all);
        check(all >= 10, "all tables of all schemas");

        Map<String, String> columns = new HashMap<>();
        try (ResultSet rs = md.getColumns(null, "invoicing", "invoices", "%")) {
            while (rs.next()) {
                String name = rs.getString("COLUMN_NAME");
                String desc = rs.getString("TYPE_NAME") + " sqltype=" + rs.getInt("DATA_TYPE")
                        + " size=" + rs.getInt("COLUMN_SIZE") + " digits=" + rs.getInt("DECIMAL_DIGITS")
                        + " nullable=" + rs.getString("IS_NULLABLE") + " pos=" + rs.getInt("ORDINAL_POSITION");
                System.out.println("column " + name + " " + desc);
                columns.put(name, desc);
            }
        }
        check(columns.containsKey("id") && columns.get("id").startsWith("int8 "), "id int8: " + columns.get("id"));
        check(columns.containsKey("total") && columns.get("total").startsWith("numeric "),
                "total numeric: " + columns.get("total"));
        check(columns.get("total").contains("size=12 digits=2"), "total is numeric(12,2): " + columns.get("total"));
        check(columns.containsKey("due_date") && columns.get("due_date").startsWith("date "),
                "due_date date: " + columns.get("due_date"));
        check(columns.containsKey("_ingest_ts") && columns.get("_ingest_ts").startsWith("timestamptz "),
                "_ingest_ts timestamptz: " + columns.get("_ingest_ts"));
        check(columns.containsKey("status") && columns.get("status").contains("sqltype=12"),
                "status is VARCHAR-like: " + columns.get("status"));

        try (ResultSet rs = md.getPrimaryKeys(null, "invoicing", "invoices")) {
            int n = 0;
            while (rs.next()) {
                n++;
            }
            System.out.println("primary key columns " + n);
        }

        long first;
        long last;
        try (Statement st = conn.createStatement();
                ResultSet rs = st.executeQuery("SELECT min(id), max(id) FROM invoicing.invoices")) {
            check(rs.next(), "a row");
            first = rs.getLong(1);
            last = rs.getLong(2);
        }
        System.out.println("ids " + first + " " + last);

        // Executed more than prepareThreshold (5) times, so the driver switches to a
        // named server-side statement and binary transfer partway through.
        String sql = "SELECT id, total, issued_at, _ingest_ts, due_date, status, status = 'paid' AS paid "
                + "FROM invoicing.invoices WHERE id = ?";
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            for (int i = 0; i < 7; i++) {
                long id = i % 2 == 0 ? first : last;
                ps.setLong(1, id);
                try (ResultSet rs = ps.executeQuery()) {
                    ResultSetMetaData rmd = rs.getMetaData();
                    if (i == 0) {
                        for (int c = 1; c <= rmd.getColumnCount(); c++) {
                            System.out.println("result column " + rmd.getColumnLabel(c) + " "
                                    + rmd.getColumnTypeName(c) + " precision=" + rmd.getPrecision(c)
                                    + " scale=" + rmd.getScale(c));
                        }
                        check("numeric".equals(rmd.getColumnTypeName(2)), "total is numeric");
                        check(rmd.getScale(2) == 2, "total scale 2");
                    }
                    check(rs.next(), "the invoice " + id);
                    check(rs.getLong("id") == id, "bound id");
                    BigDecimal total = rs.getBigDecimal("total");
                    Timestamp ingested = rs.getTimestamp("_ingest_ts");
                    Timestamp issued = rs.getTimestamp("issued_at");
                    Date due = rs.getDate("due_date");
                    String status = rs.getString("status");
                    boolean paid = rs.getBoolean("paid");
                    System.out.println("row " + i + ": " + id + " " + total + " " + issued + " " + ingested
                            + " " + due + " " + status + " " + paid);
                    check(total != null && total.scale() == 2, "BigDecimal with scale 2: " + total);
                    check(ingested != null && ingested.getTime() <= System.currentTimeMillis(), "ingest time");
                    check(paid == "paid".equals(status), "bool matches status");
                    check(!rs.next(), "one row");
                }
            }
        }

        // An int parameter against a bigint column (setInt, as most code does).
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT count(*) FROM invoicing.invoice_lines WHERE quantity >= ? AND invoice_id >= ?")) {
            ps.setInt(1, 1);
            ps.setInt(2, (int) first);
            try (ResultSet rs = ps.executeQuery()) {
                check(rs.next(), "a count");
                System.out.println("lines " + rs.getLong(1));
                check(rs.getLong(1) > 0, "some lines");
            }
        }

        // A string and a date parameter.
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT count(*) FROM invoicing.invoices WHERE status = ? AND due_date >= ?")) {
            ps.setString(1, "open");
            ps.setDate(2, Date.valueOf("2000-01-01"));
            try (ResultSet rs = ps.executeQuery()) {
                check(rs.next(), "a count");
                System.out.println("open with due date " + rs.getLong(1));
            }
        }
    }
}
