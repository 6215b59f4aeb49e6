//! The change envelope read straight from the Avro binary datum into [`Datum`]s.
//!
//! apache-avro's generic reader returns every record as a `Vec<(String, Value)>`:
//! a String per field name, per record, per message, then dropped again once
//! [`super::change`] has turned the values into [`Datum`]s. For the row changes that
//! make up nearly every message of a Debezium topic, this module reads the datum
//! against a compact form of the writer schema, compiled once per schema id
//! ([`Plan`]): named references resolved, the envelope's `before`, `after`,
//! `source`, `op`, `ts_*` and `transaction` found by position, and each image
//! column's [`FieldMeta`] chosen. Strings are borrowed from the message, only the
//! values the result keeps are allocated.
//!
//! It accepts and refuses exactly the data apache-avro's reader does (the tests
//! compare the two on every fixture, on random schemas and on garbled bytes),
//! including apache-avro's leniency at the end of the datum: a boolean or a
//! string's bytes cut off there read as null, and so does a union whose branch
//! index is cut off. Only its wording of why a datum does not decode differs. And it
//! types values exactly as [`super::typed`] does, with the same error messages.
//!
//! Bounded on any input: every length is checked against the allocation cap and the
//! bytes that are left before anything is read, a collection's running item count
//! is capped as apache-avro caps it, and the recursion follows the schema (which
//! [`AvroSchemas::insert`](super::AvroSchemas::insert) refuses when recursive), never
//! the data.

use std::collections::{HashMap, HashSet};

use apache_avro::schema::{InnerDecimalSchema, Name, NamespaceRef, ResolvedSchema, UuidSchema};
use apache_avro::types::Value;
use apache_avro::{Schema, Uuid};
use base64::Engine;

use super::{bytes, change_error, float, float_json, no_table, FieldMeta, Parsed, NO_TIMESTAMP};
use crate::codec;
use crate::envelope::{self, Source};
use crate::error::DecodeError;
use crate::event::{DebeziumOptions, Decoded, Encoding, Row};
use crate::json::Json;
use crate::{AvroSchemas, Datum};

/// Member names read from records as scalars: the `source` and `transaction`
/// blocks, the envelope's timestamps, and the members of Debezium's
/// VariableScaleDecimal and geometry structs.
const WANTED: [&str; 16] = [
    "db",
    "table",
    "file",
    "gtid",
    "pos",
    "row",
    "server_id",
    "ts_ms",
    "ts_us",
    "ts_ns",
    "snapshot",
    "id",
    "total_order",
    "scale",
    "value",
    "wkb",
];

/// A record field whose name is not in [`WANTED`] (or not its first occurrence).
const UNWANTED: u8 = u8::MAX;

fn slot(name: &str) -> Option<usize> {
    WANTED.iter().position(|w| *w == name)
}

/// One type of the writer schema, references resolved to indexes into
/// [`Plan::nodes`]. The logical types are the ones apache-avro's parser made of the
/// schema, so both readers see the same types.
#[derive(Debug)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    Enum(Vec<String>),
    Union(Vec<usize>),
    Record(Vec<Field>),
    Array(usize),
    Map(usize),
    /// On bytes (`None`) or on a fixed of that size.
    Decimal(Option<usize>),
    Uuid(UuidKind),
    Date,
    TimeMillis,
    TimeMicros,
    TimestampMillis,
    TimestampMicros,
    TimestampNanos,
    LocalTimestampMillis,
    LocalTimestampMicros,
    LocalTimestampNanos,
    /// A fixed of that size (apache-avro refuses any but 12 when reading).
    Duration(usize),
    /// A named reference apache-avro's reader cannot resolve: reading it fails.
    Unresolved,
}

#[derive(Debug, Clone, Copy)]
enum UuidKind {
    String,
    Bytes,
    Fixed(usize),
}

#[derive(Debug)]
struct Field {
    name: String,
    node: usize,
    /// The index of the name in [`WANTED`], or [`UNWANTED`].
    slot: u8,
}

/// What the envelope's reader does with each top-level field.
#[derive(Debug, Clone, Copy)]
enum Role {
    Skip,
    Before,
    After,
    Source,
    Transaction,
    Op,
    /// `ts_ms`, `ts_us` or `ts_ns`, kept at this [`WANTED`] index.
    Time(usize),
}

/// A row image's record type and how each of its fields is typed.
#[derive(Debug)]
struct Image {
    record: usize,
    columns: Vec<Column>,
}

#[derive(Debug)]
struct Column {
    name: String,
    node: usize,
    meta: FieldMeta,
    /// Whether `meta` came from the schema (else it is [`FieldMeta::plain`]); says
    /// how a typing error is worded.
    described: bool,
}

/// A change envelope's writer schema, compiled for [`decode_change`].
#[derive(Debug)]
pub(super) struct Plan {
    nodes: Vec<Node>,
    /// The envelope record's fields, in order.
    fields: Vec<(usize, Role)>,
    before: Vec<Image>,
    after: Vec<Image>,
    /// The images' field metadata from the schema's JSON.
    metas: [Vec<FieldMeta>; 2],
}

