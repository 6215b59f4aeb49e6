//! Incremental builds from the inputs' change logs.
//!
//! An incremental model names its `unique_key`. A build after the first one:
//!
//! 1. follows each key column through the model's logical plan down to the input
//!    tables it comes from: through projections, filters, `GROUP BY` keys, equi-join
//!    conditions (so `invoices.customer_id = customers.id` gives both), unions,
//!    aliases ([`lineage`]). Every table the plan reads, subqueries included, must be
//!    reached this way; otherwise a change in it could move any key, and the model is
//!    built whole (still landing only what changed), with the reason in the report;
//! 2. reads, from each input's history log, the rows landed since the version the
//!    last build read (`_ingest_ts` above its mark, up to the version read now):
//!    inserts, updates and deletes (a delete carries the row's last image), plus
//!    the earlier images of those rows when the key column is not the input's own
//!    key (an invoice moved from one customer to another touches both). Their key
//!    values are the keys the build must recompute ([`affected_keys`]);
//! 3. plans the model with every input restricted to those keys ([`restrict`]): a
//!    filter on each input's lineage columns (an `IN` list, or a [`tidemark_lake::keyset`]
//!    test for many keys), which DataFusion pushes through the input's current view
//!    (below its merge of base and tail) onto the scans, so the merge handles the
//!    recomputed keys' rows only;
//! 4. lands, in one commit with the new input versions, the recomputed rows that
//!    differ and deletes for recomputed keys the query no longer returns.
//!
//! A crash at any point leaves the last commit's versions in force, and the next build
//! recomputes the same keys: nothing is lost or applied twice.
//!
//! ## Append
//!
//! An incremental model with `incremental_strategy = 'append'` (no `unique_key`
//! needed) adds rows and never changes them. A build after the first one takes, from
//! each input's log, the keys of the rows it first landed since the version the last
//! build read ([`new_keys`]: inserts and snapshot reads of keys the log did not have
//! before; a key deleted and inserted again is not new), and runs the model once per
//! input that gained rows: that input narrowed to its new rows, the inputs before it
//! to their other rows, those after it whole ([`append_plan`]). Together: every row
//! of the result with at least one new input row in it, once. That holds for models
//! that select, project and inner-join landed tables ([`appendable`]), the shapes
//! where a row of the result comes from one row of each input; others are refused.
//! The rows land as inserts in one commit with the input versions read, as for a
//! merge: a build retried after a crash appends nothing twice. An input row updated
//! or deleted later leaves the rows made from it as they were (dbt's append).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deltalake::arrow::array::{Array, RecordBatch};
use deltalake::arrow::compute::{cast, concat_batches};
use deltalake::arrow::datatypes::{Field, Schema};
use deltalake::datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use deltalake::datafusion::common::{Column, ScalarValue, TableReference};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::logical_expr::utils::split_conjunction;
use deltalake::datafusion::logical_expr::{
    col, lit, BinaryExpr, Distinct, Expr, ExprSchemable, JoinType, LogicalPlan, LogicalPlanBuilder,
    Operator,
};
use deltalake::datafusion::prelude::SessionContext;
use tidemark_core::change::Op;
use tidemark_core::position::InputMark;
use tidemark_core::schema::{TableSchema, INGEST_TS, OP};
use tidemark_query::Engine;

use crate::render::Target;

/// Per input table, the column each key column of the model comes from (in key
/// order).
pub type Lineage = BTreeMap<Target, Vec<String>>;

fn target_of(r: &TableReference) -> Target {
    Target {
        schema: r.schema().unwrap_or("public").to_string(),
        table: r.table().to_string(),
    }
}

/// The input table a plan node reads whole, if it is one: a scan of it, or (the
/// engine's tables are views, which DataFusion inlines when it plans) the alias
/// naming the inlined view.
fn input_of(plan: &LogicalPlan, inputs: &BTreeSet<Target>) -> Option<Target> {
    let t = match plan {
        LogicalPlan::TableScan(s) => target_of(&s.table_name),
        LogicalPlan::SubqueryAlias(s) => target_of(&s.alias),
        _ => return None,
    };
    inputs.contains(&t).then_some(t)
}

