//! The demo's change stream: what TiDB would hand TiCDC for the `app` database (`sql/schema.sql`,
//! seeded by `sql/seed.sql`), independent of any protocol.
//!
//! The generator keeps the live rows of `app.users` and `app.orders` in memory, so an update
//! carries the row's real previous values, a delete removes a row that exists, and
//! `orders.user_id` always names a live user (a user with orders is never deleted, as the
//! foreign key demands). Changes are grouped into small transactions that share one commit TSO;
//! TSOs are TiDB's `(physical_ms << 18) | logical` of the caller's clock and strictly increase.
//! Every `ddl_every_rows` row changes one DDL is issued (an index added to / dropped from
//! `orders`, a comment on `users`: statements that keep the column set, so later rows still
//! match the schema). Watermarks are the caller's to request ([`Generator::watermark`]).
//!
//! Deterministic for a seed and a clock: the benchmark relies on it.

use std::collections::HashMap;

use crate::event::RowOp;

/// TiDB's TSO: physical milliseconds in the high bits, an 18-bit logical counter below
/// (`tikv/client-go` `oracle.ComposeTS`).
pub const fn tso(physical_ms: u64, logical: u64) -> u64 {
    (physical_ms << 18) | (logical & 0x3ffff)
}

/// xorshift64*: deterministic and dependency-free; quality is irrelevant here.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-enough in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The two tables of `sql/schema.sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Users,
    Orders,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::Users, Table::Orders];
    pub const DB: &'static str = "app";

    pub const fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Orders => "orders",
        }
    }

    /// A stable table id, as TiDB assigns one (simple protocol `tableID`).
    pub const fn table_id(self) -> i64 {
        match self {
            Table::Users => 110,
            Table::Orders => 112,
        }
    }

    pub fn columns(self) -> &'static [ColumnDef] {
        match self {
            Table::Users => &USERS,
            Table::Orders => &ORDERS,
        }
    }
}

/// SQL type of a column of the demo schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    BigInt,
    /// VARCHAR(len), utf8mb4.
    Varchar(u32),
    /// DECIMAL(12,2).
    Decimal,
    Timestamp,
}

/// One column of `sql/schema.sql`. Every column there is NOT NULL.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDef {
    pub name: &'static str,
    pub ty: SqlType,
    pub primary: bool,
    /// Part of a unique key other than the primary key.
    pub unique: bool,
    /// Part of a non-unique index.
    pub indexed: bool,
}

const fn col(name: &'static str, ty: SqlType) -> ColumnDef {
    ColumnDef {
        name,
        ty,
        primary: false,
        unique: false,
        indexed: false,
    }
}

static USERS: [ColumnDef; 4] = [
    ColumnDef {
        primary: true,
        ..col("id", SqlType::BigInt)
    },
    ColumnDef {
        unique: true,
        ..col("email", SqlType::Varchar(255))
    },
    col("name", SqlType::Varchar(255)),
    col("created_at", SqlType::Timestamp),
];

static ORDERS: [ColumnDef; 5] = [
    ColumnDef {
        primary: true,
        ..col("id", SqlType::BigInt)
    },
    ColumnDef {
        indexed: true,
        ..col("user_id", SqlType::BigInt)
    },
    col("amount", SqlType::Decimal),
    col("status", SqlType::Varchar(32)),
    col("created_at", SqlType::Timestamp),
];

/// A column value. Decimal is kept in cents so it prints exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Text(String),
    Cents(i64),
    /// `YYYY-MM-DD HH:MM:SS`, UTC (the stack's TiDB time zone).
    Timestamp(String),
}

impl Value {
    /// The value as MySQL prints it (what canal-json and simple carry, all as strings).
    pub fn to_sql_string(&self) -> String {
        match self {
            Value::Int(v) => v.to_string(),
            Value::Text(s) | Value::Timestamp(s) => s.clone(),
            Value::Cents(c) => format!("{}.{:02}", c / 100, c % 100),
        }
    }
}

/// One row: values in `Table::columns` order.
pub type Row = Vec<Value>;

/// A row change.
#[derive(Debug, Clone)]
pub struct RowChange {
    pub table: Table,
    pub op: RowOp,
    pub commit_ts: u64,
    /// The row after the change (insert, update); the deleted row for delete.
    pub row: Row,
    /// The row before an update.
    pub old: Option<Row>,
}

impl RowChange {
    /// The primary key value (`id`, first column of both tables).
    pub fn id(&self) -> i64 {
        match self.row.first() {
            Some(Value::Int(id)) => *id,
            _ => 0,
        }
    }
}

