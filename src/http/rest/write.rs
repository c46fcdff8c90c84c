//! Writes: `POST` (insert and upsert), `PATCH` and `DELETE` of a table or view, each one
//! statement; what comes back follows `Prefer: return=`, with PostgREST's statuses,
//! `Content-Range`, `Location` and `Preference-Applied`.

use axum::body::Bytes;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::error::RestError;
use super::parse::{self, Query, Resolution, Return};
use super::schema::{Relation, ident};
use super::sql::{self, Builder, Source};
use super::{Request, insert};

impl Request<'_> {
    /// The JSON body of a write: an object or an array of objects (a form body becomes an
    /// object of strings).
    pub(super) fn payload(&self, body: &Bytes) -> Result<Value, RestError> {
        let content_type =
            self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/json" | "" => {
                if body.is_empty() {
                    return Ok(Value::Object(Map::new()));
                }
                serde_json::from_slice(body).map_err(|e| RestError::body(e.to_string()))
            }
            "application/x-www-form-urlencoded" => {
                let text = std::str::from_utf8(body).map_err(|_| RestError::body("the form is not UTF-8"))?;
                let object = parse::pairs(text)?.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
                Ok(Value::Object(object))
            }
            other => Err(RestError::content_type(other)),
        }
    }

    /// The columns a write sets: `columns=`, else the keys of the body (the same in every
    /// object), each a column of the relation.
    fn payload_columns(&self, relation: &Relation, query: &Query, payload: &Value) -> Result<Vec<String>, RestError> {
        let objects: Vec<&Map<String, Value>> = match payload {
            Value::Object(o) => vec![o],
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_object().ok_or_else(|| RestError::body("every element of the array must be an object")))
                .collect::<Result<_, _>>()?,
            _ => return Err(RestError::body("the body must be a JSON object or an array of objects")),
        };
        let columns: Vec<String> = match &query.columns {
            Some(columns) => columns.clone(),
            None => {
                let first: Vec<String> = objects.first().map(|o| o.keys().cloned().collect()).unwrap_or_default();
                for object in &objects[1.min(objects.len())..] {
                    if object.len() != first.len() || !first.iter().all(|k| object.contains_key(k)) {
                        return Err(RestError::body("All object keys must match"));
                    }
                }
                first
            }
        };
        for column in &columns {
            if relation.column(column).is_none() {
                return Err(RestError::no_payload_column(&relation.name, column));
            }
        }
        Ok(columns)
    }

    pub(super) async fn insert(
        &self,
        relation: &Relation,
        pairs: &[(String, String)],
        body: &Bytes,
    ) -> Result<Response, RestError> {
        let query = parse::query(pairs)?;
        let payload = self.payload(body)?;
        let columns = self.payload_columns(relation, &query, &payload)?;
        let rows = match &payload {
            Value::Array(items) => items.len(),
            _ => 1,
        };
        let mut b = Builder::default();
        let json = b.text(payload.to_string());
        let target = relation.qualified();
        let list: Vec<String> = columns.iter().map(|c| ident(c)).collect();
        let values: Vec<String> = if self.prefs.missing_default {
            columns
                .iter()
                .map(|c| {
                    let default =
                        relation.column(c).and_then(|col| col.default.clone()).unwrap_or_else(|| "NULL".into());
                    let key = b.text(c.clone());
                    format!("CASE WHEN pgrst_row.j::jsonb ? {key} THEN pgrst_rec.{} ELSE ({default}) END", ident(c))
                })
                .collect()
        } else {
            columns.iter().map(|c| format!("pgrst_rec.{}", ident(c))).collect()
        };
        let rows_sql = format!(
            "FROM json_array_elements(CASE WHEN json_typeof({json}::json) = 'array' THEN {json}::json ELSE json_build_array({json}::json) END) AS pgrst_row(j), \
             LATERAL json_populate_record(NULL::{target}, pgrst_row.j) AS pgrst_rec"
        );
        let conflict = match self.prefs.resolution {
            None => String::new(),
            Some(resolution) => {
                let keys = match &query.on_conflict {
                    Some(keys) => keys.clone(),
                    None => relation.primary_key.clone(),
                };
                if keys.is_empty() {
                    String::new()
                } else {
                    for key in &keys {
                        if relation.column(key).is_none() {
                            return Err(RestError::no_column(&relation.name, key));
                        }
                    }
                    // The conflict columns are equal already: setting them would only need an
                    // UPDATE privilege on the key that the caller may not have.
                    let mut set: Vec<String> = columns
                        .iter()
                        .filter(|c| !keys.contains(c))
                        .map(|c| format!("{0} = EXCLUDED.{0}", ident(c)))
                        .collect();
                    if set.is_empty() {
                        set = keys.iter().map(|c| format!("{0} = EXCLUDED.{0}", ident(c))).collect();
                    }
                    let keys: Vec<String> = keys.iter().map(|k| ident(k)).collect();
                    match resolution {
                        Resolution::IgnoreDuplicates => format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", ")),
                        Resolution::MergeDuplicates => {
                            format!(" ON CONFLICT ({}) DO UPDATE SET {}", keys.join(", "), set.join(", "))
                        }
                    }
                }
            }
        };
        let statement = match (columns.is_empty(), rows) {
            (false, _) => {
                format!(
                    "INSERT INTO {target} AS \"t0\" ({}) SELECT {} {rows_sql}{conflict}",
                    list.join(", "),
                    values.join(", ")
                )
            }
            // `[]`: nothing to insert.
            (true, 0) => format!(
                "INSERT INTO {target} AS \"t0\" SELECT (json_populate_record(NULL::{target}, '{{}}')).* WHERE false"
            ),
            // `{}`: one row of defaults.
            (true, 1) => format!("INSERT INTO {target} AS \"t0\" DEFAULT VALUES{conflict}"),
            (true, _) => return Err(RestError::body("objects with no keys can only be inserted one at a time")),
        };
        self.write(relation, &query, b, statement, StatusCode::CREATED).await
    }

    pub(super) async fn update(
        &self,
        relation: &Relation,
        pairs: &[(String, String)],
        body: &Bytes,
    ) -> Result<Response, RestError> {
        let query = parse::query(pairs)?;
        self.refuse_limits(&query)?;
        let payload = self.payload(body)?;
        if !payload.is_object() {
            return Err(RestError::body("a PATCH body must be one JSON object"));
        }
        let columns = self.payload_columns(relation, &query, &payload)?;
        let mut b = Builder::default();
        let json = b.text(payload.to_string());
        let target = relation.qualified();
        let filters = sql::mutation_filters(&mut b, relation, &query)?;
        if columns.is_empty() {
            // Nothing to set: nothing changes (and nothing is returned).
            let any = relation.columns.first().map(|c| ident(&c.name)).unwrap_or_default();
            let statement = format!("UPDATE {target} AS \"t0\" SET {any} = \"t0\".{any} WHERE false");
            return self.write(relation, &query, b, statement, StatusCode::OK).await;
        }
        let set: Vec<String> = columns.iter().map(|c| format!("{} = pgrst_rec.{}", ident(c), ident(c))).collect();
        let statement = format!(
            "UPDATE {target} AS \"t0\" SET {} FROM (SELECT * FROM json_populate_record(NULL::{target}, {json}::json)) AS pgrst_rec{filters}",
            set.join(", ")
        );
        self.write(relation, &query, b, statement, StatusCode::OK).await
    }

    pub(super) async fn delete(&self, relation: &Relation, pairs: &[(String, String)]) -> Result<Response, RestError> {
        let query = parse::query(pairs)?;
        self.refuse_limits(&query)?;
        let mut b = Builder::default();
        let filters = sql::mutation_filters(&mut b, relation, &query)?;
        let statement = format!("DELETE FROM {} AS \"t0\"{filters}", relation.qualified());
        self.write(relation, &query, b, statement, StatusCode::OK).await
    }

    fn refuse_limits(&self, query: &Query) -> Result<(), RestError> {
        if query.limit(&[]).is_some() || query.offset(&[]).is_some() {
            return Err(RestError::new(StatusCode::BAD_REQUEST, "PGRST127", "Feature not implemented")
                .details("limit and offset on PATCH and DELETE are not supported by kb"));
        }
        Ok(())
    }

    /// Runs an `INSERT`, `UPDATE` or `DELETE` and answers as `Prefer: return=` asks.
    async fn write(
        &self,
        relation: &Relation,
        query: &Query,
        mut b: Builder,
        statement: String,
        representation_status: StatusCode,
    ) -> Result<Response, RestError> {
        let is_insert = *self.method == Method::POST;
        let returning = match self.prefs.return_ {
            Some(Return::Representation) => Some(query.select.clone()),
            Some(Return::HeadersOnly) if is_insert && !relation.primary_key.is_empty() => Some(Some(
                relation
                    .primary_key
                    .iter()
                    .map(|k| parse::SelectItem::Column {
                        field: parse::Field { name: k.clone(), path: Vec::new() },
                        alias: None,
                        cast: None,
                    })
                    .collect(),
            )),
            _ => None,
        };
        let mut tx = self.begin(false).await?;
        let (affected, body) = match returning {
            None => (self.execute(&mut tx, &statement, &b.params).await? as i64, None),
            Some(select) => {
                let with = format!("{statement} RETURNING \"t0\".*");
                let read_query = Query { select, ..Query::default() };
                let source = Source { relation, from: "pgrst_source".into() };
                let read = sql::read(&mut b, self.cache, &source, &read_query, None, 0)?;
                let shape = self.body_shape();
                let text = sql::wrap(Some(&with), &read, false, shape);
                let answer = self.fetch(&mut tx, &text, &b.params).await?;
                if shape.is_object() && answer.page != 1 {
                    return Err(RestError::singular(answer.page));
                }
                (answer.page, answer.body)
            }
        };
        if self.prefs.strict
            && let Some(max) = self.prefs.max_affected
            && !is_insert
            && affected > max as i64
        {
            return Err(RestError::new(
                StatusCode::BAD_REQUEST,
                "PGRST124",
                "Query result exceeds max-affected preference constraint",
            )
            .details(format!("The query affects {affected} rows")));
        }
        self.finish(tx).await?;
        let total = if self.prefs.count.is_some() { affected.to_string() } else { "*".to_owned() };
        let range = match *self.method {
            Method::PATCH if affected > 0 => format!("0-{}/{total}", affected - 1),
            _ => format!("*/{total}"),
        };
        let mut response = match (self.prefs.return_, body) {
            (Some(Return::Representation), Some(body)) => {
                self.body_response(representation_status, body, self.body_shape())
            }
            (Some(Return::HeadersOnly), Some(body)) => {
                let mut response = StatusCode::CREATED.into_response();
                if let Some(location) = location(relation, &body) {
                    insert(&mut response, header::LOCATION, &location);
                }
                response
            }
            _ if is_insert => StatusCode::CREATED.into_response(),
            _ => StatusCode::NO_CONTENT.into_response(),
        };
        insert(&mut response, header::CONTENT_RANGE, &range);
        self.applied(&mut response, true);
        Ok(response)
    }
}

/// `Location` of one inserted row: its primary key as filters.
fn location(relation: &Relation, body: &str) -> Option<String> {
    let rows: Value = serde_json::from_str(body).ok()?;
    let row = match &rows {
        Value::Array(rows) if rows.len() == 1 => rows[0].as_object()?,
        Value::Object(row) => row,
        _ => return None,
    };
    let filters: Vec<String> = relation
        .primary_key
        .iter()
        .map(|k| match row.get(k) {
            Some(Value::Null) | None => format!("{}=is.null", encode(k)),
            Some(Value::String(s)) => format!("{}=eq.{}", encode(k), encode(s)),
            Some(other) => format!("{}=eq.{}", encode(k), encode(&other.to_string())),
        })
        .collect();
    Some(format!("/{}?{}", relation.name, filters.join("&")))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
