//! The generator: a small invoicing business, one simulated UTC day at a time.

use std::collections::BTreeMap;

use tidemark_core::change::{Op, Value};

use crate::util::{cents, mix, Rng, DAY_US};
use crate::{CUSTOMERS, INVOICES, INVOICE_LINES, PAYMENTS, PRODUCTS};

// Rates per simulated day at scale 1.0 (counts are multiplied by the scale,
// probabilities per invoice are not).
const INITIAL_CUSTOMERS: f64 = 200.0;
const INITIAL_PRODUCTS: f64 = 50.0;
const NEW_CUSTOMERS: f64 = 3.0;
const NEW_PRODUCTS: f64 = 0.2;
const NEW_INVOICES: f64 = 30.0;
const LINE_CORRECTIONS: f64 = 3.0;
const DRAFT_DELETES: f64 = 1.0;
const PRICE_CHANGES: f64 = 0.5;
const EMAIL_CHANGES: f64 = 1.0;
const PRODUCT_TOGGLES: f64 = 0.1;
/// A draft from an earlier day is issued today with this probability.
const P_OPEN: f64 = 0.6;
/// An open invoice is paid today with this probability.
const P_PAY: f64 = 0.08;
/// An open invoice is voided today with this probability.
const P_VOID: f64 = 0.005;
/// Open invoices this many days past due are written off (voided), which also bounds
/// the generator's memory.
const WRITE_OFF_DAYS: i64 = 60;
/// Rows per transaction of the day-0 bulk load.
const LOAD_CHUNK: usize = 100;
/// Nothing is scheduled in the last minute of a day, so a transaction's events (one
/// microsecond apart) never spill into the next day.
const DAY_MARGIN_US: i64 = 60_000_000;

const FIRST: [&str; 24] = [
    "Ada", "Ben", "Chloe", "Daniel", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Kira",
    "Liam", "Mia", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wim",
    "Yara",
];
const LAST: [&str; 24] = [
    "Andersen", "Bauer", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ito",
    "Jansen", "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Petrov", "Rossi", "Schmidt",
    "Tanaka", "Ueda", "Varga", "Weber", "Young", "Zimmer",
];
/// Country, currency, payment terms in days.
const COUNTRIES: [(&str, &str, i64); 10] = [
    ("DE", "EUR", 30),
    ("FR", "EUR", 30),
    ("NL", "EUR", 14),
    ("ES", "EUR", 30),
    ("IT", "EUR", 60),
    ("GB", "GBP", 30),
    ("US", "USD", 30),
    ("CA", "CAD", 30),
    ("SE", "SEK", 14),
    ("CH", "CHF", 30),
];
const DOMAINS: [&str; 6] = [
    "example.com",
    "example.org",
    "example.net",
    "mail.example",
    "post.example",
    "corp.example",
];
const ADJECTIVES: [&str; 12] = [
    "Compact",
    "Deluxe",
    "Durable",
    "Ergonomic",
    "Heavy",
    "Light",
    "Modular",
    "Portable",
    "Premium",
    "Quiet",
    "Rugged",
    "Smart",
];
const MATERIALS: [&str; 8] = [
    "Aluminium",
    "Bamboo",
    "Carbon",
    "Ceramic",
    "Copper",
    "Oak",
    "Steel",
    "Wool",
];
const NOUNS: [&str; 12] = [
    "Bracket", "Cable", "Chair", "Desk", "Drill", "Hub", "Kettle", "Lamp", "Router", "Shelf",
    "Valve", "Widget",
];
const QUANTITIES: [i64; 18] = [1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6, 8, 10, 12, 20, 25, 50];
const LINE_COUNTS: [usize; 9] = [1, 1, 2, 2, 2, 3, 3, 4, 5];
const METHODS: [&str; 6] = ["card", "card", "card", "transfer", "transfer", "cash"];

/// What the workload simulates and where in time it lands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkloadConfig {
    /// Multiplies every count (initial rows, new rows and changes per day). 1.0 is
    /// about 200 customers, 50 products and 30 invoices a day. Negative or non-finite
    /// values act as 0: one customer, one product and nothing else.
    pub scale: f64,
    /// Simulated days; [`Workload::next_day`] yields this many.
    pub days: u32,
    /// End of the last simulated day, microseconds since the epoch (UTC), rounded down
    /// to midnight UTC: every event is strictly before it.
    pub end_us: i64,
    /// Seed of the generator: the same configuration always yields the same events.
    pub seed: u64,
}

