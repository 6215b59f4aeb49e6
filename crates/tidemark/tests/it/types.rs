//! Every MySQL type lands value by value as docs/types.md says.

use deltalake::arrow::util::display::array_value_to_string;
use mysql_async::prelude::Queryable;

use crate::support::{ok, TestDb};

const DDL: &str = "CREATE TABLE all_types (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
  bi BIGINT, biu BIGINT UNSIGNED,
  d10 DECIMAL(10,2), d38 DECIMAL(38,10), d65 DECIMAL(65,30),
  f FLOAT, db DOUBLE,
  b1 BIT(1), b12 BIT(12), b64 BIT(64),
  dt DATE, dtm DATETIME, dtm6 DATETIME(6), ts TIMESTAMP(3) NULL DEFAULT NULL,
  tm TIME, tm6 TIME(6), y YEAR,
  c CHAR(10), vc VARCHAR(100), tx TEXT, l1 VARCHAR(50) CHARACTER SET latin1,
  bn BINARY(4), vb VARBINARY(10), bl BLOB,
  e ENUM('small','medium','large'), st SET('a','b','c'),
  j JSON, g GEOMETRY
) DEFAULT CHARSET=utf8mb4";

const ROWS: &str = "INSERT INTO all_types VALUES
(1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
 -99999999.99, -9999999999999999999999999999.9999999999,
 -99999999999999999999999999999999999.999999999999999999999999999999,
 -1.5, -2.25, b'0', b'0', b'0',
 '1000-01-01', '1000-01-01 00:00:00', '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000',
 '-838:59:59', '-838:59:59.000000', 1901,
 'a', '', 'emoji 😀 ok', 'café', 0x00010203, X'', 0xdeadbeef, 'small', '', '{\"a\": 1}',
 ST_GeomFromText('POINT(1 2)')),
(2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
 9223372036854775807, 18446744073709551615,
 99999999.99, 9999999999999999999999999999.9999999999,
 99999999999999999999999999999999999.999999999999999999999999999999,
 3.5, 1.7976931348623157e308, b'1', b'111111111111',
 b'1111111111111111111111111111111111111111111111111111111111111111',
 '9999-12-31', '9999-12-31 23:59:59', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999',
 '838:59:59', '838:59:59.999999', 2155,
 'zzzzzzzzzz', 'ünïcödé', '日本語', 'naïve', 0xffffffff, 0x00, '', 'large', 'a,c', '[1, \"x\", null]',
 ST_GeomFromText('LINESTRING(0 0,1 1)')),
(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL),
(4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL,
 '0000-00-00', '0000-00-00 00:00:00', '2024-00-10 00:00:00', NULL, '00:00:00', NULL, 0,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)";

