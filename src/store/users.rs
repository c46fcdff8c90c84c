//! Users (`auth.users`, as Supabase has them) and the local owner the CLI acts as.

use sqlx::PgConnection;
use uuid::Uuid;

/// The e-mail of the user the CLI acts as, created on first use.
pub const LOCAL_OWNER_EMAIL: &str = "owner@kb.local";

/// The id of the user with this e-mail, creating the user if there is none.
/// Select first: Supabase's `auth.users` has no plain unique constraint to conflict on.
pub async fn ensure_user(conn: &mut PgConnection, email: &str) -> Result<Uuid, sqlx::Error> {
    let find = "SELECT id FROM auth.users WHERE email = $1 ORDER BY created_at LIMIT 1";
    if let Some(id) = sqlx::query_scalar(find).bind(email).fetch_optional(&mut *conn).await? {
        return Ok(id);
    }
    let inserted: Option<Uuid> =
        sqlx::query_scalar("INSERT INTO auth.users (email) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id")
            .bind(email)
            .fetch_optional(&mut *conn)
            .await?;
    match inserted {
        Some(id) => Ok(id),
        // Another process created it between our select and insert.
        None => sqlx::query_scalar(find).bind(email).fetch_one(conn).await,
    }
}