impl Default for WorkloadConfig {
    /// Scale 1.0, 90 days ending at the last midnight UTC, seed 42.
    fn default() -> Self {
        let now = chrono::Utc::now().timestamp_micros();
        Self {
            scale: 1.0,
            days: 90,
            end_us: now.div_euclid(DAY_US) * DAY_US,
            seed: 42,
        }
    }
}

/// One row change at the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Index into [`crate::TABLES`] (and into [`crate::schemas`]).
    pub table: usize,
    /// [`Op::Create`], [`Op::Update`] or [`Op::Delete`].
    pub op: Op,
    /// The full row in column order; for a delete, the row's last image.
    pub row: Vec<Value>,
    /// Commit instant, microseconds since the epoch (UTC). Strictly increasing within
    /// a day (and across days); `updated_at` of an inserted or updated row equals it.
    pub ts_us: i64,
    /// Source transaction: the events of one transaction are consecutive and share it
    /// (an invoice with its lines, a payment with its invoice's status change, ...).
    pub txn: u64,
}

#[derive(Debug)]
struct Customer {
    created_at: i64,
    updated_at: i64,
    email_rev: u32,
}

#[derive(Debug)]
struct Product {
    price: i64,
    active: bool,
}

#[derive(Debug)]
struct Line {
    id: i64,
    product_id: i64,
    quantity: i64,
    unit_price: i64,
    updated_at: i64,
}

impl Line {
    fn amount(&self) -> i64 {
        self.quantity * self.unit_price
    }
}

#[derive(Debug)]
struct Invoice {
    customer_id: i64,
    currency: &'static str,
    issued_at: Option<i64>,
    due_date: Option<i64>,
    lines: Vec<Line>,
    updated_at: i64,
}

impl Invoice {
    fn total(&self) -> i64 {
        self.lines.iter().map(Line::amount).sum()
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    NewCustomer,
    NewProduct,
    NewInvoice,
    Open(i64),
    Pay(i64),
    Void(i64),
    CorrectLine,
    DeleteDraft,
    PriceChange,
    EmailChange,
    ToggleProduct,
}

/// Events of one transaction being written; every event is one microsecond after the
/// previous one.
struct Tx<'a> {
    out: &'a mut Vec<Event>,
    txn: u64,
    ts: i64,
}

impl Tx<'_> {
    /// Instant of the next event.
    fn now(&self) -> i64 {
        self.ts
    }

    fn emit(&mut self, table: usize, op: Op, row: Vec<Value>) {
        self.out.push(Event {
            table,
            op,
            row,
            ts_us: self.ts,
            txn: self.txn,
        });
        self.ts += 1;
    }
}

/// The deterministic invoicing workload. Holds only what later days need: customers
/// and products (a few numbers each; names derive from the id), draft and open
/// invoices with their lines, and the next ids.
#[derive(Debug)]
pub struct Workload {
    cfg: WorkloadConfig,
    scale: f64,
    rng: Rng,
    day: u32,
    /// Midnight UTC at the end of the last day.
    end: i64,
    customers: Vec<Customer>,
    products: Vec<Product>,
    drafts: BTreeMap<i64, Invoice>,
    open: BTreeMap<i64, Invoice>,
    next_invoice: i64,
    next_line: i64,
    next_payment: i64,
    next_txn: u64,
}

impl Workload {
    /// A workload at day 0.
    pub fn new(cfg: WorkloadConfig) -> Self {
        let scale = if cfg.scale.is_finite() {
            cfg.scale.max(0.0)
        } else {
            0.0
        };
        Self {
            cfg,
            scale,
            rng: Rng::new(cfg.seed),
            day: 0,
            end: cfg.end_us.div_euclid(DAY_US) * DAY_US,
            customers: Vec::new(),
            products: Vec::new(),
            drafts: BTreeMap::new(),
            open: BTreeMap::new(),
            next_invoice: 1,
            next_line: 1,
            next_payment: 1,
            next_txn: 1,
        }
    }