/// Where output column `c` of `plan` comes from: (table, column) pairs it equals on
/// every row. `Err` says which part of the plan hides it.
fn trace(
    plan: &LogicalPlan,
    c: &Column,
    inputs: &BTreeSet<Target>,
) -> Result<Vec<(Target, String)>, String> {
    let idx = plan
        .schema()
        .index_of_column(c)
        .map_err(|e| e.to_string())?;
    let nth = |p: &LogicalPlan, i: usize| Column::from(p.schema().qualified_field(i));
    let through = |input: &LogicalPlan, e: &Expr| -> Result<Vec<(Target, String)>, String> {
        match e.clone().unalias_nested().data {
            Expr::Column(inner) => trace(input, &inner, inputs),
            other => Err(format!("key column {} is computed ({other})", c.name)),
        }
    };
    if let Some(t) = input_of(plan, inputs) {
        return Ok(vec![(t, plan.schema().field(idx).name().clone())]);
    }
    let trace = |p: &LogicalPlan, c: &Column| trace(p, c, inputs);
    match plan {
        LogicalPlan::TableScan(s) => Err(format!(
            "it reads {}, which is not a landed table",
            target_of(&s.table_name)
        )),
        LogicalPlan::Projection(p) => through(&p.input, &p.expr[idx]),
        LogicalPlan::Filter(f) => trace(&f.input, &nth(&f.input, idx)),
        LogicalPlan::Sort(s) => trace(&s.input, &nth(&s.input, idx)),
        LogicalPlan::SubqueryAlias(s) => trace(&s.input, &nth(&s.input, idx)),
        LogicalPlan::Repartition(r) => trace(&r.input, &nth(&r.input, idx)),
        LogicalPlan::Distinct(Distinct::All(input)) => trace(input, &nth(input, idx)),
        LogicalPlan::Aggregate(a) => match a.group_expr.get(idx) {
            Some(e) => through(&a.input, e),
            None => Err(format!("key column {} is an aggregate", c.name)),
        },
        LogicalPlan::Union(u) => {
            let mut out = Vec::new();
            for input in &u.inputs {
                out.extend(trace(input, &nth(input, idx))?);
            }
            Ok(out)
        }
        LogicalPlan::Join(j) => {
            let left_len = j.left.schema().fields().len();
            let (side, other, col_in_side, left_side) = match j.join_type {
                JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full
                    if idx < left_len =>
                {
                    (&j.left, &j.right, nth(&j.left, idx), true)
                }
                JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => {
                    (&j.right, &j.left, nth(&j.right, idx - left_len), false)
                }
                JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
                    (&j.left, &j.right, nth(&j.left, idx), true)
                }
                JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
                    (&j.right, &j.left, nth(&j.right, idx), false)
                }
            };
            let mut out = trace(side, &col_in_side)?;
            // The equi-join conditions: the other side's rows that meet this one's on
            // the key have the same value there.
            let mut pairs: Vec<(Expr, Expr)> = j.on.clone();
            if let Some(f) = &j.filter {
                for e in split_conjunction(f) {
                    if let Expr::BinaryExpr(BinaryExpr {
                        left,
                        op: Operator::Eq,
                        right,
                    }) = e
                    {
                        pairs.push(((**left).clone(), (**right).clone()));
                    }
                }
            }
            for (l, r) in pairs {
                let (mine, theirs) = if left_side { (l, r) } else { (r, l) };
                let same = match (&mine, &theirs) {
                    (Expr::Column(m), Expr::Column(t)) if *m == col_in_side => Some(t.clone()),
                    // A filter may name the columns either way round.
                    (Expr::Column(t), Expr::Column(m)) if *m == col_in_side => Some(t.clone()),
                    _ => None,
                };
                if let Some(t) = same {
                    if other.schema().index_of_column(&t).is_ok() {
                        out.extend(trace(other, &t)?);
                    }
                }
            }
            Ok(out)
        }
        LogicalPlan::Window(_) => Err("the model uses a window function".into()),
        LogicalPlan::Limit(_) => Err("the model has a LIMIT".into()),
        other => Err(format!("the model's plan has a {} step", other.display())),
    }
}