/// Expected text of each column for rows 1..4 (`` for NULL), as Arrow displays it.
const EXPECTED: &[(&str, [&str; 4])] = &[
    ("ti", ["-128", "127", "", "0"]),
    ("tiu", ["0", "255", "", "0"]),
    ("si", ["-32768", "32767", "", "0"]),
    ("siu", ["0", "65535", "", "0"]),
    ("mi", ["-8388608", "8388607", "", "0"]),
    ("miu", ["0", "16777215", "", "0"]),
    ("i", ["-2147483648", "2147483647", "", "0"]),
    ("iu", ["0", "4294967295", "", "0"]),
    (
        "bi",
        ["-9223372036854775808", "9223372036854775807", "", "0"],
    ),
    ("biu", ["0", "18446744073709551615", "", "0"]),
    ("d10", ["-99999999.99", "99999999.99", "", "0.00"]),
    (
        "d38",
        [
            "-9999999999999999999999999999.9999999999",
            "9999999999999999999999999999.9999999999",
            "",
            "0.0000000000",
        ],
    ),
    (
        "d65",
        [
            "-99999999999999999999999999999999999.999999999999999999999999999999",
            "99999999999999999999999999999999999.999999999999999999999999999999",
            "",
            "0.000000000000000000000000000000",
        ],
    ),
    ("f", ["-1.5", "3.5", "", "0.0"]),
    ("db", ["-2.25", "1.7976931348623157e308", "", "0.0"]),
    ("b1", ["false", "true", "", ""]),
    ("b12", ["0", "4095", "", ""]),
    ("b64", ["0", "18446744073709551615", "", ""]),
    ("dt", ["1000-01-01", "9999-12-31", "", ""]),
    (
        "dtm",
        ["1000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "", ""],
    ),
    (
        "dtm6",
        [
            "1000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "",
            "",
        ],
    ),
    (
        "ts",
        ["1970-01-01T00:00:01Z", "2038-01-19T03:14:07.999Z", "", ""],
    ),
    ("tm", ["-838:59:59", "838:59:59", "", "00:00:00"]),
    ("tm6", ["-838:59:59.000000", "838:59:59.999999", "", ""]),
    ("y", ["1901", "2155", "", ""]),
    ("c", ["a", "zzzzzzzzzz", "", ""]),
    ("vc", ["", "ünïcödé", "", ""]),
    ("tx", ["emoji 😀 ok", "日本語", "", ""]),
    ("l1", ["café", "naïve", "", ""]),
    ("bn", ["00010203", "ffffffff", "", ""]),
    ("vb", ["", "00", "", ""]),
    ("bl", ["deadbeef", "", "", ""]),
    ("e", ["small", "large", "", ""]),
    ("st", ["", "a,c", "", ""]),
    ("j", ["{\"a\": 1}", "[1, \"x\", null]", "", ""]),
    (
        "g",
        [
            "0101000000000000000000f03f0000000000000040",
            "01020000000200000000000000000000000000000000000000000000000000f03f000000000000f03f",
            "",
            "",
        ],
    ),
];

#[tokio::test]
async fn every_type_lands_value_by_value() {
    let db = TestDb::new("types").await;
    {
        let mut c = db.conn().await;
        c.query_drop("SET SESSION sql_mode = ''").await.unwrap();
        c.query_drop(DDL).await.unwrap();
        c.query_drop(ROWS).await.unwrap();
    }
    let config = db.config("");
    let out = ok(db.tidemark(&config, &["snapshot"]));
    // Zero dates are counted and reported, not a crash.
    assert!(out.contains("landed as NULL"), "{out}");
    assert!(out.contains("\"column\":\"dtm6\""), "{out}");

    let schema = &db.name;
    let cols: Vec<&str> = EXPECTED.iter().map(|(c, _)| *c).collect();
    let batches = db
        .sql(&format!(
            "SELECT {} FROM {schema}.all_types ORDER BY id",
            cols.join(", ")
        ))
        .await;
    let batch = deltalake::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(batch.num_rows(), 4);
    let mut mismatches = Vec::new();
    for (i, (col, want)) in EXPECTED.iter().enumerate() {
        for (row, w) in want.iter().enumerate() {
            let got = array_value_to_string(batch.column(i), row).unwrap();
            if got != *w {
                mismatches.push(format!("{col} row {}: got {got:?}, want {w:?}", row + 1));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "mismatches:\n{}",
        mismatches.join("\n")
    );

    // The stored Delta types are the documented, portable ones (no unsigned, no
    // timestamp_ntz, decimals within 38 digits): what Spark, Trino and Athena see.
    let dir = db
        .warehouse()
        .join(schema.to_lowercase())
        .join("all_types")
        .join("current");
    let table = deltalake::open_table(
        deltalake::table::builder::ensure_table_uri(dir.to_str().unwrap()).unwrap(),
    )
    .await
    .unwrap();
    let stored: std::collections::HashMap<String, String> = table
        .snapshot()
        .unwrap()
        .schema()
        .fields()
        .map(|f| (f.name().to_string(), f.data_type().to_string()))
        .collect();
    for (col, ty) in [
        ("tiu", "short"),
        ("iu", "long"),
        ("biu", "decimal(20,0)"),
        ("d65", "string"),
        ("dtm", "timestamp"),
        ("tm", "string"),
        ("g", "binary"),
        ("b1", "boolean"),
        ("y", "short"),
    ] {
        assert_eq!(stored[col], ty, "stored type of {col}");
    }
    let protocol = table.snapshot().unwrap().protocol().clone();
    assert_eq!(
        (protocol.min_reader_version(), protocol.min_writer_version()),
        (1, 2),
        "portable Delta protocol"
    );
    db.drop().await;
}
