//! JSON-lines files of events.

use std::io::{BufReader, Cursor, Read};

use tidemark_core::change::Op;
use tidemark_events::{
    read_jsonl, read_jsonl_named, Datum, DebeziumOptions, DecodeError, Decoded, Format,
};

use crate::{change, fixture};

#[test]
fn mixed_file() {
    let bytes = fixture("events.jsonl");
    let items: Vec<_> = read_jsonl_named(
        Cursor::new(bytes),
        Format::Debezium(DebeziumOptions::default()),
        "events.jsonl",
    )
    .collect();
    let lines: Vec<u64> = items.iter().map(|(l, _)| *l).collect();
    // Line 2 is blank.
    assert_eq!(lines, [1, 3, 4, 5, 6]);
    let mut it = items.into_iter().map(|(_, r)| r);

    let ev = change(it.next().unwrap().unwrap());
    assert_eq!(ev.op, Op::Create);
    assert_eq!(ev.message_pos, "events.jsonl:1");

    // {"key", "value"} wrapper with topic/partition/offset: the Kafka position.
    let ev = change(it.next().unwrap().unwrap());
    assert_eq!(ev.op, Op::Delete);
    assert_eq!(ev.message_pos, "mysql-server-1.inventory.customers/0/42");
    assert_eq!(ev.dedup_position(), "binlog:mysql-bin.000003:805:0");

    let Decoded::Tombstone { key: Some(key) } = it.next().unwrap().unwrap() else {
        panic!("expected a tombstone with a key")
    };
    assert_eq!(key.get("id"), Some(&Datum::Int(1004)));

    let err = it.next().unwrap().unwrap_err();
    assert!(matches!(err, DecodeError::Json { .. }));
    assert!(err.to_string().starts_with("events.jsonl:5: "), "{err}");

    assert!(matches!(
        it.next().unwrap().unwrap(),
        Decoded::Heartbeat { .. }
    ));
    assert!(it.next().is_none());
}

#[test]
fn dms_file_with_bom() {
    let mut text = String::from("\u{feff}");
    for f in [
        "load.json",
        "insert.json",
        "control_drop_table.json",
        "delete.json",
    ] {
        let v: serde_json::Value = serde_json::from_slice(&fixture(&format!("dms/{f}"))).unwrap();
        text.push_str(&v.to_string());
        text.push('\n');
    }
    let kinds: Vec<String> = read_jsonl(Cursor::new(text), Format::Dms)
        .map(|(l, r)| match r.unwrap() {
            Decoded::Change(c) => format!("{l}:{:?}:{}", c.op, c.message_pos),
            Decoded::Control(c) => format!("{l}:{}", c.operation),
            other => format!("{l}:{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "1:Read:line 1",
            "2:Create:line 2",
            "3:drop-table",
            "4:Delete:line 4"
        ]
    );
}

struct Failing;
impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("disk on fire"))
    }
}

#[test]
fn read_errors_end_the_file() {
    let reader = Cursor::new(b"null\n".to_vec()).chain(Failing);
    let mut it = read_jsonl(BufReader::new(reader), Format::Dms);
    assert!(matches!(
        it.next(),
        Some((1, Ok(Decoded::Tombstone { .. })))
    ));
    let (line, err) = it.next().unwrap();
    assert_eq!(line, 2);
    assert!(err.unwrap_err().to_string().contains("disk on fire"));
    assert!(it.next().is_none());
}