/// The canal DDL types the demo's statements map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DdlKind {
    /// CREATE INDEX: canal `CINDEX`, TiDB action 7 (`ActionAddIndex`).
    AddIndex,
    /// DROP INDEX: canal `DINDEX`, TiDB action 8 (`ActionDropIndex`).
    DropIndex,
    /// ALTER TABLE ... COMMENT: canal `ALTER`, TiDB action 17 (`ActionModifyTableComment`).
    TableComment,
}

impl DdlKind {
    /// The canal event type (the `type` label of `cdc_ddl_events_total`).
    pub const fn canal_type(self) -> &'static str {
        match self {
            DdlKind::AddIndex => "CINDEX",
            DdlKind::DropIndex => "DINDEX",
            DdlKind::TableComment => "ALTER",
        }
    }
    /// TiDB `ActionType` (open-protocol DDL value `t`).
    pub const fn tidb_action(self) -> u64 {
        match self {
            DdlKind::AddIndex => 7,
            DdlKind::DropIndex => 8,
            DdlKind::TableComment => 17,
        }
    }
}

/// A DDL statement and the table schema around it.
#[derive(Debug, Clone)]
pub struct DdlChange {
    pub table: Table,
    pub kind: DdlKind,
    pub query: String,
    pub commit_ts: u64,
    /// Schema after / before the DDL (simple protocol `tableSchema` / `preTableSchema`).
    pub schema: TableSchema,
    pub pre_schema: TableSchema,
}

/// What a table looks like at a schema version: its secondary indexes vary with the DDL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub table: Table,
    /// TSO of the DDL that produced this version (TiDB's schema version is a TSO too).
    pub version: u64,
    /// Indexes besides the primary key: (name, unique, columns).
    pub indexes: Vec<(&'static str, bool, Vec<&'static str>)>,
}

/// Something TiCDC would write to Kafka.
#[derive(Debug, Clone)]
pub enum Change {
    Row(RowChange),
    Ddl(DdlChange),
    /// Every event with a commit TSO up to this one has been emitted.
    Watermark(u64),
}

/// Tuning of the stream. The defaults are the demo's.
#[derive(Debug, Clone)]
pub struct Mix {
    /// One DDL after this many row changes (the first one after a fifth of it).
    pub ddl_every_rows: u64,
    /// Largest number of rows per transaction (1..=this, uniform).
    pub max_txn_rows: u64,
    /// Above this many live rows a table's inserts become deletes, bounding memory.
    pub max_live_rows: usize,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            ddl_every_rows: 1000,
            max_txn_rows: 3,
            max_live_rows: 10_000,
        }
    }
}

/// The live rows of one table, addressable by position (uniform picks) and by id.
#[derive(Debug, Default)]
struct Rows {
    rows: Vec<Row>,
    index: HashMap<i64, usize>,
    next_id: i64,
}

impl Rows {
    fn insert(&mut self, row: Row) {
        if let Some(Value::Int(id)) = row.first() {
            self.index.insert(*id, self.rows.len());
            self.next_id = self.next_id.max(id + 1);
        }
        self.rows.push(row);
    }
    fn remove_at(&mut self, i: usize) -> Row {
        let row = self.rows.swap_remove(i);
        if let Some(Value::Int(id)) = row.first() {
            self.index.remove(id);
        }
        if let Some(Some(Value::Int(moved))) = self.rows.get(i).map(|r| r.first()) {
            self.index.insert(*moved, i);
        }
        row
    }
}

/// The stream generator. See the module docs.
#[derive(Debug)]
pub struct Generator {
    rng: Rng,
    mix: Mix,
    users: Rows,
    orders: Rows,
    /// Live orders per user id (a user with orders is not deleted: the foreign key).
    orders_of_user: HashMap<i64, u32>,
    last_tso: u64,
    rows_emitted: u64,
    next_ddl_at: u64,
    ddl_seq: u64,
    status_index: bool,
    schemas: [TableSchema; 2],
}

const STATUSES: [&str; 5] = ["new", "paid", "shipped", "delivered", "cancelled"];
const FIRST_NAMES: [&str; 8] = [
    "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi",
];