impl Plan {
    /// The plan of a writer schema whose top-level type is a record with an `op`
    /// field, the only datums [`super::decode_avro`] treats as changes; `None` for
    /// any other schema, and for the few that are read the generic way only (a
    /// `big-decimal` anywhere, which Kafka Connect never writes, or names that
    /// apache-avro does not resolve).
    pub(super) fn new(
        schema: &Schema,
        before_metas: &[FieldMeta],
        after_metas: &[FieldMeta],
    ) -> Option<Plan> {
        let Schema::Record(top) = schema else {
            return None;
        };
        if !top.fields.iter().any(|f| f.name == "op") {
            return None;
        }
        let resolved = ResolvedSchema::try_from(schema).ok()?;
        let mut c = Compiler {
            names: resolved.get_names(),
            nodes: Vec::new(),
            by_name: HashMap::new(),
            open: Vec::new(),
        };
        let root = c.node(schema, None).ok()?;
        let Node::Record(fields) = &c.nodes[root] else {
            return None;
        };
        let mut seen: Vec<&str> = Vec::new();
        let mut roles = Vec::with_capacity(fields.len());
        let (mut before_node, mut after_node) = (None, None);
        for f in fields {
            // Like `Members::get`, only a name's first field counts.
            let first = !seen.contains(&f.name.as_str());
            seen.push(&f.name);
            let role = match f.name.as_str() {
                _ if !first => Role::Skip,
                "before" => {
                    before_node = Some(f.node);
                    Role::Before
                }
                "after" => {
                    after_node = Some(f.node);
                    Role::After
                }
                "source" => Role::Source,
                "transaction" => Role::Transaction,
                "op" => Role::Op,
                n @ ("ts_ms" | "ts_us" | "ts_ns") => Role::Time(slot(n)?),
                _ => Role::Skip,
            };
            roles.push((f.node, role));
        }
        let nodes = c.nodes;
        let images = |node: Option<usize>, metas: &[FieldMeta]| -> Vec<Image> {
            let Some(node) = node else {
                return Vec::new();
            };
            let records = match &nodes[node] {
                Node::Union(branches) => branches.clone(),
                _ => vec![node],
            };
            records
                .into_iter()
                .filter_map(|r| match &nodes[r] {
                    Node::Record(fields) => Some(Image {
                        record: r,
                        columns: columns(fields, metas),
                    }),
                    _ => None,
                })
                .collect()
        };
        let (before, after) = (
            images(before_node, before_metas),
            images(after_node, after_metas),
        );
        Some(Plan {
            nodes,
            fields: roles,
            before,
            after,
            metas: [before_metas.to_vec(), after_metas.to_vec()],
        })
    }
}

/// Each field's metadata as `row` chooses it: the field at the same position if its
/// name matches, else the first of that name, else none.
fn columns(fields: &[Field], metas: &[FieldMeta]) -> Vec<Column> {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let meta = metas
                .get(i)
                .filter(|m| m.name == f.name)
                .or_else(|| metas.iter().find(|m| m.name == f.name));
            Column {
                name: f.name.clone(),
                node: f.node,
                described: meta.is_some(),
                meta: meta.cloned().unwrap_or_else(|| FieldMeta::plain(&f.name)),
            }
        })
        .collect()
}

struct Compiler<'s> {
    names: &'s HashMap<Name, &'s Schema>,
    nodes: Vec<Node>,
    /// Named types already compiled, by full name.
    by_name: HashMap<Name, usize>,
    /// Named references being compiled (a recursive type makes the plan fail; the
    /// schema check at insert refuses those anyway).
    open: Vec<Name>,
}

/// The schema cannot be read here (see [`Plan::new`]).
struct Unsupported;