/// The lineage of `key` in `plan` (reading the landed tables `inputs`), or why the
/// model must be built whole.
pub fn lineage(
    plan: &LogicalPlan,
    key: &[String],
    inputs: &BTreeSet<Target>,
) -> Result<Lineage, String> {
    let mut per_key: Vec<Vec<(Target, String)>> = Vec::new();
    for k in key {
        let field = plan
            .schema()
            .columns()
            .into_iter()
            .find(|c| c.name.eq_ignore_ascii_case(k))
            .ok_or_else(|| format!("the result has no column {k}"))?;
        per_key.push(trace(plan, &field, inputs)?);
    }
    // Every table the plan reads, subqueries included.
    let mut scanned: BTreeMap<Target, usize> = BTreeMap::new();
    plan.apply_with_subqueries(|p| {
        if let Some(t) = input_of(p, inputs) {
            *scanned.entry(t).or_default() += 1;
            // The inlined view's own scans are the table's, not more inputs.
            return Ok(TreeNodeRecursion::Jump);
        }
        if let LogicalPlan::TableScan(s) = p {
            *scanned.entry(target_of(&s.table_name)).or_default() += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| e.to_string())?;
    let mut out = Lineage::new();
    for (t, times) in scanned {
        // Restricting is per table: a table read twice (a self-join, a subquery over
        // it) could be restricted where it must not be.
        if times > 1 {
            return Err(format!("it reads {t} more than once"));
        }
        let mut cols = Vec::new();
        for (k, sources) in key.iter().zip(&per_key) {
            let mine: BTreeSet<&String> = sources
                .iter()
                .filter(|(st, _)| *st == t)
                .map(|(_, c)| c)
                .collect();
            match mine.len() {
                1 => cols.push(mine.into_iter().next().expect("one").clone()),
                0 => {
                    return Err(format!(
                        "it reads {t}, whose rows are not tied to key column {k} (a change there could touch any row)"
                    ))
                }
                _ => return Err(format!("key column {k} comes from several columns of {t}")),
            }
        }
        out.insert(t, cols);
    }
    Ok(out)
}

/// The keys (columns named and typed as the model's `key`) whose rows the changes
/// landed in the inputs between `from` and `to` may have changed.
pub async fn affected_keys(
    engine: &Engine,
    lineage: &Lineage,
    key: &[(String, deltalake::arrow::datatypes::DataType)],
    from: &BTreeMap<String, InputMark>,
    to: &BTreeMap<String, InputMark>,
) -> Result<RecordBatch, String> {
    let out_schema = Arc::new(Schema::new(
        key.iter()
            .map(|(n, t)| Field::new(n, t.clone(), true))
            .collect::<Vec<_>>(),
    ));
    let mut parts: Vec<RecordBatch> = Vec::new();
    for (t, cols) in lineage {
        let name = t.to_string();
        let (Some(m1), Some(m2)) = (from.get(&name), to.get(&name)) else {
            return Err(format!("{name} has no recorded version"));
        };
        if m1 == m2 {
            continue;
        }
        let hist = engine
            .loaded_history(&t.schema, &t.table)
            .ok_or_else(|| format!("{name} is not loaded"))?;
        let ts: TableSchema = engine
            .landed_schema(&t.schema, &t.table)
            .ok_or_else(|| format!("{name} is not loaded"))?;
        let ctx = SessionContext::new();
        hist.update_datafusion_session(&ctx.state())
            .map_err(|e| e.to_string())?;
        let provider = tidemark_lake::provider(&hist)
            .await
            .map_err(|e| e.to_string())?;
        let log =
            tidemark_lake::mor::logical_log(&ctx, &ts, provider).map_err(|e| e.to_string())?;
        let log = ctx.read_table(log).map_err(|e| e.to_string())?;
        let ingest = || col(format!("\"{INGEST_TS}\""));
        let since = log
            .clone()
            .filter(
                ingest()
                    .gt(lit(tidemark_lake::mor::ingest_literal(m1.ingest_us)))
                    .and(ingest().lt_eq(lit(tidemark_lake::mor::ingest_literal(m2.ingest_us)))),
            )
            .map_err(|e| e.to_string())?;
        let quoted = |c: &str| col(format!("\"{}\"", c.replace('"', "\"\"")));
        let as_key = |df: deltalake::datafusion::dataframe::DataFrame| {
            df.select(
                cols.iter()
                    .zip(key)
                    .map(|(c, (k, _))| quoted(c).alias(k))
                    .collect::<Vec<_>>(),
            )
        };
        let mut affected = as_key(since.clone()).map_err(|e| e.to_string())?;
        // When the model's key is not the input's own key, a row's earlier images
        // count too: an update may have moved it from one key to another. They are
        // the log's rows before the changes of the keys the changes touched: a
        // key-set filter on the log, which its scan applies as it reads (a semi-join
        // here would hash-join the whole log).
        let pk: BTreeSet<String> = ts.key_names().iter().map(|s| s.to_lowercase()).collect();
        let from_cols: BTreeSet<String> = cols.iter().map(|s| s.to_lowercase()).collect();
        if pk != from_cols {
            let pk_cols: Vec<String> = ts.key_names().iter().map(|s| s.to_string()).collect();
            let touched = since
                .select(pk_cols.iter().map(|c| quoted(c)).collect::<Vec<_>>())
                .map_err(|e| e.to_string())?
                .distinct()
                .map_err(|e| e.to_string())?;
            let touched_schema = Arc::new(touched.schema().as_arrow().clone());
            let touched = touched.collect().await.map_err(|e| e.to_string())?;
            let touched = concat_batches(&touched_schema, &touched).map_err(|e| e.to_string())?;
            if touched.num_rows() > 0 {
                let before = log
                    .filter(
                        ingest()
                            .lt_eq(lit(tidemark_lake::mor::ingest_literal(m1.ingest_us)))
                            .and(tidemark_lake::keyset::key_in(
                                pk_cols.iter().map(|c| quoted(c)).collect(),
                                &touched,
                            )?),
                    )
                    .map_err(|e| e.to_string())?;
                affected = affected
                    .union(as_key(before).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
        }
        let batches = affected
            .distinct()
            .map_err(|e| e.to_string())?
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        for b in batches {
            let cols = b
                .columns()
                .iter()
                .zip(out_schema.fields())
                .map(|(c, f)| cast(c, f.data_type()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            parts.push(RecordBatch::try_new(out_schema.clone(), cols).map_err(|e| e.to_string())?);
        }
    }
    let all = concat_batches(&out_schema, &parts).map_err(|e| e.to_string())?;
    // Distinct across inputs too (a key touched in two inputs is recomputed once).
    let ctx = SessionContext::new();
    let mem = MemTable::try_new(out_schema.clone(), vec![vec![all]]).map_err(|e| e.to_string())?;
    let batches = ctx
        .read_table(Arc::new(mem))
        .map_err(|e| e.to_string())?
        .distinct()
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    concat_batches(&out_schema, &batches).map_err(|e| e.to_string())
}

/// Up to 1,000 keys of one column an `IN` list narrows an input: its file and row-group
/// statistics can skip what holds none of them. Above, a [`tidemark_lake::keyset`] filter
/// (long IN lists overflow the stack in DataFusion's recursive rewrites: 19,000 did
/// at 2M rows).
const IN_LIST_MAX: usize = 1_000;

/// `plan` with each input's scan keeping only the rows whose lineage columns hold an
/// affected key.
pub fn restrict(
    plan: LogicalPlan,
    lineage: &Lineage,
    keys: &RecordBatch,
) -> Result<LogicalPlan, String> {
    let each = lineage
        .iter()
        .map(|(t, cols)| {
            (
                t.clone(),
                Restriction {
                    cols: cols.clone(),
                    keys: keys.clone(),
                    keep: true,
                },
            )
        })
        .collect();
    restrict_inputs(plan, &each)
}

/// How [`restrict_inputs`] narrows one input.
#[derive(Debug, Clone)]
pub struct Restriction {
    /// The input's columns, matched in order against the columns of `keys`.
    pub cols: Vec<String>,
    /// Key values.
    pub keys: RecordBatch,
    /// Keep the rows whose columns hold one of `keys` (`true`), or the other rows.
    pub keep: bool,
}

/// `plan` with the scan of each input named in `each` narrowed as it says: to the
/// rows whose columns hold one of its keys, or to the others. The narrowing is a
/// filter (an IN list, or above [`IN_LIST_MAX`] keys or for keys of several columns
/// a [`tidemark_lake::keyset`] test), which DataFusion pushes into the input's view: below
/// its merge of base and tail, onto the scans.
pub fn restrict_inputs(
    plan: LogicalPlan,
    each: &BTreeMap<Target, Restriction>,
) -> Result<LogicalPlan, String> {
    struct Prepared<'a> {
        r: &'a Restriction,
        /// An IN list of these values (one key column), else a key set.
        values: Option<Vec<Expr>>,
    }
    let mut prepared: BTreeMap<&Target, Prepared<'_>> = BTreeMap::new();
    for (t, r) in each {
        let keys = &r.keys;
        let values = if keys.num_columns() == 1 && keys.num_rows() <= IN_LIST_MAX {
            let c = keys.column(0);
            Some(
                (0..c.len())
                    .map(|i| ScalarValue::try_from_array(c, i).map(lit))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        prepared.insert(t, Prepared { r, values });
    }
    let out = plan
        .transform_down_with_subqueries(|node| {
            let name = match &node {
                LogicalPlan::TableScan(s) => s.table_name.clone(),
                LogicalPlan::SubqueryAlias(s) => s.alias.clone(),
                _ => return Ok(Transformed::no(node)),
            };
            let Some(p) = prepared.get(&target_of(&name)) else {
                return Ok(Transformed::no(node));
            };
            let qualified: Vec<Expr> =
                p.r.cols
                    .iter()
                    .map(|c| Expr::Column(Column::new(Some(name.clone()), c)))
                    .collect();
            let schema = node.schema().clone();
            let filter = match &p.values {
                Some(values) => {
                    let input_type = qualified[0].get_type(schema.as_ref())?;
                    let typed: Vec<Expr> = values
                        .iter()
                        .map(|v| v.clone().cast_to(&input_type, schema.as_ref()))
                        .collect::<Result<_, _>>()?;
                    let listed = qualified[0].clone().in_list(typed, !p.r.keep);
                    if p.r.keep {
                        listed
                    } else {
                        // NOT IN is NULL for a NULL key; an anti-join keeps the row.
                        qualified[0].clone().is_null().or(listed)
                    }
                }
                None => {
                    let has = tidemark_lake::keyset::key_in(qualified, &p.r.keys)
                        .map_err(deltalake::datafusion::error::DataFusionError::Plan)?;
                    if p.r.keep {
                        has
                    } else {
                        // A row whose key is NULL holds none of the keys: kept, as
                        // by an anti-join.
                        !has
                    }
                }
            };
            let restricted = LogicalPlanBuilder::from(node).filter(filter)?.build()?;
            // Its inside is the table's own plan: nothing there to restrict again.
            Ok(Transformed::new(restricted, true, TreeNodeRecursion::Jump))
        })
        .map_err(|e| e.to_string())?;
    Ok(out.data)
}

/// The input an incremental build can read from its history log's tail alone, if
/// one can: the only input that changed since the last build, whose own key the
/// model's key comes from (so the affected keys are the keys it changed), merged on
/// read above a mark the last build had already read past. Every affected key then
/// has a log row above the mark, and the input's current view takes such a key's
/// row from the tail, never from the base: leaving the base's scan out
/// ([`read_tail_only`]) changes no row and reads only what landed since the mark,
/// not the whole table.
pub fn tail_only(
    engine: &Engine,
    lineage: &Lineage,
    from: &BTreeMap<String, InputMark>,
    to: &BTreeMap<String, InputMark>,
) -> Option<Target> {
    let mut changed = lineage
        .keys()
        .filter(|t| from.get(&t.to_string()) != to.get(&t.to_string()));
    let t = changed.next()?;
    if changed.next().is_some() {
        // Another input's changes bring keys this one's tail may not hold.
        return None;
    }
    let m1 = from.get(&t.to_string())?;
    let ts = engine.landed_schema(&t.schema, &t.table)?;
    let pk: BTreeSet<String> = ts.key_names().iter().map(|s| s.to_lowercase()).collect();
    let cols: BTreeSet<String> = lineage[t].iter().map(|s| s.to_lowercase()).collect();
    if pk != cols || cols.len() != lineage[t].len() {
        return None;
    }
    let mark = engine.merge_mark(&t.schema, &t.table)?;
    (mark <= m1.ingest_us).then(|| t.clone())
}

/// `plan` with the base of input `t`'s current view left out (an empty relation of
/// its columns): for a plan already restricted to keys that all have rows in `t`'s
/// tail ([`tail_only`]). `Err` if the plan holds no such view of `t` to change.
pub fn read_tail_only(plan: LogicalPlan, t: &Target) -> Result<LogicalPlan, String> {
    let mut found = false;
    let out = plan
        .transform_down_with_subqueries(|node| {
            let LogicalPlan::SubqueryAlias(a) = &node else {
                return Ok(Transformed::no(node));
            };
            if target_of(&a.alias) != *t {
                return Ok(Transformed::no(node));
            }
            let inner = node.transform_down(|n| match &n {
                LogicalPlan::TableScan(s)
                    if s.table_name.table() == tidemark_lake::mor::BASE_SCAN =>
                {
                    found = true;
                    Ok(Transformed::yes(LogicalPlan::EmptyRelation(
                        deltalake::datafusion::logical_expr::EmptyRelation {
                            produce_one_row: false,
                            schema: s.projected_schema.clone(),
                        },
                    )))
                }
                _ => Ok(Transformed::no(n)),
            })?;
            Ok(Transformed::new(
                inner.data,
                inner.transformed,
                TreeNodeRecursion::Jump,
            ))
        })
        .map_err(|e| e.to_string())?;
    if !found {
        return Err(format!("the plan reads no merged view of {t}"));
    }
    Ok(out.data)
}

/// Whether an append build can make `plan`'s new rows from its inputs' new rows:
/// each row of the result must come from one row of each input it reads (selections,
/// projections, inner joins), every table read must be one of `inputs` (landed, with
/// versions), once. Returns the inputs read; `Err` says what stands in the way.
pub fn appendable(
    plan: &LogicalPlan,
    inputs: &BTreeSet<Target>,
) -> Result<BTreeSet<Target>, String> {
    let mut scanned: BTreeMap<Target, usize> = BTreeMap::new();
    let mut problem: Option<String> = None;
    plan.apply(|p| {
        if let Some(t) = input_of(p, inputs) {
            *scanned.entry(t).or_default() += 1;
            // The inlined view's own plan is the table's.
            return Ok(TreeNodeRecursion::Jump);
        }
        let mut subquery = false;
        p.apply_subqueries(|_| {
            subquery = true;
            Ok(TreeNodeRecursion::Stop)
        })?;
        let why = if subquery {
            Some("it has a subquery (IN, EXISTS or a scalar one): a new row there can change rows made before".to_string())
        } else {
            match p {
                LogicalPlan::Projection(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::SubqueryAlias(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Repartition(_) => None,
                LogicalPlan::Join(j) if j.join_type == JoinType::Inner => None,
                LogicalPlan::Join(j) => Some(format!(
                    "it has a {} join: a new row on one side can change rows made before",
                    j.join_type
                )),
                LogicalPlan::TableScan(s) => Some(format!(
                    "it reads {}, which has no versions (a view, or a table a job writes): what is new there cannot be told",
                    target_of(&s.table_name)
                )),
                LogicalPlan::Aggregate(_) => Some(
                    "it aggregates (GROUP BY, count, sum, ...): a new input row changes a row made before"
                        .into(),
                ),
                LogicalPlan::Distinct(_) => {
                    Some("it has DISTINCT: a new input row may repeat a row made before".into())
                }
                LogicalPlan::Union(_) => Some("it has a UNION".into()),
                LogicalPlan::Window(_) => Some(
                    "it uses a window function: a new input row changes rows made before".into(),
                ),
                LogicalPlan::Limit(_) => Some("it has a LIMIT".into()),
                other => Some(format!("its plan has a {} step", other.display())),
            }
        };
        match why {
            Some(w) => {
                problem = Some(w);
                Ok(TreeNodeRecursion::Stop)
            }
            None => Ok(TreeNodeRecursion::Continue),
        }
    })
    .map_err(|e| e.to_string())?;
    if let Some(p) = problem {
        return Err(p);
    }
    if let Some((t, _)) = scanned.iter().find(|(_, n)| **n > 1) {
        return Err(format!("it reads {t} more than once"));
    }
    if scanned.is_empty() {
        return Err("it reads no landed table".into());
    }
    Ok(scanned.into_keys().collect())
}

/// The key values (the input's own key columns, and their names) of the rows input
/// `t` first landed between `from` and `to`: inserts and snapshot reads in its log
/// after `from`'s mark, of keys the log had nothing of at or before that mark. A key
/// deleted and inserted again is not new; an update is not.
pub async fn new_keys(
    engine: &Engine,
    t: &Target,
    from: &InputMark,
    to: &InputMark,
) -> Result<(Vec<String>, RecordBatch), String> {
    let name = t.to_string();
    let e = |e: deltalake::datafusion::error::DataFusionError| e.to_string();
    let hist = engine
        .loaded_history(&t.schema, &t.table)
        .ok_or_else(|| format!("{name} is not loaded"))?;
    let ts: TableSchema = engine
        .landed_schema(&t.schema, &t.table)
        .ok_or_else(|| format!("{name} is not loaded"))?;
    let ctx = SessionContext::new();
    hist.update_datafusion_session(&ctx.state())
        .map_err(|e| e.to_string())?;
    let provider = tidemark_lake::provider(&hist)
        .await
        .map_err(|e| e.to_string())?;
    let log = tidemark_lake::mor::logical_log(&ctx, &ts, provider).map_err(|e| e.to_string())?;
    let log = ctx.read_table(log).map_err(e)?;
    let quoted = |c: &str| col(format!("\"{}\"", c.replace('"', "\"\"")));
    let ingest = || quoted(INGEST_TS);
    let pk: Vec<String> = ts.key_names().iter().map(|s| s.to_string()).collect();
    let inserted = quoted(OP).in_list(vec![lit(Op::Create.code()), lit(Op::Read.code())], false);
    let since = log
        .clone()
        .filter(
            ingest()
                .gt(lit(tidemark_lake::mor::ingest_literal(from.ingest_us)))
                .and(ingest().lt_eq(lit(tidemark_lake::mor::ingest_literal(to.ingest_us))))
                .and(inserted),
        )
        .map_err(e)?
        .select(pk.iter().map(|c| quoted(c)).collect::<Vec<_>>())
        .map_err(e)?
        .distinct()
        .map_err(e)?;
    let before = log
        .filter(ingest().lt_eq(lit(tidemark_lake::mor::ingest_literal(from.ingest_us))))
        .map_err(e)?
        .select(
            pk.iter()
                .map(|c| quoted(c).alias(format!("__pk_{c}")))
                .collect::<Vec<_>>(),
        )
        .map_err(e)?;
    let right: Vec<String> = pk.iter().map(|c| format!("__pk_{c}")).collect();
    let new = since
        .join(
            before,
            JoinType::LeftAnti,
            &pk.iter().map(String::as_str).collect::<Vec<_>>(),
            &right.iter().map(String::as_str).collect::<Vec<_>>(),
            None,
        )
        .map_err(e)?;
    let schema = Arc::new(new.schema().as_arrow().clone());
    let batches = new.collect().await.map_err(e)?;
    let keys = concat_batches(&schema, &batches).map_err(|e| e.to_string())?;
    Ok((pk, keys))
}

/// The plan of an append build. For each input that gained rows (`new`: per input,
/// its key columns and the keys of its new rows), the model with that input narrowed
/// to its new rows, the inputs before it to their other rows and those after it
/// whole; all of them together (UNION ALL). For a plan [`appendable`] accepts, that
/// is every row with at least one new input row in it, once. `None` when no input
/// gained a row.
pub fn append_plan(
    plan: &LogicalPlan,
    new: &BTreeMap<Target, (Vec<String>, RecordBatch)>,
) -> Result<Option<LogicalPlan>, String> {
    let gained: Vec<(&Target, &(Vec<String>, RecordBatch))> =
        new.iter().filter(|(_, (_, k))| k.num_rows() > 0).collect();
    let mut terms = Vec::new();
    for i in 0..gained.len() {
        let each: BTreeMap<Target, Restriction> = gained[..=i]
            .iter()
            .enumerate()
            .map(|(j, (t, (cols, keys)))| {
                (
                    (*t).clone(),
                    Restriction {
                        cols: cols.clone(),
                        keys: keys.clone(),
                        keep: j == i,
                    },
                )
            })
            .collect();
        terms.push(restrict_inputs(plan.clone(), &each)?);
    }
    let mut terms = terms.into_iter();
    let Some(first) = terms.next() else {
        return Ok(None);
    };
    let mut b = LogicalPlanBuilder::from(first);
    for t in terms {
        b = b.union(t).map_err(|e| e.to_string())?;
    }
    b.build().map(Some).map_err(|e| e.to_string())
}

/// Why the inputs' recorded versions cannot be followed from `from` (what the last
/// build read) to `to` (what this one reads), if they cannot: an input read now that
/// the last build did not, read from another warehouse than last time (a deferred
/// build after one that was not, or the other way round), or landed again.
pub fn moved(
    from: &BTreeMap<String, InputMark>,
    to: &BTreeMap<String, InputMark>,
) -> Option<String> {
    let place = |m: &InputMark| {
        m.deferred_from
            .clone()
            .unwrap_or_else(|| "this warehouse".into())
    };
    for (name, now) in to {
        match from.get(name) {
            None => return Some(format!("it reads {name}, which its last build did not")),
            Some(then) if then.deferred_from != now.deferred_from => {
                return Some(format!(
                    "its last build read {name} from {}, this one reads it from {}",
                    place(then),
                    place(now)
                ))
            }
            // A table landed again (--resnapshot) starts a new log: rows it no longer
            // has left no tombstones there.
            Some(then) if now.version < then.version || now.table_id != then.table_id => {
                return Some(format!("{name} was landed again since its last build"))
            }
            Some(_) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::Int64Array;
    use deltalake::arrow::datatypes::DataType;

    async fn ctx() -> SessionContext {
        let ctx = SessionContext::new();
        ctx.catalog("datafusion")
            .unwrap()
            .register_schema(
                "shop",
                Arc::new(deltalake::datafusion::catalog::MemorySchemaProvider::new()),
            )
            .unwrap();
        for (name, cols) in [
            ("invoices", vec!["id", "customer_id", "total"]),
            ("customers", vec!["id", "name"]),
            ("lines", vec!["id", "invoice_id", "amount"]),
        ] {
            let schema = Arc::new(Schema::new(
                cols.iter()
                    .map(|c| Field::new(*c, DataType::Int64, true))
                    .collect::<Vec<_>>(),
            ));
            let batch = RecordBatch::new_empty(schema.clone());
            let mem = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
            ctx.register_table(format!("shop.{name}").as_str(), Arc::new(mem))
                .unwrap();
        }
        ctx
    }

    fn shop() -> BTreeSet<Target> {
        ["invoices", "customers", "lines"]
            .into_iter()
            .map(|t| Target {
                schema: "shop".into(),
                table: t.into(),
            })
            .collect()
    }

    async fn plan(sql: &str) -> LogicalPlan {
        ctx().await.state().create_logical_plan(sql).await.unwrap()
    }

    #[tokio::test]
    async fn the_key_is_followed_through_groups_and_joins() {
        let p = plan(
            "SELECT c.id AS customer_id, c.name, sum(i.total) AS revenue \
             FROM shop.customers c LEFT JOIN shop.invoices i ON i.customer_id = c.id \
             GROUP BY c.id, c.name",
        )
        .await;
        let l = lineage(&p, &["customer_id".into()], &shop()).unwrap();
        let shown: Vec<String> = l.iter().map(|(t, c)| format!("{t}:{}", c[0])).collect();
        assert_eq!(shown, ["shop.customers:id", "shop.invoices:customer_id"]);
        // The restricted plan still plans, and keeps the shape.
        let keys = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "customer_id",
                DataType::Int64,
                true,
            )])),
            vec![Arc::new(Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let r = restrict(p.clone(), &l, &keys).unwrap();
        assert_eq!(r.schema(), p.schema());
        assert!(
            format!("{}", r.display_indent()).contains("IN (["),
            "{}",
            r.display_indent()
        );
    }

    #[tokio::test]
    async fn an_input_not_tied_to_the_key_means_whole_builds() {
        // A scalar subquery over all invoices: any change moves every row.
        let p = plan(
            "SELECT id, total / (SELECT sum(total) FROM shop.invoices) AS share FROM shop.invoices",
        )
        .await;
        let e = lineage(&p, &["id".into()], &shop()).unwrap_err();
        assert!(e.contains("more than once"), "{e}");
        let p = plan(
            "SELECT id, total / (SELECT sum(amount) FROM shop.lines) AS share FROM shop.invoices",
        )
        .await;
        let e = lineage(&p, &["id".into()], &shop()).unwrap_err();
        assert!(
            e.contains("shop.lines, whose rows are not tied to key column id"),
            "{e}"
        );
        let p =
            plan("SELECT invoice_id + 1 AS k, sum(amount) AS a FROM shop.lines GROUP BY 1").await;
        assert!(lineage(&p, &["k".into()], &shop())
            .unwrap_err()
            .contains("computed"));
        let p = plan("SELECT id FROM shop.invoices ORDER BY id LIMIT 3").await;
        assert!(lineage(&p, &["id".into()], &shop())
            .unwrap_err()
            .contains("LIMIT"));
    }
}