impl Generator {
    /// A generator whose tables hold the rows of `sql/seed.sql` at `start_ms`.
    pub fn new(seed: u64, mix: Mix, start_ms: u64) -> Self {
        let created = sql_timestamp(start_ms);
        let mut g = Generator {
            rng: Rng::new(seed),
            next_ddl_at: (mix.ddl_every_rows / 5).max(1),
            mix,
            users: Rows::default(),
            orders: Rows::default(),
            orders_of_user: HashMap::new(),
            last_tso: tso(start_ms, 0),
            rows_emitted: 0,
            ddl_seq: 0,
            status_index: false,
            schemas: [
                initial_schema(Table::Users, tso(start_ms, 0)),
                initial_schema(Table::Orders, tso(start_ms, 0)),
            ],
        };
        for (id, email, name) in [
            (1, "alice@example.com", "Alice"),
            (2, "bob@example.com", "Bob"),
            (3, "carol@example.com", "Carol"),
        ] {
            g.users.insert(vec![
                Value::Int(id),
                Value::Text(email.into()),
                Value::Text(name.into()),
                Value::Timestamp(created.clone()),
            ]);
        }
        for (id, user, cents, status) in [
            (1, 1, 1999, "paid"),
            (2, 1, 500, "new"),
            (3, 2, 4250, "shipped"),
            (4, 3, 725, "new"),
        ] {
            g.orders.insert(vec![
                Value::Int(id),
                Value::Int(user),
                Value::Cents(cents),
                Value::Text(status.into()),
                Value::Timestamp(created.clone()),
            ]);
            *g.orders_of_user.entry(user).or_default() += 1;
        }
        g
    }

    /// The current schema of `table`.
    pub fn schema(&self, table: Table) -> &TableSchema {
        &self.schemas[table as usize]
    }

    /// A fresh commit TSO at `now_ms`, above every earlier one.
    fn commit_ts(&mut self, now_ms: u64) -> u64 {
        self.last_tso = tso(now_ms, 0).max(self.last_tso + 1);
        self.last_tso
    }

    /// A watermark at `now_ms`: never below an emitted commit TSO.
    pub fn watermark(&mut self, now_ms: u64) -> Change {
        Change::Watermark(tso(now_ms, 0).max(self.last_tso))
    }

    /// The next transaction's changes (1..=`max_txn_rows` rows sharing a commit TSO), or a DDL
    /// when one is due.
    pub fn next_transaction(&mut self, now_ms: u64) -> Vec<Change> {
        if self.rows_emitted >= self.next_ddl_at {
            self.next_ddl_at += self.mix.ddl_every_rows.max(1);
            let ts = self.commit_ts(now_ms);
            return vec![Change::Ddl(self.ddl(ts))];
        }
        let ts = self.commit_ts(now_ms);
        let n = 1 + self.rng.below(self.mix.max_txn_rows.max(1));
        let created = sql_timestamp(now_ms);
        (0..n)
            .map(|_| {
                self.rows_emitted += 1;
                Change::Row(self.row_change(ts, &created))
            })
            .collect()
    }

    fn row_change(&mut self, commit_ts: u64, created: &str) -> RowChange {
        // Two orders for every user change: an order-heavy shop.
        let table = if self.rng.below(3) == 0 {
            Table::Users
        } else {
            Table::Orders
        };
        let roll = self.rng.below(100);
        let (live, cap) = (self.rows(table).rows.len(), self.mix.max_live_rows);
        let op = match (table, roll) {
            _ if live < 3 => RowOp::Insert,
            (Table::Users, 0..=39) | (Table::Orders, 0..=49) if live < cap => RowOp::Insert,
            (Table::Users, 0..=39) | (Table::Orders, 0..=49) => RowOp::Delete,
            (Table::Users, 40..=89) | (Table::Orders, 50..=84) => RowOp::Update,
            _ => RowOp::Delete,
        };
        match op {
            RowOp::Insert => self.insert(table, commit_ts, created),
            RowOp::Update => self.update(table, commit_ts),
            RowOp::Delete => self.delete(table, commit_ts),
        }
    }

    fn rows(&mut self, table: Table) -> &mut Rows {
        match table {
            Table::Users => &mut self.users,
            Table::Orders => &mut self.orders,
        }
    }

    fn random_user(&mut self) -> i64 {
        let i = self.rng.below(self.users.rows.len() as u64) as usize;
        match self.users.rows.get(i).and_then(|r| r.first()) {
            Some(Value::Int(id)) => *id,
            _ => 1,
        }
    }