impl Compiler<'_> {
    fn push(&mut self, n: Node) -> usize {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    /// Remember a named type compiled where it is defined, for later references.
    fn named(&mut self, name: &Name, ns: NamespaceRef, id: usize) {
        let full = name.fully_qualified_name(ns).into_owned();
        self.by_name.entry(full).or_insert(id);
    }

    /// `s` read in the enclosing namespace `ns`, as apache-avro's `decode_internal`
    /// reads it.
    fn node(&mut self, s: &Schema, ns: NamespaceRef) -> Result<usize, Unsupported> {
        let n = match s {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int => Node::Int,
            Schema::Long => Node::Long,
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::Bytes => Node::Bytes,
            Schema::String => Node::String,
            Schema::Fixed(f) => {
                let id = self.push(Node::Fixed(f.size));
                self.named(&f.name, ns, id);
                return Ok(id);
            }
            Schema::Enum(e) => {
                let id = self.push(Node::Enum(e.symbols.clone()));
                self.named(&e.name, ns, id);
                return Ok(id);
            }
            Schema::Union(u) => {
                let branches = u
                    .variants()
                    .iter()
                    .map(|v| self.node(v, ns))
                    .collect::<Result<Vec<_>, _>>()?;
                Node::Union(branches)
            }
            Schema::Record(r) => {
                let full = r.name.fully_qualified_name(ns);
                let inner = full.namespace();
                let mut fields = Vec::with_capacity(r.fields.len());
                let mut taken = [false; WANTED.len()];
                for f in &r.fields {
                    let node = self.node(&f.schema, inner)?;
                    let slot = match slot(&f.name) {
                        Some(i) if !taken[i] => {
                            taken[i] = true;
                            i as u8
                        }
                        _ => UNWANTED,
                    };
                    fields.push(Field {
                        name: f.name.clone(),
                        node,
                        slot,
                    });
                }
                let id = self.push(Node::Record(fields));
                self.named(&r.name, ns, id);
                return Ok(id);
            }
            Schema::Array(a) => Node::Array(self.node(&a.items, ns)?),
            Schema::Map(m) => Node::Map(self.node(&m.types, ns)?),
            Schema::Decimal(d) => Node::Decimal(match &d.inner {
                InnerDecimalSchema::Bytes => None,
                InnerDecimalSchema::Fixed(f) => Some(f.size),
            }),
            Schema::BigDecimal => return Err(Unsupported),
            Schema::Uuid(u) => Node::Uuid(match u {
                UuidSchema::String => UuidKind::String,
                UuidSchema::Bytes => UuidKind::Bytes,
                UuidSchema::Fixed(f) => UuidKind::Fixed(f.size),
            }),
            Schema::Date => Node::Date,
            Schema::TimeMillis => Node::TimeMillis,
            Schema::TimeMicros => Node::TimeMicros,
            Schema::TimestampMillis => Node::TimestampMillis,
            Schema::TimestampMicros => Node::TimestampMicros,
            Schema::TimestampNanos => Node::TimestampNanos,
            Schema::LocalTimestampMillis => Node::LocalTimestampMillis,
            Schema::LocalTimestampMicros => Node::LocalTimestampMicros,
            Schema::LocalTimestampNanos => Node::LocalTimestampNanos,
            Schema::Duration(f) => Node::Duration(f.size),
            Schema::Ref { name } => {
                let full = name.fully_qualified_name(ns);
                if let Some(id) = self.by_name.get(full.as_ref()) {
                    return Ok(*id);
                }
                if self.open.iter().any(|n| n == full.as_ref()) {
                    return Err(Unsupported);
                }
                let names = self.names;
                let Some(target) = names.get(full.as_ref()) else {
                    return Ok(self.push(Node::Unresolved));
                };
                let full = full.into_owned();
                self.open.push(full.clone());
                let id = self.node(target, full.namespace());
                self.open.pop();
                let id = id?;
                self.by_name.insert(full, id);
                return Ok(id);
            }
        };
        Ok(self.push(n))
    }
}

/// What the generic reader's error would say of a value of this type (`kind` in
/// the parent module).
fn kind(n: &Node) -> &'static str {
    match n {
        Node::Null => "null",
        Node::Boolean => "a boolean",
        Node::Int | Node::Long => "an integer",
        Node::Float | Node::Double => "a floating-point number",
        Node::String => "a string",
        Node::Bytes | Node::Fixed(_) => "bytes",
        Node::Enum(_) => "an enum symbol",
        Node::Array(_) => "an array",
        Node::Map(_) => "a map",
        Node::Record(_) => "a record",
        Node::Union(_) | Node::Unresolved => "a value",
        Node::Decimal(_)
        | Node::Uuid(_)
        | Node::Date
        | Node::TimeMillis
        | Node::TimeMicros
        | Node::TimestampMillis
        | Node::TimestampMicros
        | Node::TimestampNanos
        | Node::LocalTimestampMillis
        | Node::LocalTimestampMicros
        | Node::LocalTimestampNanos
        | Node::Duration(_) => "a logical-type value",
    }
}

/// A value read where the envelope needs a string or an integer; anything else is
/// only its kind. Borrowed from the message (strings) or the schema (enum symbols).
#[derive(Debug, Clone, Copy, Default)]
enum Scalar<'a> {
    /// Null, or a value apache-avro reads as null (cut off at the end).
    #[default]
    Null,
    Bool(bool),
    /// An Avro `int` or `long`.
    Int(i64),
    /// A string or an enum symbol.
    Str(&'a str),
    /// Avro `bytes` (not fixed, not a decimal).
    Bytes(&'a [u8]),
    Other(&'static str),
}

impl Scalar<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Int(_) => "an integer",
            Scalar::Str(_) => "a string",
            Scalar::Bytes(_) => "bytes",
            Scalar::Other(k) => k,
        }
    }
}

/// A record's members named in [`WANTED`] (the `Members` accessors of the parent
/// module, over a record read here).
#[derive(Default)]
struct Block<'a>([Scalar<'a>; WANTED.len()]);

