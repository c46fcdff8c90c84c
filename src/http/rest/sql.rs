//! Renders a parsed request as one SQL statement. Every value is a bound parameter; every
//! identifier comes from the schema cache (and is quoted); the only text taken from the
//! request as written is a cast's type name, which the grammar limits to letters, digits,
//! `_`, spaces and `[]`. Numbers (limits, offsets, JSON array indexes) are parsed integers.
//!
//! The statement's rows are shaped in the database, as PostgREST does: one row with the
//! total count (when asked), the page's row count and the body (JSON or CSV).

use super::error::RestError;
use super::parse::{
    Field, IsValue, JoinKind, JsonKey, Logic, Nulls, Operation, Operator, OrderTerm, Quantifier, Query, SelectItem,
};
use super::plan;
use super::schema::{Relation, SchemaCache, ident};

/// A bound value: text (cast in SQL to the column's type), a list of texts, or JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Texts(Vec<String>),
}

/// SQL under construction with its parameters.
#[derive(Debug, Default)]
pub struct Builder {
    pub params: Vec<Param>,
    next_alias: usize,
}

impl Builder {
    /// A text parameter; `$n` to write where it goes.
    pub fn text(&mut self, value: impl Into<String>) -> String {
        self.params.push(Param::Text(value.into()));
        format!("${}", self.params.len())
    }

    fn texts(&mut self, values: Vec<String>) -> String {
        self.params.push(Param::Texts(values));
        format!("${}", self.params.len())
    }

    fn alias(&mut self) -> usize {
        self.next_alias += 1;
        self.next_alias
    }
}

/// How the body of the answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// A JSON array of the rows.
    Array,
    /// The one row as a JSON object (`null` when there is none; the caller checks the count).
    Object,
    /// `Array` and `Object` without the null-valued keys (`nulls=stripped`).
    ArrayStripped,
    ObjectStripped,
    Csv,
    /// A function's scalar results, as an array.
    ScalarArray,
    /// A function's one scalar result.
    Scalar,
}

impl Body {
    /// Whether the answer is one object, so the request fails unless there is one row.
    pub fn is_object(self) -> bool {
        matches!(self, Body::Object | Body::ObjectStripped)
    }
}

/// What a read selects from: a table or view, or the rows of an earlier CTE.
pub struct Source<'a> {
    /// The relation whose columns the rows have (for a CTE, the table written or the
    /// function's result).
    pub relation: &'a Relation,
    /// `FROM` text: the qualified relation, or `pgrst_source`.
    pub from: String,
}

/// One level of a read: the resource of the URL or an embedded one.
struct Level {
    select: Vec<String>,
    /// Lateral joins of embedded resources, each marked when filters need it (for counts).
    joins: Vec<(String, bool)>,
    /// Conditions the embeds add (`!inner`, `rel=not.is.null`).
    conditions: Vec<String>,
    /// Output name, join alias and whether the embed is spread, of each embed.
    embeds: Vec<(String, String, bool)>,
}

/// The rendered read: the page query and, when asked, the count query.
pub struct Read {
    pub page: String,
    pub count: String,
}