    fn insert(&mut self, table: Table, commit_ts: u64, created: &str) -> RowChange {
        let id = self.rows(table).next_id.max(1000);
        let row = match table {
            Table::Users => {
                let first = FIRST_NAMES[self.rng.below(FIRST_NAMES.len() as u64) as usize];
                vec![
                    Value::Int(id),
                    Value::Text(format!("{}.{id}@example.com", first.to_lowercase())),
                    Value::Text(format!("{first} {id}")),
                    Value::Timestamp(created.to_owned()),
                ]
            }
            Table::Orders => {
                let user = self.random_user();
                *self.orders_of_user.entry(user).or_default() += 1;
                vec![
                    Value::Int(id),
                    Value::Int(user),
                    Value::Cents(100 + self.rng.below(50_000) as i64),
                    Value::Text("new".into()),
                    Value::Timestamp(created.to_owned()),
                ]
            }
        };
        self.rows(table).insert(row.clone());
        RowChange {
            table,
            op: RowOp::Insert,
            commit_ts,
            row,
            old: None,
        }
    }

    fn update(&mut self, table: Table, commit_ts: u64) -> RowChange {
        let live = self.rows(table).rows.len() as u64;
        let i = self.rng.below(live) as usize;
        let pick = self.rng.below(STATUSES.len() as u64) as usize;
        let suffix = self.rng.below(1000);
        let rows = self.rows(table);
        let old = rows.rows[i].clone();
        let mut row = old.clone();
        match table {
            // A user renames themselves.
            Table::Users => {
                if let Some(Value::Text(name)) = row.get_mut(2) {
                    let first = name.split(' ').next().unwrap_or("User").to_owned();
                    *name = format!("{first} {suffix}");
                }
            }
            // An order moves on.
            Table::Orders => row[3] = Value::Text(STATUSES[pick].into()),
        }
        rows.rows[i] = row.clone();
        RowChange {
            table,
            op: RowOp::Update,
            commit_ts,
            row,
            old: Some(old),
        }
    }

    fn delete(&mut self, table: Table, commit_ts: u64) -> RowChange {
        let live = self.rows(table).rows.len() as u64;
        let i = self.rng.below(live) as usize;
        if table == Table::Users {
            let id = match self.users.rows[i].first() {
                Some(Value::Int(id)) => *id,
                _ => 0,
            };
            // The foreign key forbids deleting a user with orders: the app updates instead.
            if self.orders_of_user.get(&id).copied().unwrap_or(0) > 0 {
                return self.update(table, commit_ts);
            }
        }
        let row = self.rows(table).remove_at(i);
        if table == Table::Orders
            && let Some(Value::Int(user)) = row.get(1)
            && let Some(n) = self.orders_of_user.get_mut(user)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.orders_of_user.remove(user);
            }
        }
        RowChange {
            table,
            op: RowOp::Delete,
            commit_ts,
            row,
            old: None,
        }
    }

    fn ddl(&mut self, commit_ts: u64) -> DdlChange {
        self.ddl_seq += 1;
        // Cycle: add the status index, comment on users, drop the status index again.
        let (table, kind, query) = match self.ddl_seq % 3 {
            1 if !self.status_index => (
                Table::Orders,
                DdlKind::AddIndex,
                "CREATE INDEX `idx_orders_status` ON `app`.`orders` (`status`)".to_owned(),
            ),
            0 if self.status_index => (
                Table::Orders,
                DdlKind::DropIndex,
                "DROP INDEX `idx_orders_status` ON `app`.`orders`".to_owned(),
            ),
            _ => (
                Table::Users,
                DdlKind::TableComment,
                format!(
                    "ALTER TABLE `app`.`users` COMMENT = 'cdcmon demo, change {}'",
                    self.ddl_seq
                ),
            ),
        };
        let pre_schema = self.schema(table).clone();
        let mut schema = pre_schema.clone();
        schema.version = commit_ts;
        match kind {
            DdlKind::AddIndex => {
                self.status_index = true;
                schema
                    .indexes
                    .push(("idx_orders_status", false, vec!["status"]));
            }
            DdlKind::DropIndex => {
                self.status_index = false;
                schema.indexes.retain(|(n, _, _)| *n != "idx_orders_status");
            }
            DdlKind::TableComment => {}
        }
        self.schemas[table as usize] = schema.clone();
        DdlChange {
            table,
            kind,
            query,
            commit_ts,
            schema,
            pre_schema,
        }
    }
}