impl<'a> Block<'a> {
    /// The member, `None` when absent or null.
    fn get(&self, k: &str) -> Option<&Scalar<'a>> {
        slot(k)
            .map(|i| &self.0[i])
            .filter(|v| !matches!(v, Scalar::Null))
    }

    fn str(&self, k: &str) -> Option<&'a str> {
        match self.get(k)? {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    fn int(&self, k: &str) -> Option<i64> {
        match self.get(k)? {
            Scalar::Int(n) => Some(*n),
            _ => None,
        }
    }

    fn text(&self, k: &str) -> Option<String> {
        match self.get(k)? {
            Scalar::Str(s) => Some(s.to_string()),
            Scalar::Int(n) => Some(n.to_string()),
            Scalar::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// A row image as read: absent (null), typed, a column that did not type (which
/// only becomes the error if the envelope gets that far), or not a record.
enum ImageVal {
    Absent,
    Row(Row),
    Bad { column: String, message: String },
    Other(&'static str),
}

/// The envelope's members that [`decode_change`] uses.
struct Envelope<'a> {
    op: Scalar<'a>,
    /// The top-level `ts_*`.
    times: Block<'a>,
    source: Option<Block<'a>>,
    transaction: Option<Block<'a>>,
    before: ImageVal,
    after: ImageVal,
}

/// Why a datum does not decode (the part of the error after the schema's name).
type Fail = String;

/// A varint that ran out of bytes, or took more than ten.
enum VarErr {
    End,
    Overflow,
}

fn ended() -> Fail {
    "the datum ends in the middle of a value".to_string()
}

/// A reader over one datum.
struct Reader<'a> {
    buf: &'a [u8],
    nodes: &'a [Node],
    /// The most one length prefix may ask for (apache-avro's cap, set from
    /// `MAX_ALLOCATION`).
    cap: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], nodes: &'a [Node]) -> Reader<'a> {
        Reader {
            buf,
            nodes,
            cap: apache_avro::util::max_allocation_bytes(super::MAX_ALLOCATION),
        }
    }

    fn varint(&mut self) -> Result<u64, VarErr> {
        let mut n = 0u64;
        for j in 0..10 {
            let Some((&b, rest)) = self.buf.split_first() else {
                return Err(VarErr::End);
            };
            self.buf = rest;
            n |= u64::from(b & 0x7f) << (j * 7);
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(VarErr::Overflow)
    }

    fn long(&mut self) -> Result<i64, Fail> {
        match self.varint() {
            Ok(z) => Ok(if z & 1 == 0 {
                (z >> 1) as i64
            } else {
                !(z >> 1) as i64
            }),
            Err(VarErr::End) => Err(ended()),
            Err(VarErr::Overflow) => Err("an integer takes more than 10 bytes".to_string()),
        }
    }

    fn int(&mut self) -> Result<i32, Fail> {
        let n = self.long()?;
        i32::try_from(n).map_err(|_| format!("{n} is out of range for an Avro int"))
    }

    /// `n` bytes, or `None` (everything consumed) when fewer are left.
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            self.buf = &[];
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    /// A length prefix: never negative, never above the cap.
    fn len(&mut self) -> Result<usize, Fail> {
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| format!("a negative length {n}"))?;
        if n > self.cap {
            return Err(format!(
                "a length of {n} bytes is over the limit of {} bytes",
                self.cap
            ));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], Fail> {
        let n = self.len()?;
        self.take(n).ok_or_else(ended)
    }

    /// A string; `None` when its bytes are cut off (apache-avro reads that as null).
    fn string(&mut self) -> Result<Option<&'a str>, Fail> {
        let n = self.len()?;
        match self.take(n) {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b)
                .map(Some)
                .map_err(|e| format!("a string is not UTF-8: {e}")),
        }
    }

    /// A boolean; `None` at the end of the datum (apache-avro reads that as null).
    fn boolean(&mut self) -> Result<Option<bool>, Fail> {
        match self.buf.split_first() {
            None => Ok(None),
            Some((&b, rest)) => {
                self.buf = rest;
                match b {
                    0 => Ok(Some(false)),
                    1 => Ok(Some(true)),
                    _ => Err(format!("{b} is not a boolean")),
                }
            }
        }
    }

    fn fixed(&mut self, n: usize) -> Result<&'a [u8], Fail> {
        self.take(n).ok_or_else(ended)
    }

    fn f32(&mut self) -> Result<f32, Fail> {
        let b = self.fixed(4)?;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, Fail> {
        let b = self.fixed(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }

    /// A union's branch; `None` when the index is cut off (apache-avro reads that as
    /// branch 0 holding null).
    fn branch(&mut self, branches: &[usize]) -> Result<Option<usize>, Fail> {
        let z = match self.varint() {
            Ok(z) => z,
            Err(VarErr::End) => return Ok(None),
            Err(VarErr::Overflow) => return Err("an integer takes more than 10 bytes".into()),
        };
        let i = if z & 1 == 0 {
            (z >> 1) as i64
        } else {
            !(z >> 1) as i64
        };
        usize::try_from(i)
            .ok()
            .and_then(|i| branches.get(i))
            .copied()
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "union branch {i} does not exist (the union has {})",
                    branches.len()
                )
            })
    }

    fn symbol(&mut self, symbols: &'a [String]) -> Result<&'a str, Fail> {
        let i = self.int()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| symbols.get(i))
            .map(String::as_str)
            .ok_or_else(|| {
                format!(
                    "enum symbol {i} does not exist (the enum has {})",
                    symbols.len()
                )
            })
    }

    fn uuid(&mut self, k: UuidKind) -> Result<Uuid, Fail> {
        let parsed = match k {
            UuidKind::String => match self.string()? {
                Some(s) => Uuid::parse_str(s),
                None => return Err(ended()),
            },
            UuidKind::Bytes => Uuid::from_slice(self.bytes()?),
            UuidKind::Fixed(n) => {
                let b = self.fixed(n)?;
                if n != 16 {
                    return Err(format!("a UUID of {n} bytes"));
                }
                Uuid::from_slice(b)
            }
        };
        parsed.map_err(|e| format!("not a UUID: {e}"))
    }

    fn duration(&mut self, size: usize) -> Result<apache_avro::Duration, Fail> {
        if size != 12 {
            return Err(format!("a duration of {size} bytes, not 12"));
        }
        let b = self.fixed(12)?;
        let mut a = [0u8; 12];
        a.copy_from_slice(b);
        Ok(apache_avro::Duration::from(a))
    }

    /// The item count of an array's or map's next block (0: the end), checked before
    /// any item is read as apache-avro checks it: the `held` items and these, at
    /// `item_size` bytes each, within the cap.
    fn block_count(&mut self, held: usize, item_size: usize) -> Result<usize, Fail> {
        let n = self.long()?;
        let count = match n {
            0 => return Ok(0),
            n if n < 0 => {
                // A block's byte size follows a negative count.
                self.long()?;
                n.checked_neg()
                    .ok_or_else(|| "a block count out of range".to_string())?
            }
            n => n,
        };
        let count = usize::try_from(count).map_err(|_| "a block count out of range")?;
        held.checked_add(count)
            .and_then(|t| t.checked_mul(item_size))
            .filter(|b| *b <= self.cap)
            .ok_or_else(|| {
                format!(
                    "a block of {count} items takes the collection over the limit of {} bytes",
                    self.cap
                )
            })?;
        Ok(count)
    }

    /// An array's items, `each` called per item.
    fn array(&mut self, mut each: impl FnMut(&mut Self) -> Result<(), Fail>) -> Result<(), Fail> {
        let mut held = 0usize;
        loop {
            let count = self.block_count(held, std::mem::size_of::<Value>())?;
            if count == 0 {
                return Ok(());
            }
            for _ in 0..count {
                each(self)?;
            }
            held += count;
        }
    }

    /// A map's entries, `each` called per entry with its key. apache-avro holds them
    /// in a hash map, so its cap counts distinct keys.
    fn map(
        &mut self,
        mut each: impl FnMut(&mut Self, &'a str) -> Result<(), Fail>,
    ) -> Result<(), Fail> {
        let mut keys: HashSet<&'a str> = HashSet::new();
        loop {
            let count = self.block_count(keys.len(), std::mem::size_of::<(String, Value)>())?;
            if count == 0 {
                return Ok(());
            }
            for _ in 0..count {
                let key = self.string()?.ok_or_else(ended)?;
                each(self, key)?;
                keys.insert(key);
            }
        }
    }

    /// Read past a value.
    fn skip(&mut self, node: usize) -> Result<(), Fail> {
        let nodes = self.nodes;
        match &nodes[node] {
            Node::Null => {}
            Node::Boolean => {
                self.boolean()?;
            }
            Node::Int | Node::Date | Node::TimeMillis => {
                self.int()?;
            }
            Node::Long
            | Node::TimeMicros
            | Node::TimestampMillis
            | Node::TimestampMicros
            | Node::TimestampNanos
            | Node::LocalTimestampMillis
            | Node::LocalTimestampMicros
            | Node::LocalTimestampNanos => {
                self.long()?;
            }
            Node::Float => {
                self.fixed(4)?;
            }
            Node::Double => {
                self.fixed(8)?;
            }
            Node::Bytes | Node::Decimal(None) => {
                self.bytes()?;
            }
            Node::String => {
                self.string()?;
            }
            Node::Fixed(n) | Node::Decimal(Some(n)) => {
                self.fixed(*n)?;
            }
            Node::Enum(symbols) => {
                self.symbol(symbols)?;
            }
            Node::Uuid(k) => {
                self.uuid(*k)?;
            }
            Node::Duration(size) => {
                self.duration(*size)?;
            }
            Node::Union(branches) => {
                if let Some(b) = self.branch(branches)? {
                    self.skip(b)?;
                }
            }
            Node::Record(fields) => {
                for f in fields {
                    self.skip(f.node)?;
                }
            }
            Node::Array(items) => self.array(|r| r.skip(*items))?,
            Node::Map(values) => self.map(|r, _| r.skip(*values))?,
            Node::Unresolved => return Err(unresolved()),
        }
        Ok(())
    }

    fn scalar(&mut self, node: usize) -> Result<Scalar<'a>, Fail> {
        let nodes = self.nodes;
        Ok(match &nodes[node] {
            Node::Union(branches) => match self.branch(branches)? {
                None => Scalar::Null,
                Some(b) => self.scalar(b)?,
            },
            Node::Null => Scalar::Null,
            Node::Boolean => self.boolean()?.map_or(Scalar::Null, Scalar::Bool),
            Node::Int => Scalar::Int(i64::from(self.int()?)),
            Node::Long => Scalar::Int(self.long()?),
            Node::String => self.string()?.map_or(Scalar::Null, Scalar::Str),
            Node::Enum(symbols) => Scalar::Str(self.symbol(symbols)?),
            Node::Bytes => Scalar::Bytes(self.bytes()?),
            n => {
                self.skip(node)?;
                Scalar::Other(kind(n))
            }
        })
    }

    /// A record's wanted members.
    fn block(&mut self, fields: &[Field]) -> Result<Block<'a>, Fail> {
        let mut b = Block::default();
        for f in fields {
            if f.slot == UNWANTED {
                self.skip(f.node)?;
            } else {
                b.0[f.slot as usize] = self.scalar(f.node)?;
            }
        }
        Ok(b)
    }

    /// A member that is a record (`Members::record`): `None` when null or not a
    /// record.
    fn record_block(&mut self, node: usize) -> Result<Option<Block<'a>>, Fail> {
        let nodes = self.nodes;
        match &nodes[node] {
            Node::Union(branches) => match self.branch(branches)? {
                None => Ok(None),
                Some(b) => self.record_block(b),
            },
            Node::Record(fields) => self.block(fields).map(Some),
            _ => self.skip(node).map(|_| None),
        }
    }

    /// A row image (`metas` its fields' metadata, `images` the columns of each
    /// record type it may hold).
    fn image(
        &mut self,
        node: usize,
        images: &[Image],
        metas: &[FieldMeta],
    ) -> Result<ImageVal, Fail> {
        let nodes = self.nodes;
        Ok(match &nodes[node] {
            Node::Union(branches) => match self.branch(branches)? {
                None => ImageVal::Absent,
                Some(b) => return self.image(b, images, metas),
            },
            Node::Null => ImageVal::Absent,
            Node::Record(fields) => match images.iter().find(|i| i.record == node) {
                Some(image) => self.row(&image.columns)?,
                // The plan has every record type an image can hold; were one
                // missing, its columns are chosen here the same way.
                None => self.row(&columns(fields, metas))?,
            },
            Node::Boolean => match self.boolean()? {
                None => ImageVal::Absent,
                Some(_) => ImageVal::Other(kind(&Node::Boolean)),
            },
            Node::String => match self.string()? {
                None => ImageVal::Absent,
                Some(_) => ImageVal::Other(kind(&Node::String)),
            },
            n => {
                self.skip(node)?;
                ImageVal::Other(kind(n))
            }
        })
    }

    /// A row image, typed column by column; after a column that does not type, the
    /// rest are only read past.
    fn row(&mut self, columns: &[Column]) -> Result<ImageVal, Fail> {
        let mut out = Vec::with_capacity(columns.len());
        let mut it = columns.iter();
        while let Some(c) = it.next() {
            match self.datum(c.node, &c.meta)? {
                Ok(d) => out.push((c.name.clone(), d)),
                Err(message) => {
                    for rest in it {
                        self.skip(rest.node)?;
                    }
                    let f = &c.meta;
                    let message = if !c.described {
                        message
                    } else if f.logical.is_empty() {
                        format!("{message} (Avro field of Connect type {})", f.ty)
                    } else {
                        format!(
                            "{message} (Avro field of Connect type {} {})",
                            f.ty, f.logical
                        )
                    };
                    return Ok(ImageVal::Bad {
                        column: c.name.clone(),
                        message,
                    });
                }
            }
        }
        Ok(ImageVal::Row(Row { columns: out }))
    }

    /// One column's value typed as [`super::typed`] types it. The outer error is a
    /// datum that does not decode, the inner one a value that does not type.
    fn datum(&mut self, node: usize, f: &FieldMeta) -> Result<Result<Datum, String>, Fail> {
        let logical = f.logical.as_str();
        let us = |n: i64, factor: i64| {
            n.checked_mul(factor)
                .ok_or_else(|| format!("{n} is out of range"))
        };
        let nodes = self.nodes;
        Ok(match &nodes[node] {
            Node::Union(branches) => match self.branch(branches)? {
                None => Ok(Datum::Null),
                Some(b) => return self.datum(b, f),
            },
            Node::Null => Ok(Datum::Null),
            Node::Boolean => Ok(self.boolean()?.map_or(Datum::Null, Datum::Bool)),
            Node::Int => codec::integer(i64::from(self.int()?), logical),
            Node::Long => codec::integer(self.long()?, logical),
            Node::Float => {
                let x = self.f32()?;
                Ok(float(f64::from(x), format!("{x:?}")))
            }
            Node::Double => {
                let x = self.f64()?;
                Ok(float(x, format!("{x:?}")))
            }
            Node::String => match self.string()? {
                None => Ok(Datum::Null),
                Some(s) => match logical {
                    "io.debezium.time.ZonedTimestamp" => {
                        codec::parse_instant(s).map(|us| us.map_or(Datum::Null, Datum::Timestamp))
                    }
                    "io.debezium.data.Json" => Ok(Datum::Json(s.to_string())),
                    _ => Ok(Datum::Text(s.to_string())),
                },
            },
            Node::Enum(symbols) => Ok(Datum::Text(self.symbol(symbols)?.to_string())),
            Node::Uuid(k) => Ok(Datum::Text(self.uuid(*k)?.to_string())),
            Node::Bytes => bytes(self.bytes()?, f),
            Node::Fixed(n) => bytes(self.fixed(*n)?, f),
            Node::Decimal(inner) => {
                let raw = match inner {
                    None => self.bytes()?,
                    Some(n) => self.fixed(*n)?,
                };
                decimal(raw, f)
            }
            Node::Date => Ok(Datum::Date(self.int()?)),
            Node::TimeMillis => us(i64::from(self.int()?), 1000).map(Datum::Time),
            Node::TimeMicros => Ok(Datum::Time(self.long()?)),
            Node::TimestampMillis | Node::LocalTimestampMillis => {
                us(self.long()?, 1000).map(Datum::Timestamp)
            }
            Node::TimestampMicros | Node::LocalTimestampMicros => {
                Ok(Datum::Timestamp(self.long()?))
            }
            Node::TimestampNanos | Node::LocalTimestampNanos => {
                Ok(Datum::Timestamp(self.long()?.div_euclid(1000)))
            }
            Node::Record(fields) if logical == "io.debezium.data.VariableScaleDecimal" => {
                let m = self.block(fields)?;
                (|| {
                    let scale = m
                        .int("scale")
                        .and_then(|s| u32::try_from(s).ok())
                        .ok_or("VariableScaleDecimal without a valid scale")?;
                    match m.get("value") {
                        Some(Scalar::Bytes(b)) => {
                            Ok(Datum::Decimal(codec::unscaled_to_decimal(b, scale)?))
                        }
                        _ => Err("VariableScaleDecimal without a value".into()),
                    }
                })()
            }
            Node::Record(fields) if logical.starts_with("io.debezium.data.geometry.") => {
                match self.block(fields)?.get("wkb") {
                    Some(Scalar::Bytes(b)) => Ok(Datum::Bytes(b.to_vec())),
                    _ => Err("geometry without a wkb field".into()),
                }
            }
            Node::Unresolved => return Err(unresolved()),
            Node::Record(_) | Node::Array(_) | Node::Map(_) | Node::Duration(_) => {
                Ok(Datum::Json(self.json(node)?.to_text()))
            }
        })
    }

    /// A value as the JSON converter would have written it (`to_json` in the parent
    /// module).
    fn json(&mut self, node: usize) -> Result<Json, Fail> {
        let nodes = self.nodes;
        let b64 = |b: &[u8]| Json::String(base64::engine::general_purpose::STANDARD.encode(b));
        Ok(match &nodes[node] {
            Node::Union(branches) => match self.branch(branches)? {
                None => Json::Null,
                Some(b) => return self.json(b),
            },
            Node::Null => Json::Null,
            Node::Boolean => self.boolean()?.map_or(Json::Null, Json::Bool),
            Node::Int | Node::Date | Node::TimeMillis => Json::Number(self.int()?.to_string()),
            Node::Long
            | Node::TimeMicros
            | Node::TimestampMillis
            | Node::TimestampMicros
            | Node::TimestampNanos
            | Node::LocalTimestampMillis
            | Node::LocalTimestampMicros
            | Node::LocalTimestampNanos => Json::Number(self.long()?.to_string()),
            Node::Float => {
                let x = self.f32()?;
                float_json(f64::from(x), format!("{x:?}"))
            }
            Node::Double => {
                let x = self.f64()?;
                float_json(x, format!("{x:?}"))
            }
            Node::String => self
                .string()?
                .map_or(Json::Null, |s| Json::String(s.to_string())),
            Node::Enum(symbols) => Json::String(self.symbol(symbols)?.to_string()),
            Node::Bytes => b64(self.bytes()?),
            Node::Fixed(n) => b64(self.fixed(*n)?),
            Node::Decimal(inner) => {
                let raw = match inner {
                    None => self.bytes()?,
                    Some(n) => self.fixed(*n)?,
                };
                // apache-avro's Decimal gives no bytes back for an empty value.
                if raw.is_empty() {
                    Json::Null
                } else {
                    b64(raw)
                }
            }
            Node::Uuid(k) => Json::String(self.uuid(*k)?.to_string()),
            Node::Duration(size) => Json::String(format!("{:?}", self.duration(*size)?)),
            Node::Array(items) => {
                let mut out = Vec::new();
                self.array(|r| {
                    out.push(r.json(*items)?);
                    Ok(())
                })?;
                Json::Array(out)
            }
            Node::Map(values) => {
                // A later duplicate key replaces the value (a map), then sorted, so
                // the same map always gives the same text.
                let mut m: HashMap<&str, Json> = HashMap::new();
                self.map(|r, k| {
                    let v = r.json(*values)?;
                    m.insert(k, v);
                    Ok(())
                })?;
                let mut members: Vec<(String, Json)> =
                    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                members.sort_by(|a, b| a.0.cmp(&b.0));
                Json::Object(members)
            }
            Node::Record(fields) => {
                let mut members = Vec::with_capacity(fields.len());
                for f in fields {
                    members.push((f.name.clone(), self.json(f.node)?));
                }
                Json::Object(members)
            }
            Node::Unresolved => return Err(unresolved()),
        })
    }

    fn envelope(&mut self, plan: &'a Plan) -> Result<Envelope<'a>, Fail> {
        let mut env = Envelope {
            op: Scalar::Null,
            times: Block::default(),
            source: None,
            transaction: None,
            before: ImageVal::Absent,
            after: ImageVal::Absent,
        };
        for (node, role) in &plan.fields {
            match role {
                Role::Skip => self.skip(*node)?,
                Role::Before => env.before = self.image(*node, &plan.before, &plan.metas[0])?,
                Role::After => env.after = self.image(*node, &plan.after, &plan.metas[1])?,
                Role::Source => env.source = self.record_block(*node)?,
                Role::Transaction => env.transaction = self.record_block(*node)?,
                Role::Op => env.op = self.scalar(*node)?,
                Role::Time(i) => env.times.0[*i] = self.scalar(*node)?,
            }
        }
        Ok(env)
    }
}

