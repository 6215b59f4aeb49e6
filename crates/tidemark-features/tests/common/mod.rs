//! What the oracle and online-store tests share: their random generator and the
//! `shop.items` table their histories are landed into.

use tidemark_core::names::{Naming, TableName};
use tidemark_core::position::SourceState;
use tidemark_core::schema::{ColumnSchema, TableSchema};

/// A small xorshift: a failure names the seed that reproduces it.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    // Not every test binary that includes this module draws ranges.
    #[allow(dead_code)]
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1).max(1) as u64) as i64
    }
}

fn column(name: &str, dt: &str, ct: &str) -> ColumnSchema {
    ColumnSchema {
        source_name: name.into(),
        name: String::new(),
        column_type: ct.into(),
        data_type: dt.into(),
        precision: None,
        scale: None,
        stored: Vec::new(),
    }
}

/// `shop.items (id, grp, name, qty)`, keyed by `id`.
pub fn items_schema() -> TableSchema {
    TableSchema::new(
        TableName::new("shop", "items", Naming::SnakeCase),
        vec![
            column("id", "int", "int(11)"),
            column("grp", "int", "int(11)"),
            column("name", "varchar", "varchar(20)"),
            column("qty", "int", "int(11)"),
        ],
        &["id".to_string()],
        Naming::SnakeCase,
    )
    .unwrap()
}

pub fn state() -> SourceState {
    SourceState {
        source: "test".into(),
        source_table: "shop.items".into(),
        ..Default::default()
    }
}