/// Renders `SELECT ... FROM source ... WHERE ... ORDER BY ... LIMIT ... OFFSET ...`.
pub fn read(
    b: &mut Builder,
    cache: &SchemaCache,
    source: &Source,
    query: &Query,
    limit: Option<u64>,
    offset: u64,
) -> Result<Read, RestError> {
    let items = query.select.clone().unwrap_or_else(|| vec![SelectItem::Star]);
    let mut embed_paths = Vec::new();
    let level = render_level(b, cache, source.relation, "t0", &[], &items, query, &mut embed_paths)?;
    // Parameters naming embedded resources that the select does not embed.
    for path in query
        .filters
        .iter()
        .map(|(p, _)| p)
        .chain(query.order.iter().map(|(p, _)| p))
        .chain(query.limits.iter().map(|(p, _)| p))
        .chain(query.offsets.iter().map(|(p, _)| p))
    {
        if !path.is_empty() && !embed_paths.contains(path) {
            let name = path.join(".");
            return Err(RestError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "PGRST108",
                format!("'{name}' is not an embedded resource in this request"),
            )
            .hint(format!("Verify that '{name}' is included in the 'select' query parameter.")));
        }
    }
    let (mut conditions, filtering_embeds) = filters(b, source.relation, "t0", &[], query, &level.embeds)?;
    conditions.extend(level.conditions.iter().cloned());
    let where_ = where_clause(&conditions);
    let joins: String = level.joins.iter().map(|(j, _)| format!(" {j}")).collect();
    let count_joins: String = level
        .joins
        .iter()
        .zip(&level.embeds)
        .filter(|((_, filtering), (_, alias, _))| *filtering || filtering_embeds.contains(alias))
        .map(|((j, _), _)| format!(" {j}"))
        .collect();
    let order = order_clause(b, source.relation, "t0", query, &[])?;
    let select = if level.select.is_empty() { "NULL AS pgrst_none".to_owned() } else { level.select.join(", ") };
    let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    let offset = if offset > 0 { format!(" OFFSET {offset}") } else { String::new() };
    Ok(Read {
        page: format!("SELECT {select} FROM {} AS \"t0\"{joins}{where_}{order}{limit}{offset}", source.from),
        count: format!("SELECT count(*) FROM {} AS \"t0\"{count_joins}{where_}", source.from),
    })
}

/// The statement around a read: `WITH pgrst_source AS (...)` when there is one, the total,
/// the page's row count and the body.
pub fn wrap(with: Option<&str>, read: &Read, count: bool, body: Body) -> String {
    let with = with.map(|w| format!("WITH pgrst_source AS ({w}) ")).unwrap_or_default();
    let total = if count { format!("({})", read.count) } else { "NULL::bigint".to_owned() };
    let body = match body {
        Body::Array => "coalesce(json_agg(_pgrst_t), '[]')::text".to_owned(),
        Body::Object => "coalesce(json_agg(_pgrst_t)->0, 'null')::text".to_owned(),
        Body::ArrayStripped => "coalesce(json_strip_nulls(json_agg(_pgrst_t)), '[]')::text".to_owned(),
        Body::ObjectStripped => "coalesce(json_strip_nulls(json_agg(_pgrst_t)->0), 'null')::text".to_owned(),
        Body::Csv => "coalesce((SELECT string_agg(k, ',') FROM json_object_keys((array_agg(row_to_json(_pgrst_t)))[1]) AS k), '') \
                      || E'\\n' || coalesce(string_agg(substring(_pgrst_t::text, 2, length(_pgrst_t::text) - 2), E'\\n'), '')"
            .to_owned(),
        Body::ScalarArray => "coalesce(json_agg(_pgrst_t.pgrst_scalar), '[]')::text".to_owned(),
        Body::Scalar => "coalesce(json_agg(_pgrst_t.pgrst_scalar)->0, 'null')::text".to_owned(),
    };
    format!("{with}SELECT {total} AS total, count(*) AS page, {body} AS body FROM ({}) _pgrst_t", read.page)
}

fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) }
}

