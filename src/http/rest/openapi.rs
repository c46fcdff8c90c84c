//! `GET /rest/v1/`: the OpenAPI (Swagger 2.0) document of the exposed schema, built from the
//! schema cache as PostgREST builds it: a path per table and view with its operations, a
//! path per function under `/rpc/`, and a definition per table with its columns.

use axum::http::{HeaderMap, header};
use serde_json::{Map, Value, json};

use super::schema::{Column, DELETABLE, INSERTABLE, Returns, SchemaCache, UPDATABLE};

/// JSON Schema type and format of a PostgreSQL type.
fn json_type(type_name: &str) -> (&'static str, Option<&str>) {
    if type_name.ends_with("[]") {
        return ("array", None);
    }
    match type_name {
        "smallint" | "integer" | "bigint" => ("integer", Some(type_name)),
        "real" | "double precision" | "numeric" => ("number", Some(type_name)),
        "boolean" => ("boolean", Some(type_name)),
        "json" | "jsonb" => ("object", Some(type_name)),
        _ => ("string", Some(type_name)),
    }
}

fn property(column: &Column) -> Value {
    let (kind, format) = json_type(&column.type_name);
    let mut property = Map::new();
    property.insert("type".into(), kind.into());
    if kind == "object" {
        property.remove("type");
    }
    if let Some(format) = format {
        property.insert("format".into(), format.into());
    }
    if kind == "array" {
        property.insert("items".into(), json!({ "type": "string" }));
    }
    let mut description = column.comment.clone().unwrap_or_default();
    if let Some(default) = &column.default {
        property.insert("default".into(), default.clone().into());
    }
    if column.generated {
        description = format!("{description} (generated)").trim().to_owned();
    }
    if !description.is_empty() {
        property.insert("description".into(), description.into());
    }
    Value::Object(property)
}

/// The document as `role` sees it: only what it has privileges on (PostgREST's default
/// `openapi-mode`, follow-privileges).
pub fn document(cache: &SchemaCache, schema: &str, role: &str, headers: &HeaderMap) -> Value {
    let mut document = build(cache, schema, role, headers);
    drop_nulls(&mut document);
    document
}

