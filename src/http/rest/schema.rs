//! The schema cache: the tables, views, columns, keys, foreign keys and functions of the
//! exposed schemas, read from the catalog at start, after `NOTIFY pgrst, 'reload schema'`
//! (which `kb migrate` sends), and on demand. Every identifier a request names is checked
//! against it before any SQL is written.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

/// The channel PostgREST listens on; `reload schema` (or an empty payload) reloads.
pub const CHANNEL: &str = "pgrst";

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// The type, as `format_type` writes it without modifiers: usable in a cast.
    pub type_name: String,
    pub nullable: bool,
    /// The default expression, as the catalog prints it.
    pub default: Option<String>,
    /// Filled by the database (identity or generated): may be absent from any insert.
    pub generated: bool,
    pub comment: Option<String>,
}

impl Column {
    pub fn is_json(&self) -> bool {
        matches!(self.type_name.as_str(), "json" | "jsonb")
    }
}

#[derive(Debug, Clone)]
pub struct Relation {
    pub schema: String,
    pub name: String,
    /// `r` table, `p` partitioned table, `v` view, `m` materialized view, `f` foreign
    /// table, `c` composite type (a function's result only).
    pub kind: char,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    /// Column sets that are unique (the primary key among them).
    pub unique: Vec<Vec<String>>,
    pub comment: Option<String>,
    /// The API roles with any privilege on it (the OpenAPI document shows each role its own).
    pub roles: Vec<String>,
    /// `pg_relation_is_updatable`'s bits: 8 insert, 4 update, 16 delete (a view that is not
    /// automatically updatable and has no rules or triggers takes no writes).
    pub writable: i32,
}

/// The `writable` bits of each command.
pub const INSERTABLE: i32 = 8;
pub const UPDATABLE: i32 = 4;
pub const DELETABLE: i32 = 16;

impl Relation {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn is_unique(&self, columns: &[String]) -> bool {
        self.unique.iter().any(|key| !key.is_empty() && key.iter().all(|k| columns.contains(k)))
    }

    pub fn qualified(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }
}

#[derive(Debug, Clone)]
pub struct ForeignKey {
    pub name: String,
    pub schema: String,
    pub table: String,
    pub columns: Vec<String>,
    pub ref_schema: String,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Argument {
    pub name: String,
    pub type_name: String,
    pub has_default: bool,
}

/// What a function gives back.
#[derive(Debug, Clone)]
pub enum Returns {
    Void,
    /// One value (or a set of them) of a type that has no columns.
    Scalar(String),
    /// Rows with columns: a table's, a composite type's or the function's OUT parameters;
    /// `relation` names the table or view whose type the rows have.
    Rows {
        columns: Vec<Column>,
        relation: Option<(String, String)>,
    },
}

#[derive(Debug, Clone)]
pub struct Function {
    pub schema: String,
    pub name: String,
    pub arguments: Vec<Argument>,
    pub returns: Returns,
    /// `SETOF` or `TABLE`: many rows (or values).
    pub set: bool,
    /// `v` volatile, `s` stable, `i` immutable.
    pub volatility: char,
    pub comment: Option<String>,
    /// The API roles that may call it.
    pub roles: Vec<String>,
}

impl Function {
    /// A single unnamed parameter of type json or jsonb takes the whole body.
    pub fn takes_body(&self) -> bool {
        matches!(self.arguments.as_slice(), [a] if a.name.is_empty() && matches!(a.type_name.as_str(), "json" | "jsonb"))
    }
}

#[derive(Debug, Clone, Default)]
pub struct SchemaCache {
    /// The exposed schemas, the first being the default.
    pub schemas: Vec<String>,
    pub relations: HashMap<(String, String), Relation>,
    pub foreign_keys: Vec<ForeignKey>,
    pub functions: HashMap<(String, String), Vec<Function>>,
}

impl SchemaCache {
    pub fn relation(&self, schema: &str, name: &str) -> Option<&Relation> {
        self.relations.get(&(schema.to_owned(), name.to_owned())).filter(|r| r.kind != 'c')
    }

