// pgjdbc's server-prepared statements across commits: with prepareThreshold=1 the
// driver prepares a named statement on the server at the first execution and from
// then on only binds and executes it. Executed again after new commits landed, it
// must read them.
//
// Run by tests/it/clients.rs as a single-file program
// (java -cp postgresql.jar JdbcPrepared.java) with TIDEMARK_PG_PORT, TIDEMARK_PG_USER
// and TIDEMARK_PG_PASSWORD set. Prints "before N", then waits for a line on stdin
// (the test lands commits and waits for the endpoint to serve them), executes the
// same statement again, prints "after M" and "OK jdbc prepared" when M > N.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.Properties;

public class JdbcPrepared {
    static long count(PreparedStatement ps) throws Exception {
        ps.setString(1, "no such status");
        try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            return rs.getLong(1);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + System.getenv("TIDEMARK_PG_PORT")
                + "/tidemark?sslmode=disable&connectTimeout=10&socketTimeout=300&prepareThreshold=1";
        Properties props = new Properties();
        props.setProperty("user", System.getenv("TIDEMARK_PG_USER"));
        props.setProperty("password", System.getenv("TIDEMARK_PG_PASSWORD"));
        try (Connection conn = DriverManager.getConnection(url, props);
             PreparedStatement ps = conn.prepareStatement(
                     "SELECT count(*) FROM invoicing_history.invoices WHERE status <> ?")) {
            long before = count(ps);
            // Twice: the second execution certainly runs the server-side statement.
            before = Math.max(before, count(ps));
            System.out.println("before " + before);
            System.out.flush();
            String go = new BufferedReader(new InputStreamReader(System.in)).readLine();
            if (go == null) {
                System.out.println("FAILED: stdin closed before the commits landed");
                System.exit(1);
            }
            long after = count(ps);
            System.out.println("after " + after);
            if (after <= before) {
                System.out.println("FAILED: the prepared statement still reads " + after
                        + " rows, as before the commits (" + before + ")");
                System.exit(1);
            }
        } catch (Throwable e) {
            System.out.println("FAILED: " + e);
            e.printStackTrace(System.out);
            System.exit(1);
        }
        System.out.println("OK jdbc prepared");
    }
}