    /// The configuration this workload was built with.
    pub fn config(&self) -> &WorkloadConfig {
        &self.cfg
    }

    /// The events of the next simulated day in commit order, or `None` once `days`
    /// days have been produced. Day 0 starts with the bulk load of the initial
    /// customers and products.
    pub fn next_day(&mut self) -> Option<Vec<Event>> {
        if self.day >= self.cfg.days {
            return None;
        }
        let day_start = self.end - i64::from(self.cfg.days - self.day) * DAY_US;
        let mut out = Vec::new();
        let mut clock = day_start;
        if self.day == 0 {
            clock = self.initial_load(day_start, &mut out);
        }
        let mut actions = self.plan(day_start.div_euclid(DAY_US));
        self.rng.shuffle(&mut actions);

        let lo = clock - day_start;
        let hi = (DAY_US - DAY_MARGIN_US).max(lo);
        let mut offsets: Vec<i64> = actions.iter().map(|_| self.rng.range(lo, hi)).collect();
        offsets.sort_unstable();
        for (action, off) in actions.into_iter().zip(offsets) {
            let mut tx = Tx {
                out: &mut out,
                txn: self.next_txn,
                ts: (day_start + off).max(clock),
            };
            let before = tx.out.len();
            self.execute(action, &mut tx);
            if tx.out.len() > before {
                clock = tx.ts;
                self.next_txn += 1;
            }
        }
        debug_assert!(clock <= day_start + DAY_US, "scale too large for one day");
        self.day += 1;
        Some(out)
    }

    fn initial_load(&mut self, day_start: i64, out: &mut Vec<Event>) -> i64 {
        let n_customers = (INITIAL_CUSTOMERS * self.scale).round().max(1.0) as usize;
        let n_products = (INITIAL_PRODUCTS * self.scale).round().max(1.0) as usize;
        let chunks = n_customers.div_ceil(LOAD_CHUNK) + n_products.div_ceil(LOAD_CHUNK);
        let spacing = (1_000_000).min(DAY_US / 8 / chunks as i64);
        let mut clock = day_start;
        let mut chunk = 0i64;
        for (table, n) in [(CUSTOMERS, n_customers), (PRODUCTS, n_products)] {
            let mut left = n;
            while left > 0 {
                let rows = left.min(LOAD_CHUNK);
                left -= rows;
                let mut tx = Tx {
                    out,
                    txn: self.next_txn,
                    ts: (day_start + chunk * spacing).max(clock),
                };
                for _ in 0..rows {
                    if table == CUSTOMERS {
                        self.new_customer(&mut tx);
                    } else {
                        self.new_product(&mut tx);
                    }
                }
                clock = tx.ts;
                self.next_txn += 1;
                chunk += 1;
            }
        }
        clock
    }

    /// Today's transactions, unordered: state changes of invoices that existed at the
    /// start of the day, then counts of everything else.
    fn plan(&mut self, today: i64) -> Vec<Action> {
        let mut actions = Vec::new();
        for &id in self.drafts.keys() {
            if self.rng.chance(P_OPEN) {
                actions.push(Action::Open(id));
            }
        }
        for (&id, inv) in &self.open {
            let overdue = inv.due_date.is_some_and(|d| today - d > WRITE_OFF_DAYS);
            if overdue {
                actions.push(Action::Void(id));
            } else if self.rng.chance(P_PAY) {
                actions.push(Action::Pay(id));
            } else if self.rng.chance(P_VOID) {
                actions.push(Action::Void(id));
            }
        }
        for (mean, action) in [
            (NEW_CUSTOMERS, Action::NewCustomer),
            (NEW_PRODUCTS, Action::NewProduct),
            (NEW_INVOICES, Action::NewInvoice),
            (LINE_CORRECTIONS, Action::CorrectLine),
            (DRAFT_DELETES, Action::DeleteDraft),
            (PRICE_CHANGES, Action::PriceChange),
            (EMAIL_CHANGES, Action::EmailChange),
            (PRODUCT_TOGGLES, Action::ToggleProduct),
        ] {
            let n = self.rng.count(mean * self.scale);
            actions.extend((0..n).map(|_| action));
        }
        actions
    }