#[allow(clippy::too_many_arguments)]
fn render_level(
    b: &mut Builder,
    cache: &SchemaCache,
    relation: &Relation,
    alias: &str,
    path: &[String],
    items: &[SelectItem],
    query: &Query,
    embed_paths: &mut Vec<Vec<String>>,
) -> Result<Level, RestError> {
    let mut level = Level { select: Vec::new(), joins: Vec::new(), conditions: Vec::new(), embeds: Vec::new() };
    for item in items {
        match item {
            SelectItem::Star => level.select.push(format!("{}.*", ident(alias))),
            SelectItem::Column { field, alias: output, cast } => {
                let (expr, _) = field_expr(b, relation, alias, field)?;
                let expr = match cast {
                    Some(cast) => format!("CAST({expr} AS {cast})"),
                    None => expr,
                };
                let name = output.clone().unwrap_or_else(|| field.output_name());
                level.select.push(format!("{expr} AS {}", ident(&name)));
            }
            SelectItem::Embed { alias: output, relation: name, hint, join, spread, items: child_items } => {
                let relationship = plan::relationship(cache, relation, name, hint.as_deref())?;
                let to_one = relationship.cardinality.to_one();
                if *spread && !to_one {
                    return Err(RestError::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "PGRST127",
                        "Feature not implemented",
                    )
                    .details("A spread operation is only possible on many-to-one and one-to-one relationships."));
                }
                let n = b.alias();
                let (child, join_alias, x) = (format!("t{n}"), format!("e{n}"), format!("x{n}"));
                let output_name = output.clone().unwrap_or_else(|| name.clone());
                let mut child_path = path.to_vec();
                child_path.push(output_name.clone());
                embed_paths.push(child_path.clone());
                let target = relationship.target;
                let inner = render_level(b, cache, target, &child, &child_path, child_items, query, embed_paths)?;
                let mut conditions: Vec<String> = relationship
                    .on
                    .iter()
                    .map(|(parent_col, child_col)| {
                        format!("{}.{} = {}.{}", ident(&child), ident(child_col), ident(alias), ident(parent_col))
                    })
                    .collect();
                if let Some((junction, to_parent, to_child)) = &relationship.junction {
                    let j = format!("j{n}");
                    let mut on: Vec<String> = to_parent
                        .iter()
                        .map(|(jc, pc)| format!("{}.{} = {}.{}", ident(&j), ident(jc), ident(alias), ident(pc)))
                        .collect();
                    on.extend(
                        to_child
                            .iter()
                            .map(|(jc, cc)| format!("{}.{} = {}.{}", ident(&j), ident(jc), ident(&child), ident(cc))),
                    );
                    conditions.push(format!(
                        "EXISTS (SELECT 1 FROM {} AS {} WHERE {})",
                        junction.qualified(),
                        ident(&j),
                        on.join(" AND ")
                    ));
                }
                let (child_filters, _) = filters(b, target, &child, &child_path, query, &inner.embeds)?;
                conditions.extend(child_filters);
                conditions.extend(inner.conditions.iter().cloned());
                let joins: String = inner.joins.iter().map(|(j, _)| format!(" {j}")).collect();
                let order = order_clause(b, target, &child, query, &child_path)?;
                let limit = query.limit(&child_path).map(|n| format!(" LIMIT {n}")).unwrap_or_default();
                let offset = query.offset(&child_path).map(|n| format!(" OFFSET {n}")).unwrap_or_default();
                let where_ = where_clause(&conditions);
                let from =
                    format!("FROM {} AS {}{joins}{where_}{order}{limit}{offset}", target.qualified(), ident(&child));
                let inner_join = *join == Some(JoinKind::Inner);
                if *spread {
                    let mut select = inner.select.clone();
                    select.push("TRUE AS pgrst_found".into());
                    level.joins.push((
                        format!(
                            "LEFT JOIN LATERAL (SELECT {} {from}) AS {} ON TRUE",
                            select.join(", "),
                            ident(&join_alias)
                        ),
                        inner_join,
                    ));
                    for name in output_names(target, child_items) {
                        level.select.push(format!("{}.{}", ident(&join_alias), ident(&name)));
                    }
                    if inner_join {
                        level.conditions.push(format!("{}.pgrst_found", ident(&join_alias)));
                    }
                } else {
                    let select =
                        if inner.select.is_empty() { "NULL AS pgrst_none".to_owned() } else { inner.select.join(", ") };
                    let aggregate = if to_one { format!("row_to_json({x})") } else { format!("json_agg({x})") };
                    level.joins.push((
                        format!("LEFT JOIN LATERAL (SELECT {aggregate} AS body FROM (SELECT {select} {from}) AS {x}) AS {} ON TRUE", ident(&join_alias)),
                        inner_join,
                    ));
                    if !child_items.is_empty() {
                        let value = if to_one {
                            format!("{}.body", ident(&join_alias))
                        } else {
                            format!("coalesce({}.body, '[]')", ident(&join_alias))
                        };
                        level.select.push(format!("{value} AS {}", ident(&output_name)));
                    }
                    if inner_join {
                        level.conditions.push(format!("{}.body IS NOT NULL", ident(&join_alias)));
                    }
                }
                level.embeds.push((output_name, join_alias, *spread));
            }
        }
    }
    Ok(level)
}