    /// Reads the catalog, all of it from one snapshot: a load that overlaps DDL sees either
    /// none of a change or all of it (never, say, a new function without the table it returns).
    pub async fn load(pool: &PgPool, schemas: &[String]) -> Result<SchemaCache, sqlx::Error> {
        let mut tx = pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        let mut relations: HashMap<(String, String), Relation> = HashMap::new();
        type RelationRow = (String, String, String, Option<String>, Vec<String>, i32);
        let rows: Vec<RelationRow> = sqlx::query_as(
            "SELECT n.nspname::text, c.relname::text, c.relkind::text, obj_description(c.oid, 'pg_class'),
                    array(SELECT r FROM unnest(ARRAY['anon', 'authenticated', 'service_role']) r
                          WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
                            AND has_table_privilege(r, c.oid, 'SELECT, INSERT, UPDATE, DELETE')),
                    pg_relation_is_updatable(c.oid, true)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                OR c.oid IN (SELECT t.typrelid FROM pg_proc p JOIN pg_type t ON t.oid = p.prorettype
                             JOIN pg_namespace pn ON pn.oid = p.pronamespace WHERE pn.nspname = ANY($1))",
        )
        .bind(schemas)
        .fetch_all(&mut *tx)
        .await?;
        for (schema, name, kind, comment, roles, writable) in rows {
            let kind = kind.chars().next().unwrap_or('r');
            let relation = Relation {
                schema: schema.clone(),
                name: name.clone(),
                kind,
                columns: Vec::new(),
                primary_key: Vec::new(),
                unique: Vec::new(),
                comment,
                roles,
                writable,
            };
            relations.insert((schema, name), relation);
        }
        type ColumnRow = (String, String, String, String, bool, Option<String>, bool, Option<String>);
        let columns: Vec<ColumnRow> = sqlx::query_as(
            "SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, NULL),
                    NOT a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
                    a.attidentity <> '' OR a.attgenerated <> '', col_description(c.oid, a.attnum)
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attnum > 0 AND NOT a.attisdropped AND c.oid = ANY($1::regclass[])
             ORDER BY c.oid, a.attnum",
        )
        .bind(relations.values().map(|r| r.qualified()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        for (schema, table, name, type_name, nullable, default, generated, comment) in columns {
            if let Some(relation) = relations.get_mut(&(schema, table)) {
                relation.columns.push(Column { name, type_name, nullable, default, generated, comment });
            }
        }
        let keys: Vec<(String, String, bool, Vec<String>)> = sqlx::query_as(
            "SELECT n.nspname::text, c.relname::text, i.indisprimary,
                    array(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, o)
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.o)
             FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY($1) AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL",
        )
        .bind(schemas)
        .fetch_all(&mut *tx)
        .await?;
        for (schema, table, primary, columns) in keys {
            if let Some(relation) = relations.get_mut(&(schema, table)) {
                if primary {
                    relation.primary_key = columns.clone();
                }
                relation.unique.push(columns);
            }
        }
        type KeyRow = (String, String, String, Vec<String>, String, String, Vec<String>);
        let foreign: Vec<KeyRow> = sqlx::query_as(
            "SELECT con.conname::text, ns.nspname::text, cs.relname::text,
                    array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
                          JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o),
                    nt.nspname::text, ct.relname::text,
                    array(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
                          JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o)
             FROM pg_constraint con
             JOIN pg_class cs ON cs.oid = con.conrelid JOIN pg_namespace ns ON ns.oid = cs.relnamespace
             JOIN pg_class ct ON ct.oid = con.confrelid JOIN pg_namespace nt ON nt.oid = ct.relnamespace
             WHERE con.contype = 'f' AND ns.nspname = ANY($1) AND nt.nspname = ANY($1)
             ORDER BY con.conname",
        )
        .bind(schemas)
        .fetch_all(&mut *tx)
        .await?;
        let foreign_keys = foreign
            .into_iter()
            .map(|(name, schema, table, columns, ref_schema, ref_table, ref_columns)| ForeignKey {
                name,
                schema,
                table,
                columns,
                ref_schema,
                ref_table,
                ref_columns,
            })
            .collect();
        let functions = load_functions(&mut tx, schemas, &relations).await?;
        tx.commit().await?;
        Ok(SchemaCache { schemas: schemas.to_vec(), relations, foreign_keys, functions })
    }
}

async fn load_functions(
    conn: &mut sqlx::PgConnection,
    schemas: &[String],
    relations: &HashMap<(String, String), Relation>,
) -> Result<HashMap<(String, String), Vec<Function>>, sqlx::Error> {
    type FunctionRow = (
        String,
        String,
        Vec<String>,
        Vec<String>,
        Vec<String>,
        i16,
        bool,
        String,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
        Vec<String>,
    );
    let rows: Vec<FunctionRow> = sqlx::query_as(
        "SELECT n.nspname::text, p.proname::text,
                coalesce(p.proargnames, '{}')::text[],
                coalesce(p.proargmodes::text[], array_fill('i'::text, ARRAY[p.pronargs::int])),
                array(SELECT format_type(t, NULL) FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]))
                      WITH ORDINALITY u(t, o) ORDER BY u.o),
                p.pronargdefaults, p.proretset, format_type(p.prorettype, NULL),
                rn.nspname::text, rc.relname::text, p.provolatile::text, obj_description(p.oid, 'pg_proc'),
                array(SELECT r FROM unnest(ARRAY['anon', 'authenticated', 'service_role']) r
                      WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
                        AND has_function_privilege(r, p.oid, 'EXECUTE'))
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         JOIN pg_type rt ON rt.oid = p.prorettype
         LEFT JOIN pg_class rc ON rc.oid = rt.typrelid LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
         WHERE n.nspname = ANY($1) AND p.prokind = 'f' AND p.provariadic = 0
           AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype, 'internal'::regtype)
           AND NOT 'internal'::regtype = ANY(p.proargtypes::oid[])",
    )
    .bind(schemas)
    .fetch_all(conn)
    .await?;
    let mut functions: HashMap<(String, String), Vec<Function>> = HashMap::new();
    for (
        schema,
        name,
        names,
        modes,
        types,
        defaults,
        set,
        return_type,
        ret_schema,
        ret_table,
        volatility,
        comment,
        roles,
    ) in rows
    {
        let mut arguments = Vec::new();
        let mut out = Vec::new();
        for (i, (mode, type_name)) in modes.iter().zip(&types).enumerate() {
            let arg_name = names.get(i).cloned().unwrap_or_default();
            if matches!(mode.as_str(), "i" | "b" | "v") {
                arguments.push(Argument { name: arg_name.clone(), type_name: type_name.clone(), has_default: false });
            }
            if matches!(mode.as_str(), "o" | "b" | "t") {
                out.push(Column {
                    name: arg_name,
                    type_name: type_name.clone(),
                    nullable: true,
                    default: None,
                    generated: false,
                    comment: None,
                });
            }
        }
        let first_default = arguments.len().saturating_sub(defaults.max(0) as usize);
        for argument in &mut arguments[first_default..] {
            argument.has_default = true;
        }
        let returns = if return_type == "void" {
            Returns::Void
        } else if let (Some(s), Some(t)) = (ret_schema, ret_table) {
            match relations.get(&(s.clone(), t.clone())) {
                Some(relation) => Returns::Rows { columns: relation.columns.clone(), relation: Some((s, t)) },
                None => Returns::Scalar(return_type),
            }
        } else if !out.is_empty() && return_type == "record" {
            Returns::Rows { columns: out, relation: None }
        } else {
            Returns::Scalar(return_type)
        };
        let function = Function {
            schema: schema.clone(),
            name: name.clone(),
            arguments,
            returns,
            set,
            volatility: volatility.chars().next().unwrap_or('v'),
            comment,
            roles,
        };
        functions.entry((schema, name)).or_default().push(function);
    }
    Ok(functions)
}