/// Removes keys whose value is null (an absent comment): OpenAPI wants them absent.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn build(cache: &SchemaCache, schema: &str, role: &str, headers: &HeaderMap) -> Value {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let mut paths = Map::new();
    let mut definitions = Map::new();
    paths.insert("/".into(), json!({ "get": { "tags": ["Introspection"], "summary": "OpenAPI description (this document)",
        "produces": ["application/openapi+json", "application/json"], "responses": { "200": { "description": "OK" } } } }));
    let mut relations: Vec<_> = cache
        .relations
        .values()
        .filter(|r| r.schema == schema && r.kind != 'c' && r.roles.iter().any(|r| r == role))
        .collect();
    relations.sort_by(|a, b| a.name.cmp(&b.name));
    for relation in relations {
        let name = &relation.name;
        let reference = json!({ "$ref": format!("#/definitions/{name}") });
        let filters: Vec<Value> = relation
            .columns
            .iter()
            .map(|c| json!({ "name": c.name, "in": "query", "required": false, "type": "string", "format": c.type_name }))
            .collect();
        let mut read_parameters = vec![
            json!({ "$ref": "#/parameters/select" }),
            json!({ "$ref": "#/parameters/order" }),
            json!({ "$ref": "#/parameters/range" }),
            json!({ "$ref": "#/parameters/offset" }),
            json!({ "$ref": "#/parameters/limit" }),
            json!({ "$ref": "#/parameters/preferCount" }),
        ];
        read_parameters.extend(filters.iter().cloned());
        let body = json!({ "name": name, "in": "body", "required": false, "schema": reference });
        let mut item = Map::new();
        item.insert(
            "get".into(),
            json!({ "tags": [name], "summary": relation.comment, "parameters": read_parameters,
                "responses": { "200": { "description": "OK", "schema": { "type": "array", "items": reference } },
                               "206": { "description": "Partial Content" } } }),
        );
        if relation.writable & INSERTABLE != 0 {
            item.insert(
                "post".into(),
                json!({ "tags": [name], "parameters": [body, { "$ref": "#/parameters/select" }, { "$ref": "#/parameters/preferPost" }],
                    "responses": { "201": { "description": "Created" } } }),
            );
        }
        if relation.writable & UPDATABLE != 0 {
            let mut write_parameters = vec![body.clone(), json!({ "$ref": "#/parameters/preferReturn" })];
            write_parameters.extend(filters.iter().cloned());
            item.insert(
                "patch".into(),
                json!({ "tags": [name], "parameters": write_parameters, "responses": { "204": { "description": "No Content" } } }),
            );
        }
        if relation.writable & DELETABLE != 0 {
            let mut delete_parameters = vec![json!({ "$ref": "#/parameters/preferReturn" })];
            delete_parameters.extend(filters);
            item.insert(
                "delete".into(),
                json!({ "tags": [name], "parameters": delete_parameters, "responses": { "204": { "description": "No Content" } } }),
            );
        }
        paths.insert(format!("/{name}"), Value::Object(item));
        let properties: Map<String, Value> = relation.columns.iter().map(|c| (c.name.clone(), property(c))).collect();
        let required: Vec<&str> = relation
            .columns
            .iter()
            .filter(|c| !c.nullable && c.default.is_none() && !c.generated)
            .map(|c| c.name.as_str())
            .collect();
        definitions.insert(
            name.clone(),
            json!({ "type": "object", "description": relation.comment, "required": required, "properties": properties }),
        );
    }
    let mut functions: Vec<_> = cache
        .functions
        .values()
        .flatten()
        .filter(|f| f.schema == schema && f.roles.iter().any(|r| r == role))
        .collect();
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    for function in functions {
        let properties: Map<String, Value> = function
            .arguments
            .iter()
            .filter(|a| !a.name.is_empty())
            .map(|a| {
                let (kind, format) = json_type(&a.type_name);
                (a.name.clone(), json!({ "type": kind, "format": format.unwrap_or(&a.type_name) }))
            })
            .collect();
        let required: Vec<&str> = function
            .arguments
            .iter()
            .filter(|a| !a.has_default && !a.name.is_empty())
            .map(|a| a.name.as_str())
            .collect();
        let returns = match &function.returns {
            Returns::Void => json!({ "204": { "description": "No Content" } }),
            _ => json!({ "200": { "description": "OK" } }),
        };
        let mut item = Map::new();
        item.insert(
            "post".into(),
            json!({ "tags": ["(rpc) ".to_owned() + &function.name], "summary": function.comment,
                "parameters": [{ "name": "args", "in": "body", "required": true,
                                 "schema": { "type": "object", "required": required, "properties": properties } },
                               { "$ref": "#/parameters/preferParams" }],
                "produces": ["application/json", "application/vnd.pgrst.object+json"],
                "responses": returns }),
        );
        if function.volatility != 'v' {
            let parameters: Vec<Value> = function
                .arguments
                .iter()
                .filter(|a| !a.name.is_empty())
                .map(|a| json!({ "name": a.name, "in": "query", "required": !a.has_default, "type": "string", "format": a.type_name }))
                .collect();
            item.insert(
                "get".into(),
                json!({ "tags": ["(rpc) ".to_owned() + &function.name], "summary": function.comment,
                    "parameters": parameters, "responses": returns }),
            );
        }
        paths.insert(format!("/rpc/{}", function.name), Value::Object(item));
    }
    json!({
        "swagger": "2.0",
        "info": { "title": "kb REST API (PostgREST-compatible)", "description": format!("The `{schema}` schema, as row level security lets each caller use it."),
                  "version": env!("CARGO_PKG_VERSION") },
        "host": host,
        "basePath": "/rest/v1",
        "schemes": ["http", "https"],
        "consumes": ["application/json", "application/vnd.pgrst.object+json", "text/csv"],
        "produces": ["application/json", "application/vnd.pgrst.object+json", "text/csv"],
        "paths": paths,
        "definitions": definitions,
        "parameters": {
            "select": { "name": "select", "in": "query", "required": false, "type": "string", "description": "Filtering Columns" },
            "order": { "name": "order", "in": "query", "required": false, "type": "string", "description": "Ordering" },
            "range": { "name": "Range", "in": "header", "required": false, "type": "string", "description": "Limiting and Pagination" },
            "offset": { "name": "offset", "in": "query", "required": false, "type": "string", "description": "Limiting and Pagination" },
            "limit": { "name": "limit", "in": "query", "required": false, "type": "string", "description": "Limiting and Pagination" },
            "preferCount": { "name": "Prefer", "in": "header", "required": false, "type": "string", "enum": ["count=none", "count=exact", "count=planned", "count=estimated"] },
            "preferReturn": { "name": "Prefer", "in": "header", "required": false, "type": "string", "enum": ["return=representation", "return=minimal", "return=none"] },
            "preferPost": { "name": "Prefer", "in": "header", "required": false, "type": "string",
                            "enum": ["return=representation", "return=minimal", "return=none", "resolution=ignore-duplicates", "resolution=merge-duplicates"] },
            "preferParams": { "name": "Prefer", "in": "header", "required": false, "type": "string", "enum": ["params=single-object"] },
        },
    })
}