fn unresolved() -> Fail {
    "the schema refers to a type it does not define".to_string()
}

/// A decimal logical value, as `typed` types apache-avro's `Value::Decimal`.
fn decimal(raw: &[u8], f: &FieldMeta) -> Result<Datum, String> {
    if raw.is_empty() {
        // apache-avro's Decimal refuses to give back zero bytes; its error is the
        // column's.
        Vec::<u8>::try_from(&apache_avro::Decimal::from(raw)).map_err(|e| e.to_string())?;
    }
    let scale = f
        .scale
        .ok_or("the decimal field's schema has no scale".to_string())?;
    Ok(Datum::Decimal(codec::unscaled_to_decimal(raw, scale)?))
}

/// [`super::change`] over a datum read by the plan: the same result, the same
/// errors (but for the wording of why a datum does not decode).
pub(super) fn decode_change(
    plan: &Plan,
    datum: &[u8],
    key: Option<(u32, &Parsed)>,
    value_id: u32,
    parsed: &Parsed,
    position: &str,
    schemas: &AvroSchemas,
) -> Result<Decoded, DecodeError> {
    let damaged = |what: String| super::damaged(parsed, value_id, "value", position, what);
    let mut r = Reader::new(datum, &plan.nodes);
    let env = r.envelope(plan).map_err(damaged)?;
    if !r.buf.is_empty() {
        return Err(damaged(format!(
            "{} bytes are left over after the value",
            r.buf.len()
        )));
    }
    let Envelope {
        op,
        times,
        source,
        transaction,
        before,
        after,
    } = env;
    let source = source.as_ref();
    let name = |k: &str| source.and_then(|s| s.str(k));
    let (Some(db), Some(table)) = (name("db"), name("table")) else {
        return Err(no_table(position, value_id, &parsed.name));
    };
    let qualified = format!("{db}.{table}");
    let err = |msg: String| change_error(position, &qualified, value_id, msg);
    let op_code = match op {
        Scalar::Str(s) => s,
        other => {
            return Err(err(format!(
                "\"op\" must be a string (c, u, d, r or t), found {}",
                match other {
                    Scalar::Null => "nothing",
                    other => other.kind(),
                }
            )))
        }
    };
    let instant = |b: Option<&Block>| b.and_then(|b| envelope::instant_us(|k| b.int(k)));
    let source_ts_us = instant(source)
        .or_else(|| instant(Some(&times)))
        .ok_or_else(|| err(NO_TIMESTAMP.into()))?;
    let src = Source::read(
        |k| source.and_then(|s| s.str(k)),
        |k| source.and_then(|s| s.int(k)),
    );
    let snapshot_flag = match source.and_then(|s| s.get("snapshot")) {
        Some(Scalar::Bool(b)) => *b,
        Some(Scalar::Str(s)) => *s != "false",
        _ => false,
    };
    let transaction = transaction.as_ref();
    let parts = envelope::Change {
        db,
        table,
        op_code,
        src,
        snapshot_flag,
        txn_id: transaction.and_then(|t| t.text("id")),
        total_order: transaction.and_then(|t| t.int("total_order")),
        source_ts_us,
    };
    let images = || {
        let image = |which: &str, v: ImageVal| match v {
            ImageVal::Absent => Ok(None),
            ImageVal::Row(row) => Ok(Some(row)),
            ImageVal::Bad { column, message } => Err(DecodeError::Value {
                position: position.to_string(),
                table: qualified.clone(),
                column,
                message,
            }),
            ImageVal::Other(kind) => Err(err(format!(
                "\"{which}\" must be a record or null, found {kind}"
            ))),
        };
        Ok((image("before", before)?, image("after", after)?))
    };
    let definition = || {
        schemas
            .definition(key, value_id, parsed)
            .map(Some)
            .map_err(&err)
    };
    parts.finish(
        position,
        &err,
        images,
        Encoding::debezium(&DebeziumOptions::default(), true),
        definition,
    )
}
