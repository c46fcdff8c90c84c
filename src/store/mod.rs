//! Everything that speaks SQL: connecting, migrating, and one function per query, named for
//! what it does. Application data is read and written inside a transaction that acts as a
//! user (`SET LOCAL ROLE authenticated` + `request.jwt.claims`), so row level security
//! decides what each caller sees; only set-up (users, models, index builds) runs as kb's login.

pub mod buckets;
pub mod chunks;
pub mod documents;
pub mod index;
pub mod jobs;
pub mod lexical;
pub mod login;
pub mod maintenance;
pub mod replicas;
pub mod stats;
pub mod users;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

pub use buckets::Bucket;

/// Opens a connection pool on `url`.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        // JIT compiles any statement whose estimated cost passes jit_above_cost: under row
        // level security a trivial statement on knowledge_chunks can (~8 ms of LLVM per call,
        // more than the search). kb's statements are short; its connections do without.
        .connect_with(options.application_name("kb").options([("jit", "off")]))
        .await
}

/// Applies the numbered migrations in `migrations/` that this database has not seen, then
/// tells running servers to reload their schema cache (`NOTIFY pgrst`, as PostgREST has it).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await?;
    sqlx::query("NOTIFY pgrst, 'reload schema'").execute(pool).await?;
    Ok(())
}

/// The role a request acts as, with the names Supabase gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A caller with no user: the public API key. Has no privileges on kb's tables.
    Anon,
    Authenticated,
    ServiceRole,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Anon => "anon",
            Role::Authenticated => "authenticated",
            Role::ServiceRole => "service_role",
        }
    }
}

/// Begins a transaction acting as `user` in `role`: every statement in it runs under row
/// level security with `auth.uid()` = `user`. `SET LOCAL` and `set_config(.., true)` end
/// with the transaction, so no identity survives on the pooled connection.
pub async fn begin_as(pool: &PgPool, user: Uuid, role: Role) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    act_as(&mut tx, user, role).await?;
    Ok(tx)
}

/// Makes the rest of the current transaction act as `user` in `role`, as `begin_as` does.
pub async fn act_as(conn: &mut sqlx::PgConnection, user: Uuid, role: Role) -> Result<(), sqlx::Error> {
    let claims = serde_json::json!({ "sub": user, "role": role.as_str() }).to_string();
    // set_config('role', .., true) is SET LOCAL ROLE (as PostgREST does it); both in one
    // round trip, since every request and every ingestion step pays for it.
    sqlx::query("SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)")
        .bind(role.as_str())
        .bind(claims)
        .execute(conn)
        .await?;
    Ok(())
}

/// Lets the current transaction commit without waiting for its WAL flush. Only for writes
/// that are redone when lost in a crash: the commit is still atomic, and any later durable
/// commit flushes it too.
pub async fn relax_durability(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('synchronous_commit', 'off', true)").execute(conn).await?;
    Ok(())
}