    fn execute(&mut self, action: Action, tx: &mut Tx<'_>) {
        match action {
            Action::NewCustomer => self.new_customer(tx),
            Action::NewProduct => self.new_product(tx),
            Action::NewInvoice => self.new_invoice(tx),
            Action::Open(id) => self.open_invoice(id, tx),
            Action::Pay(id) => self.pay(id, tx),
            Action::Void(id) => self.void(id, tx),
            Action::CorrectLine => self.correct_line(tx),
            Action::DeleteDraft => self.delete_draft(tx),
            Action::PriceChange => self.price_change(tx),
            Action::EmailChange => self.email_change(tx),
            Action::ToggleProduct => self.toggle_product(tx),
        }
    }

    // ---- rows ------------------------------------------------------------------

    fn identity(&self, salt: u64, id: i64) -> u64 {
        mix(self.cfg.seed ^ mix(salt ^ (id as u64)))
    }

    fn customer_row(&self, id: i64) -> Vec<Value> {
        let c = &self.customers[(id - 1) as usize];
        let h = self.identity(0xc0ffee, id);
        let first = FIRST[(h % 24) as usize];
        let last = LAST[(h >> 8) as usize % 24];
        let country = COUNTRIES[(h >> 16) as usize % COUNTRIES.len()].0;
        let domain = DOMAINS[((h >> 24) as usize + c.email_rev as usize) % DOMAINS.len()];
        let local = format!("{}.{}{id}", first.to_lowercase(), last.to_lowercase());
        let email = if c.email_rev == 0 {
            format!("{local}@{domain}")
        } else {
            format!("{local}.{}@{domain}", c.email_rev)
        };
        vec![
            Value::Int(id),
            Value::Text(format!("{first} {last}")),
            Value::Text(email),
            Value::Text(country.to_string()),
            Value::Timestamp(c.created_at),
            Value::Timestamp(c.updated_at),
        ]
    }

    fn customer_terms(&self, id: i64) -> (&'static str, i64) {
        let h = self.identity(0xc0ffee, id);
        let (_, currency, terms) = COUNTRIES[(h >> 16) as usize % COUNTRIES.len()];
        (currency, terms)
    }

    fn product_row(&self, id: i64, updated_at: i64) -> Vec<Value> {
        let p = &self.products[(id - 1) as usize];
        let h = self.identity(0x5eed, id);
        let name = format!(
            "{} {} {}",
            ADJECTIVES[(h % 12) as usize],
            MATERIALS[(h >> 8) as usize % MATERIALS.len()],
            NOUNS[(h >> 16) as usize % NOUNS.len()]
        );
        vec![
            Value::Int(id),
            Value::Text(format!("SKU-{id:06}")),
            Value::Text(name),
            Value::Decimal(cents(p.price)),
            Value::Int(i64::from(p.active)),
            Value::Timestamp(updated_at),
        ]
    }

    fn invoice_row(id: i64, inv: &Invoice, status: &str) -> Vec<Value> {
        vec![
            Value::Int(id),
            Value::Int(inv.customer_id),
            Value::Text(status.to_string()),
            Value::Text(inv.currency.to_string()),
            inv.issued_at.map_or(Value::Null, Value::Timestamp),
            inv.due_date.map_or(Value::Null, |d| Value::Date(d as i32)),
            Value::Decimal(cents(inv.total())),
            Value::Timestamp(inv.updated_at),
        ]
    }

    fn line_row(invoice_id: i64, l: &Line) -> Vec<Value> {
        vec![
            Value::Int(l.id),
            Value::Int(invoice_id),
            Value::Int(l.product_id),
            Value::Int(l.quantity),
            Value::Decimal(cents(l.unit_price)),
            Value::Decimal(cents(l.amount())),
            Value::Timestamp(l.updated_at),
        ]
    }

    // ---- actions ---------------------------------------------------------------

    fn new_customer(&mut self, tx: &mut Tx<'_>) {
        let ts = tx.now();
        self.customers.push(Customer {
            created_at: ts,
            updated_at: ts,
            email_rev: 0,
        });
        let row = self.customer_row(self.customers.len() as i64);
        tx.emit(CUSTOMERS, Op::Create, row);
    }