fn initial_schema(table: Table, version: u64) -> TableSchema {
    let indexes = match table {
        Table::Users => vec![("uk_users_email", true, vec!["email"])],
        Table::Orders => vec![("idx_orders_user_id", false, vec!["user_id"])],
    };
    TableSchema {
        table,
        version,
        indexes,
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of unix milliseconds.
pub fn sql_timestamp(unix_ms: u64) -> String {
    let mut out = Vec::with_capacity(24);
    crate::eventlog::write_rfc3339_ms(&mut out, unix_ms as i64);
    // "2026-11-30T02:13:14.123Z" → "2026-11-30 02:13:14"
    let s = String::from_utf8_lossy(&out);
    match (s.get(..10), s.get(11..19)) {
        (Some(d), Some(t)) => format!("{d} {t}"),
        _ => "1970-01-01 00:00:00".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(g: &mut Generator, n: usize) -> Vec<Change> {
        let mut out = Vec::new();
        let mut ms = 1_764_000_000_000;
        while out.len() < n {
            ms += 1;
            out.extend(g.next_transaction(ms));
        }
        out
    }

    #[test]
    fn tso_matches_tidb_layout() {
        // TICDC.md §4: 429918007904436226 >> 18 = 1640007049196.
        assert_eq!(tso(1_640_007_049_196, 2) >> 18, 1_640_007_049_196);
        assert_eq!(tso(1, 0x40001), (1 << 18) | 1, "logical is 18 bits");
        assert_eq!(sql_timestamp(1_640_007_049_196), "2021-12-20 13:30:49");
    }

    #[test]
    fn commit_ts_strictly_increase_within_a_millisecond() {
        let mut g = Generator::new(7, Mix::default(), 1000);
        let a = g.next_transaction(5000);
        let b = g.next_transaction(5000);
        let ts = |c: &[Change]| match &c[0] {
            Change::Row(r) => r.commit_ts,
            Change::Ddl(d) => d.commit_ts,
            Change::Watermark(w) => *w,
        };
        assert!(ts(&b) > ts(&a));
        assert_eq!(ts(&a) >> 18, 5000);
        let Change::Watermark(w) = g.watermark(4000) else {
            panic!()
        };
        assert!(w >= ts(&b), "a watermark never precedes an emitted commit");
    }

    #[test]
    fn updates_carry_the_previous_row_and_deletes_remove_live_rows() {
        let mut g = Generator::new(42, Mix::default(), 1_764_000_000_000);
        let mut live: HashMap<(Table, i64), Row> = HashMap::new();
        for t in Table::ALL {
            for r in &g.rows(t).rows {
                if let Some(Value::Int(id)) = r.first() {
                    live.insert((t, *id), r.clone());
                }
            }
        }
        let mut seen = HashMap::new();
        for c in changes(&mut g, 20_000) {
            let Change::Row(r) = c else { continue };
            *seen.entry(r.op).or_insert(0u32) += 1;
            let key = (r.table, r.id());
            match r.op {
                RowOp::Insert => assert!(live.insert(key, r.row.clone()).is_none(), "dup id"),
                RowOp::Update => {
                    assert_eq!(live.get(&key), r.old.as_ref(), "old values are the row's");
                    live.insert(key, r.row.clone());
                }
                RowOp::Delete => assert_eq!(live.remove(&key).as_ref(), Some(&r.row)),
            }
            if r.table == Table::Orders && r.op != RowOp::Delete {
                let Some(Value::Int(user)) = r.row.get(1) else {
                    panic!()
                };
                assert!(live.contains_key(&(Table::Users, *user)), "FK holds");
            }
        }
        assert!(
            RowOp::ALL
                .iter()
                .all(|op| seen.get(op).copied().unwrap_or(0) > 1000)
        );
    }

    #[test]
    fn ddl_cycles_and_schemas_follow() {
        let mix = Mix {
            ddl_every_rows: 10,
            ..Mix::default()
        };
        let mut g = Generator::new(1, mix, 1_764_000_000_000);
        let ddls: Vec<DdlChange> = changes(&mut g, 400)
            .into_iter()
            .filter_map(|c| match c {
                Change::Ddl(d) => Some(d),
                _ => None,
            })
            .collect();
        assert!(ddls.len() >= 20);
        let kinds: Vec<DdlKind> = ddls.iter().map(|d| d.kind).take(3).collect();
        assert_eq!(
            kinds,
            [DdlKind::AddIndex, DdlKind::TableComment, DdlKind::DropIndex]
        );
        let has_status = |s: &TableSchema| s.indexes.iter().any(|i| i.0 == "idx_orders_status");
        assert!(has_status(&ddls[0].schema) && !has_status(&ddls[0].pre_schema));
        assert!(!has_status(&ddls[2].schema) && has_status(&ddls[2].pre_schema));
        assert_eq!(ddls[0].schema.version, ddls[0].commit_ts);
    }

    #[test]
    fn same_seed_same_stream() {
        let a = changes(&mut Generator::new(9, Mix::default(), 0), 500);
        let b = changes(&mut Generator::new(9, Mix::default(), 0), 500);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}
