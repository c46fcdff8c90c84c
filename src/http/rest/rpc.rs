//! `/rpc/{fn}`: a function of an exposed schema, chosen by its argument names, called with
//! a JSON body (POST) or query-string arguments (GET, HEAD; read only), its rows read like a
//! table's (`select`, filters, `order`, `limit`, counts) or its value returned as it is.

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::Request;
use super::error::RestError;
use super::parse;
use super::schema::{Function, Relation, Returns, ident};
use super::sql::{Body, Builder, Source};

impl Request<'_> {
    /// `/rpc/{name}`: the function of that name whose parameters the arguments name.
    pub(super) async fn call(
        &self,
        name: &str,
        pairs: &[(String, String)],
        body: &Bytes,
    ) -> Result<Response, RestError> {
        let candidates: &[Function] =
            self.cache.functions.get(&(self.schema.to_owned(), name.to_owned())).map(Vec::as_slice).unwrap_or(&[]);
        let post = *self.method == Method::POST;
        // GET: the parameters named like an argument of some candidate are arguments.
        let is_argument = |key: &str| candidates.iter().any(|f| f.arguments.iter().any(|a| a.name == key));
        let (arguments, rest): (Vec<_>, Vec<_>) =
            pairs.iter().cloned().partition(|(key, _)| !post && is_argument(key) && !is_reserved(key));
        let payload = if post { Some(self.payload(body)?) } else { None };
        let names: Vec<String> = match &payload {
            Some(Value::Object(object)) => object.keys().cloned().collect(),
            Some(_) => Vec::new(),
            None => arguments.iter().map(|(k, _)| k.clone()).collect(),
        };
        let function = choose(candidates, self.schema, name, &names, payload.as_ref())?;
        let query = parse::query(&rest)?;
        let mut b = Builder::default();
        let call = if function.takes_body() {
            let json = b.text(payload.as_ref().map(Value::to_string).unwrap_or_else(|| "{}".into()));
            format!(
                "{}.{}(CAST({json} AS {}))",
                ident(&function.schema),
                ident(&function.name),
                function.arguments[0].type_name
            )
        } else {
            let mut named = Vec::new();
            for argument in function.arguments.iter().filter(|a| names.contains(&a.name)) {
                let value = match &payload {
                    Some(_) => format!("pgrst_args.{}", ident(&argument.name)),
                    None => {
                        let value = arguments
                            .iter()
                            .find(|(k, _)| *k == argument.name)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default();
                        format!("CAST({} AS {})", b.text(value), argument.type_name)
                    }
                };
                named.push(format!("{} := {value}", ident(&argument.name)));
            }
            format!("{}.{}({})", ident(&function.schema), ident(&function.name), named.join(", "))
        };
        let from_args = match &payload {
            Some(payload) if !function.takes_body() && !names.is_empty() => {
                let json = b.text(payload.to_string());
                let columns: Vec<String> = function
                    .arguments
                    .iter()
                    .filter(|a| names.contains(&a.name))
                    .map(|a| format!("{} {}", ident(&a.name), a.type_name))
                    .collect();
                format!("json_to_record({json}::json) AS pgrst_args({}), LATERAL ", columns.join(", "))
            }
            _ => String::new(),
        };
        let read_only = !post || function.volatility != 'v';
        let (offset, limit) = self.page(&query)?;
        match &function.returns {
            Returns::Void => {
                let mut tx = self.begin(read_only).await?;
                let from = if from_args.is_empty() {
                    String::new()
                } else {
                    format!(" FROM {}", from_args.trim_end_matches(", LATERAL "))
                };
                self.execute(&mut tx, &format!("SELECT {call}{from}"), &b.params).await?;
                self.finish(tx).await?;
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            Returns::Scalar(_) => {
                let with = format!("SELECT pgrst_call.pgrst_scalar FROM {from_args}{call} AS pgrst_call(pgrst_scalar)");
                let shape = if function.set { Body::ScalarArray } else { Body::Scalar };
                let text = format!(
                    "WITH pgrst_source AS ({with}) SELECT NULL::bigint AS total, count(*) AS page, {} AS body FROM (SELECT * FROM pgrst_source{}{}) _pgrst_t",
                    match shape {
                        Body::ScalarArray => "coalesce(json_agg(_pgrst_t.pgrst_scalar), '[]')::text",
                        _ => "coalesce(json_agg(_pgrst_t.pgrst_scalar)->0, 'null')::text",
                    },
                    limit.filter(|_| function.set).map(|n| format!(" LIMIT {n}")).unwrap_or_default(),
                    if function.set && offset > 0 { format!(" OFFSET {offset}") } else { String::new() },
                );
                let mut tx = self.begin(read_only).await?;
                let answer = self.fetch(&mut tx, &text, &b.params).await?;
                self.finish(tx).await?;
                Ok(self.body_response(StatusCode::OK, answer.body.unwrap_or_else(|| "null".into()), Body::Array))
            }
            Returns::Rows { columns, relation } => {
                // Rows of a table's type can embed that table's relationships.
                let own = relation.as_ref().and_then(|(s, n)| self.cache.relation(s, n));
                let pseudo = Relation {
                    schema: self.schema.to_owned(),
                    name: function.name.clone(),
                    kind: 'c',
                    columns: columns.clone(),
                    primary_key: Vec::new(),
                    unique: Vec::new(),
                    comment: None,
                    roles: Vec::new(),
                    writable: 0,
                };
                let relation = own.unwrap_or(&pseudo);
                let with = format!("SELECT pgrst_call.* FROM {from_args}{call} AS pgrst_call");
                let source = Source { relation, from: "pgrst_source".into() };
                let shape = if function.set { Body::Array } else { Body::Object };
                let (offset, limit) = if function.set { (offset, limit) } else { (0, None) };
                let params = std::mem::take(&mut b.params);
                self.read_from(&source, Some((&with, params)), &query, offset, limit, read_only, shape).await
            }
        }
    }
}