/// The names an embed's items give their columns (for spreading them into the parent).
fn output_names(relation: &Relation, items: &[SelectItem]) -> Vec<String> {
    let mut names = Vec::new();
    for item in items {
        match item {
            SelectItem::Star => names.extend(relation.columns.iter().map(|c| c.name.clone())),
            SelectItem::Column { field, alias, .. } => names.push(alias.clone().unwrap_or_else(|| field.output_name())),
            SelectItem::Embed { alias, relation: name, spread: false, items, .. } if !items.is_empty() => {
                names.push(alias.clone().unwrap_or_else(|| name.clone()))
            }
            SelectItem::Embed { .. } => {}
        }
    }
    names
}

/// A column (and JSON path) of `relation` under `alias`, with the type a value compared to it
/// is cast to.
fn field_expr(b: &mut Builder, relation: &Relation, alias: &str, field: &Field) -> Result<(String, String), RestError> {
    let column = relation.column(&field.name).ok_or_else(|| RestError::no_column(&relation.name, &field.name))?;
    let mut expr = format!("{}.{}", ident(alias), ident(&column.name));
    let mut type_name = column.type_name.clone();
    if !field.path.is_empty() {
        if !column.is_json() {
            expr = format!("to_jsonb({expr})");
            type_name = "jsonb".into();
        }
        for step in &field.path {
            let key = match &step.key {
                JsonKey::Key(key) => b.text(key.clone()),
                JsonKey::Index(i) => format!("({i})"),
            };
            expr = format!("({expr} {} {key})", if step.text { "->>" } else { "->" });
        }
        if field.path.last().is_some_and(|s| s.text) {
            type_name = "text".into();
        }
    }
    Ok((expr, type_name))
}

/// The conditions of the filters of the level at `path`, and the joins they need (embeds
/// filtered with `rel=is.null` or `rel=not.is.null`).
fn filters(
    b: &mut Builder,
    relation: &Relation,
    alias: &str,
    path: &[String],
    query: &Query,
    embeds: &[(String, String, bool)],
) -> Result<(Vec<String>, Vec<String>), RestError> {
    let mut conditions = Vec::new();
    let mut needed = Vec::new();
    for (_, logic) in query.filters.iter().filter(|(p, _)| p == path) {
        conditions.push(logic_sql(b, relation, alias, logic, embeds, &mut needed)?);
    }
    Ok((conditions, needed))
}

fn logic_sql(
    b: &mut Builder,
    relation: &Relation,
    alias: &str,
    logic: &Logic,
    embeds: &[(String, String, bool)],
    needed: &mut Vec<String>,
) -> Result<String, RestError> {
    match logic {
        Logic::Tree { or, negated, children } => {
            let parts = children
                .iter()
                .map(|child| logic_sql(b, relation, alias, child, embeds, needed))
                .collect::<Result<Vec<_>, _>>()?;
            let joined = if parts.is_empty() {
                (if *or { "FALSE" } else { "TRUE" }).to_owned()
            } else {
                parts.join(if *or { " OR " } else { " AND " })
            };
            Ok(if *negated { format!("NOT ({joined})") } else { format!("({joined})") })
        }
        Logic::Filter(filter) => {
            // `rel=is.null` / `rel=not.is.null` on an embedded resource.
            if relation.column(&filter.field.name).is_none()
                && filter.field.path.is_empty()
                && let Some((_, join_alias, spread)) = embeds.iter().find(|(name, _, _)| *name == filter.field.name)
                && let Operation::Is(is @ (IsValue::Null | IsValue::NotNull)) = filter.operation
            {
                needed.push(join_alias.clone());
                let column = if *spread { "pgrst_found" } else { "body" };
                let null = (is == IsValue::Null) != filter.negated;
                return Ok(format!("{}.{column} IS {}NULL", ident(join_alias), if null { "" } else { "NOT " }));
            }
            let (lhs, type_name) = field_expr(b, relation, alias, &filter.field)?;
            let condition = operation_sql(b, &lhs, &type_name, &filter.operation);
            Ok(if filter.negated { format!("NOT ({condition})") } else { condition })
        }
    }
}