/// The cache a server answers from; replaced whole on reload.
#[derive(Clone)]
pub struct SharedCache {
    inner: Arc<RwLock<Arc<SchemaCache>>>,
    /// Held from a reload's read to its swap, so reloads end in the order they began and an
    /// older snapshot never replaces a newer one.
    reloading: Arc<tokio::sync::Mutex<()>>,
    schemas: Arc<Vec<String>>,
}

impl SharedCache {
    pub fn new(schemas: Vec<String>) -> SharedCache {
        let empty = SchemaCache { schemas: schemas.clone(), ..SchemaCache::default() };
        SharedCache {
            inner: Arc::new(RwLock::new(Arc::new(empty))),
            reloading: Arc::default(),
            schemas: Arc::new(schemas),
        }
    }

    pub fn get(&self) -> Arc<SchemaCache> {
        match self.inner.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn schemas(&self) -> &[String] {
        &self.schemas
    }

    pub async fn reload(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let _order = self.reloading.lock().await;
        let cache = Arc::new(SchemaCache::load(pool, &self.schemas).await?);
        tracing::info!(
            relations = cache.relations.len(),
            functions = cache.functions.values().map(Vec::len).sum::<usize>(),
            "schema cache loaded"
        );
        match self.inner.write() {
            Ok(mut guard) => *guard = cache,
            Err(poisoned) => *poisoned.into_inner() = cache,
        }
        Ok(())
    }

    /// Reloads whenever `NOTIFY pgrst` says so, reconnecting when the listener drops (and
    /// reloading then, since a notification may have been missed), until `stopping` turns true.
    pub fn watch(&self, pool: PgPool, mut stopping: tokio::sync::watch::Receiver<bool>) {
        let cache = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    result = cache.listen(&pool) => {
                        if let Err(e) = result {
                            tracing::warn!(error = %e, "schema cache listener failed; reconnecting");
                        }
                    }
                    _ = stopping.wait_for(|stop| *stop) => return,
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    async fn listen(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(CHANNEL).await?;
        self.reload(pool).await?;
        loop {
            let notification = listener.recv().await?;
            let payload = notification.payload().trim();
            if payload.is_empty() || payload == "reload schema" {
                self.reload(pool).await?;
            }
        }
    }
}

/// A double-quoted identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