fn is_reserved(key: &str) -> bool {
    matches!(
        key,
        "select" | "order" | "limit" | "offset" | "or" | "and" | "not.or" | "not.and" | "columns" | "on_conflict"
    )
}

/// Overload resolution by argument names, as PostgREST does it: a function matches when the
/// names cover its required parameters and name no other; failing that, a function with one
/// unnamed json or jsonb parameter takes a POST body whole.
fn choose<'a>(
    candidates: &'a [Function],
    schema: &str,
    name: &str,
    names: &[String],
    payload: Option<&Value>,
) -> Result<&'a Function, RestError> {
    let matching: Vec<&Function> = candidates
        .iter()
        .filter(|f| !f.takes_body())
        .filter(|f| {
            names.iter().all(|n| f.arguments.iter().any(|a| a.name == *n))
                && f.arguments.iter().all(|a| a.has_default || names.contains(&a.name))
        })
        .collect();
    let matching = if matching.is_empty() && payload.is_some() {
        candidates.iter().filter(|f| f.takes_body()).collect()
    } else {
        matching
    };
    match matching.as_slice() {
        [one] => Ok(one),
        [] => {
            let mut sorted = names.to_vec();
            sorted.sort();
            let (message, searched) = if sorted.is_empty() {
                (
                    format!("Could not find the function {schema}.{name} without parameters in the schema cache"),
                    "without parameters".to_owned(),
                )
            } else {
                (
                    format!("Could not find the function {schema}.{name}({}) in the schema cache", sorted.join(", ")),
                    format!("with parameter{} {}", if sorted.len() == 1 { "" } else { "s" }, sorted.join(", ")),
                )
            };
            let json = if payload.is_some() { " or with a single unnamed json/jsonb parameter" } else { "" };
            Err(RestError::new(StatusCode::NOT_FOUND, "PGRST202", message).details(format!(
                "Searched for the function {schema}.{name} {searched}{json}, but no matches were found in the schema cache."
            )))
        }
        several => {
            let described: Vec<String> = several
                .iter()
                .map(|f| {
                    let args: Vec<String> =
                        f.arguments.iter().map(|a| format!("{} => {}", a.name, a.type_name)).collect();
                    format!("{schema}.{name}({})", args.join(", "))
                })
                .collect();
            Err(RestError::new(
                StatusCode::MULTIPLE_CHOICES,
                "PGRST203",
                format!("Could not choose the best candidate function between: {}", described.join(", ")),
            )
            .hint("Try renaming the parameters or the function itself in the database so function overloading can be resolved"))
        }
    }
}