    fn new_product(&mut self, tx: &mut Tx<'_>) {
        // Mostly everyday items, some expensive ones: 1.99 .. 499.99.
        let price = match self.rng.below(10) {
            0..=5 => self.rng.range(199, 4_999),
            6..=8 => self.rng.range(5_000, 19_999),
            _ => self.rng.range(20_000, 49_999),
        };
        self.products.push(Product {
            price,
            active: true,
        });
        let row = self.product_row(self.products.len() as i64, tx.now());
        tx.emit(PRODUCTS, Op::Create, row);
    }

    fn new_invoice(&mut self, tx: &mut Tx<'_>) {
        if self.customers.is_empty() || !self.products.iter().any(|p| p.active) {
            return;
        }
        let customer_id = self.rng.range(1, self.customers.len() as i64);
        let want = *self.rng.pick(&LINE_COUNTS);
        let mut product_ids: Vec<i64> = Vec::with_capacity(want);
        for _ in 0..want * 4 {
            if product_ids.len() == want {
                break;
            }
            let pid = self.rng.range(1, self.products.len() as i64);
            if self.products[(pid - 1) as usize].active && !product_ids.contains(&pid) {
                product_ids.push(pid);
            }
        }
        if product_ids.is_empty() {
            return;
        }
        let (currency, _) = self.customer_terms(customer_id);
        let id = self.next_invoice;
        self.next_invoice += 1;
        let ts = tx.now();
        let mut inv = Invoice {
            customer_id,
            currency,
            issued_at: None,
            due_date: None,
            lines: Vec::with_capacity(product_ids.len()),
            updated_at: ts,
        };
        for (k, pid) in product_ids.into_iter().enumerate() {
            inv.lines.push(Line {
                id: self.next_line,
                product_id: pid,
                quantity: *self.rng.pick(&QUANTITIES),
                unit_price: self.products[(pid - 1) as usize].price,
                // The invoice is written first, then the lines, one µs apart.
                updated_at: ts + 1 + k as i64,
            });
            self.next_line += 1;
        }
        tx.emit(INVOICES, Op::Create, Self::invoice_row(id, &inv, "draft"));
        for l in &inv.lines {
            tx.emit(INVOICE_LINES, Op::Create, Self::line_row(id, l));
        }
        self.drafts.insert(id, inv);
    }

    fn open_invoice(&mut self, id: i64, tx: &mut Tx<'_>) {
        let Some(mut inv) = self.drafts.remove(&id) else {
            return; // deleted earlier today
        };
        let ts = tx.now();
        let (_, terms) = self.customer_terms(inv.customer_id);
        inv.issued_at = Some(ts);
        inv.due_date = Some(ts.div_euclid(DAY_US) + terms);
        inv.updated_at = ts;
        tx.emit(INVOICES, Op::Update, Self::invoice_row(id, &inv, "open"));
        self.open.insert(id, inv);
    }

    fn pay(&mut self, id: i64, tx: &mut Tx<'_>) {
        let Some(mut inv) = self.open.remove(&id) else {
            return;
        };
        inv.updated_at = tx.now();
        tx.emit(INVOICES, Op::Update, Self::invoice_row(id, &inv, "paid"));
        let pid = self.next_payment;
        self.next_payment += 1;
        let ts = tx.now();
        let method = *self.rng.pick(&METHODS);
        tx.emit(
            PAYMENTS,
            Op::Create,
            vec![
                Value::Int(pid),
                Value::Int(id),
                Value::Decimal(cents(inv.total())),
                Value::Text(method.to_string()),
                Value::Timestamp(ts),
                Value::Timestamp(ts),
            ],
        );
    }

    fn void(&mut self, id: i64, tx: &mut Tx<'_>) {
        let Some(mut inv) = self.open.remove(&id) else {
            return;
        };
        inv.updated_at = tx.now();
        tx.emit(INVOICES, Op::Update, Self::invoice_row(id, &inv, "void"));
    }

