//! Resource embedding: which foreign key joins a resource to the one it embeds, and with
//! what cardinality, as PostgREST decides it: many-to-one and one-to-one through a foreign
//! key of either side, one-to-many through a foreign key of the embedded table, and
//! many-to-many through a junction table whose foreign keys to both sides are covered by one
//! of its unique keys. A hint (`rel!hint`) names a foreign key, one of its columns, or the
//! junction table.

use axum::http::StatusCode;
use serde_json::json;

use super::error::RestError;
use super::schema::{ForeignKey, Relation, SchemaCache};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cardinality {
    ManyToOne,
    OneToMany,
    OneToOne,
    ManyToMany,
}

impl Cardinality {
    pub fn to_one(self) -> bool {
        matches!(self, Cardinality::ManyToOne | Cardinality::OneToOne)
    }

    fn name(self) -> &'static str {
        match self {
            Cardinality::ManyToOne => "many-to-one",
            Cardinality::OneToMany => "one-to-many",
            Cardinality::OneToOne => "one-to-one",
            Cardinality::ManyToMany => "many-to-many",
        }
    }
}

/// Many-to-many: the junction, its `(junction column, parent column)` pairs and its
/// `(junction column, embedded column)` pairs.
pub type Junction<'a> = (&'a Relation, Vec<(String, String)>, Vec<(String, String)>);

/// How an embedded relation joins its parent.
#[derive(Debug, Clone)]
pub struct Relationship<'a> {
    pub target: &'a Relation,
    pub cardinality: Cardinality,
    /// `(parent column, embedded column)` pairs that must be equal (not many-to-many).
    pub on: Vec<(String, String)>,
    pub junction: Option<Junction<'a>>,
    /// The foreign key (or junction) that decided it, for hints and error details.
    name: String,
}

fn pairs(a: &[String], b: &[String]) -> Vec<(String, String)> {
    a.iter().cloned().zip(b.iter().cloned()).collect()
}

fn names_key(fk: &ForeignKey, hint: &str) -> bool {
    fk.name == hint || fk.columns == [hint] || fk.ref_columns == [hint]
}

/// The one relationship from `source` to the resource called `name` (a table or view name,
/// or a foreign key column of `source`), narrowed by `hint`.
pub fn relationship<'a>(
    cache: &'a SchemaCache,
    source: &Relation,
    name: &str,
    hint: Option<&str>,
) -> Result<Relationship<'a>, RestError> {
    let mut found: Vec<Relationship<'a>> = Vec::new();
    let schema = &source.schema;
    for fk in &cache.foreign_keys {
        // Many-to-one (or one-to-one): a key of the source points at the target.
        if fk.schema == *schema
            && fk.table == source.name
            && (fk.ref_table == name || fk.columns == [name])
            && hint.is_none_or(|h| names_key(fk, h))
            && let Some(target) = cache.relation(&fk.ref_schema, &fk.ref_table)
        {
            let cardinality =
                if source.is_unique(&fk.columns) { Cardinality::OneToOne } else { Cardinality::ManyToOne };
            found.push(Relationship {
                target,
                cardinality,
                on: pairs(&fk.columns, &fk.ref_columns),
                junction: None,
                name: fk.name.clone(),
            });
        }
        // One-to-many (or one-to-one): a key of the target points at the source.
        if fk.ref_schema == *schema
            && fk.ref_table == source.name
            && fk.table == name
            && hint.is_none_or(|h| names_key(fk, h))
            && let Some(target) = cache.relation(&fk.schema, &fk.table)
        {
            let cardinality =
                if target.is_unique(&fk.columns) { Cardinality::OneToOne } else { Cardinality::OneToMany };
            found.push(Relationship {
                target,
                cardinality,
                on: pairs(&fk.ref_columns, &fk.columns),
                junction: None,
                name: fk.name.clone(),
            });
        }
    }
    // Many-to-many: a junction with a key to each side.
    for to_source in cache.foreign_keys.iter().filter(|fk| fk.ref_schema == *schema && fk.ref_table == source.name) {
        for to_target in cache.foreign_keys.iter().filter(|fk| {
            fk.schema == to_source.schema
                && fk.table == to_source.table
                && fk.ref_table == name
                && fk.name != to_source.name
        }) {
            let Some(junction) = cache.relation(&to_source.schema, &to_source.table) else { continue };
            let Some(target) = cache.relation(&to_target.ref_schema, &to_target.ref_table) else { continue };
            let mut covered = to_source.columns.clone();
            covered.extend(to_target.columns.iter().cloned());
            if !junction.is_unique(&covered) {
                continue;
            }
            if let Some(h) = hint
                && h != junction.name
                && !names_key(to_source, h)
                && !names_key(to_target, h)
            {
                continue;
            }
            found.push(Relationship {
                target,
                cardinality: Cardinality::ManyToMany,
                on: Vec::new(),
                junction: Some((
                    junction,
                    pairs(&to_source.columns, &to_source.ref_columns),
                    pairs(&to_target.columns, &to_target.ref_columns),
                )),
                name: junction.name.clone(),
            });
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "PGRST200",
            format!("Could not find a relationship between '{}' and '{name}' in the schema cache", source.name),
        )
        .details(format!(
            "Searched for a foreign key relationship between '{}' and '{name}'{} in the schema '{schema}', but no matches were found.",
            source.name,
            hint.map(|h| format!(" using the hint '{h}'")).unwrap_or_default()
        ))),
        _ => {
            let details: Vec<_> = found
                .iter()
                .map(|r| {
                    json!({
                        "cardinality": r.cardinality.name(),
                        "embedding": format!("{} with {}", source.name, r.target.name),
                        "relationship": r.name,
                    })
                })
                .collect();
            let options: Vec<String> = found.iter().map(|r| format!("'{name}!{}'", r.name)).collect();
            Err(RestError::new(
                StatusCode::MULTIPLE_CHOICES,
                "PGRST201",
                format!("Could not embed because more than one relationship was found for '{}' and '{name}'", source.name),
            )
            .details(details)
            .hint(format!(
                "Try changing '{name}' to one of the following: {}. Find the desired relationship in the 'details' key.",
                options.join(", ")
            )))
        }
    }
}