fn pattern(op: Operator, value: &str) -> String {
    if matches!(op, Operator::Like | Operator::Ilike) { value.replace('*', "%") } else { value.to_owned() }
}

fn operation_sql(b: &mut Builder, lhs: &str, type_name: &str, operation: &Operation) -> String {
    match operation {
        Operation::Compare { op, value } if op.is_textual() => {
            format!("{lhs} {} {}", op.sql(), b.text(pattern(*op, value)))
        }
        Operation::Compare { op, value } => {
            format!("{lhs} {} CAST({} AS {type_name})", op.sql(), b.text(value.clone()))
        }
        Operation::Quantified { op, quantifier, values } => {
            let quantifier = match quantifier {
                Quantifier::Any => "ANY",
                Quantifier::All => "ALL",
            };
            if op.is_textual() {
                let values = values.iter().map(|v| pattern(*op, v)).collect();
                format!("{lhs} {} {quantifier}({}::text[])", op.sql(), b.texts(values))
            } else {
                format!("{lhs} {} {quantifier}(CAST({} AS {}))", op.sql(), b.texts(values.clone()), array_of(type_name))
            }
        }
        Operation::In(values) => format!("{lhs} = ANY(CAST({} AS {}))", b.texts(values.clone()), array_of(type_name)),
        Operation::Is(value) => format!(
            "{lhs} IS {}",
            match value {
                IsValue::Null => "NULL",
                IsValue::NotNull => "NOT NULL",
                IsValue::True => "TRUE",
                IsValue::False => "FALSE",
                IsValue::Unknown => "UNKNOWN",
            }
        ),
        Operation::IsDistinct(value) => {
            format!("{lhs} IS DISTINCT FROM CAST({} AS {type_name})", b.text(value.clone()))
        }
        Operation::Fts { kind, config, query } => {
            let config =
                config.as_ref().map(|c| format!("CAST({} AS regconfig), ", b.text(c.clone()))).unwrap_or_default();
            let document = if type_name == "tsvector" { lhs.to_owned() } else { format!("to_tsvector({config}{lhs})") };
            format!("{document} @@ {}({config}{})", kind.function(), b.text(query.clone()))
        }
    }
}

fn array_of(type_name: &str) -> String {
    if type_name.ends_with("[]") { type_name.to_owned() } else { format!("{type_name}[]") }
}

fn order_clause(
    b: &mut Builder,
    relation: &Relation,
    alias: &str,
    query: &Query,
    path: &[String],
) -> Result<String, RestError> {
    let terms: Vec<&OrderTerm> = query.order.iter().filter(|(p, _)| p == path).flat_map(|(_, t)| t).collect();
    if terms.is_empty() {
        return Ok(String::new());
    }
    let mut rendered = Vec::new();
    for term in terms {
        let (expr, _) = field_expr(b, relation, alias, &term.field)?;
        let direction = if term.descending { "DESC" } else { "ASC" };
        let nulls = match term.nulls {
            Some(Nulls::First) => " NULLS FIRST",
            Some(Nulls::Last) => " NULLS LAST",
            None => "",
        };
        rendered.push(format!("{expr} {direction}{nulls}"));
    }
    Ok(format!(" ORDER BY {}", rendered.join(", ")))
}

/// The filters of the resource of the URL, for `UPDATE` and `DELETE` (`"t0"` is the target).
pub fn mutation_filters(b: &mut Builder, relation: &Relation, query: &Query) -> Result<String, RestError> {
    let mut conditions = Vec::new();
    for (path, logic) in &query.filters {
        if !path.is_empty() {
            return Err(RestError::parse("filter", "filters on embedded resources do not apply to writes"));
        }
        conditions.push(logic_sql(b, relation, "t0", logic, &[], &mut Vec::new())?);
    }
    Ok(where_clause(&conditions))
}