    fn correct_line(&mut self, tx: &mut Tx<'_>) {
        let use_drafts = !self.drafts.is_empty() && (self.open.is_empty() || self.rng.chance(0.5));
        let (map, status) = if use_drafts {
            (&mut self.drafts, "draft")
        } else {
            (&mut self.open, "open")
        };
        let Some(id) = pick_key(&mut self.rng, map) else {
            return;
        };
        let inv = map.get_mut(&id).expect("picked from the map");
        let k = self.rng.index(inv.lines.len());
        let line = &mut inv.lines[k];
        let discounted = if self.rng.chance(0.4) {
            let pct = self.rng.range(5, 25);
            let p = (line.unit_price * (100 - pct) + 50) / 100;
            (p >= 1 && p != line.unit_price).then_some(p)
        } else {
            None
        };
        match discounted {
            Some(p) => line.unit_price = p,
            None => {
                let q = *self.rng.pick(&QUANTITIES);
                line.quantity = if q == line.quantity { q + 1 } else { q };
            }
        }
        line.updated_at = tx.now();
        tx.emit(INVOICE_LINES, Op::Update, Self::line_row(id, line));
        inv.updated_at = tx.now();
        tx.emit(INVOICES, Op::Update, Self::invoice_row(id, inv, status));
    }

    fn delete_draft(&mut self, tx: &mut Tx<'_>) {
        let Some(id) = pick_key(&mut self.rng, &self.drafts) else {
            return;
        };
        let inv = self.drafts.remove(&id).expect("picked from the map");
        for l in &inv.lines {
            tx.emit(INVOICE_LINES, Op::Delete, Self::line_row(id, l));
        }
        tx.emit(INVOICES, Op::Delete, Self::invoice_row(id, &inv, "draft"));
    }

    fn price_change(&mut self, tx: &mut Tx<'_>) {
        if self.products.is_empty() {
            return;
        }
        let k = self.rng.index(self.products.len());
        let mut pct = self.rng.range(-10, 15);
        if pct == 0 {
            pct = 5;
        }
        let p = &mut self.products[k];
        let mut new = ((p.price * (100 + pct) + 50) / 100).max(99);
        if new == p.price {
            new += 1;
        }
        p.price = new;
        let row = self.product_row(k as i64 + 1, tx.now());
        tx.emit(PRODUCTS, Op::Update, row);
    }

    fn email_change(&mut self, tx: &mut Tx<'_>) {
        if self.customers.is_empty() {
            return;
        }
        let k = self.rng.index(self.customers.len());
        let c = &mut self.customers[k];
        c.email_rev += 1;
        c.updated_at = tx.now();
        let row = self.customer_row(k as i64 + 1);
        tx.emit(CUSTOMERS, Op::Update, row);
    }

    fn toggle_product(&mut self, tx: &mut Tx<'_>) {
        if self.products.is_empty() {
            return;
        }
        let k = self.rng.index(self.products.len());
        let active = self.products.iter().filter(|p| p.active).count();
        let total = self.products.len();
        let p = &mut self.products[k];
        // Retire a product only while more than half are still sold.
        if p.active && active * 2 <= total {
            return;
        }
        p.active = !p.active;
        let row = self.product_row(k as i64 + 1, tx.now());
        tx.emit(PRODUCTS, Op::Update, row);
    }
}

impl Iterator for Workload {
    type Item = Vec<Event>;

    /// Same as [`Workload::next_day`].
    fn next(&mut self) -> Option<Vec<Event>> {
        self.next_day()
    }
}

/// A random key of a non-empty map in O(log n): the first key at or after a uniform
/// point between the smallest and largest key.
fn pick_key<V>(rng: &mut Rng, map: &BTreeMap<i64, V>) -> Option<i64> {
    let lo = *map.keys().next()?;
    let hi = *map.keys().next_back()?;
    let at = rng.range(lo, hi);
    map.range(at..).next().map(|(k, _)| *k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_stays_bounded() {
        let mut w = Workload::new(WorkloadConfig {
            scale: 1.0,
            days: 720,
            end_us: 1_717_200_000_000_000,
            seed: 3,
        });
        let mut peak = 0;
        while w.next_day().is_some() {
            peak = peak.max(w.drafts.len() + w.open.len());
        }
        // ~30 new invoices a day, paid after ~12 days on average, written off at the
        // latest 60 days past due.
        assert!(peak < 1_000, "{peak} invoices held");
        assert!(w.open.values().all(|i| i.issued_at.is_some()));
        assert!(w.drafts.values().all(|i| i.issued_at.is_none()));
    }
}
