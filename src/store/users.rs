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

/// A user as `kb user list` shows it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub email: Option<String>,
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every user, oldest first. Runs as the owner login.
pub async fn list_users(conn: &mut PgConnection) -> Result<Vec<User>, sqlx::Error> {
    sqlx::query_as("SELECT id, email, created_at FROM auth.users ORDER BY created_at, id").fetch_all(conn).await
}

/// The id of the user with this e-mail, if there is one.
pub async fn user_by_email(conn: &mut PgConnection, email: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM auth.users WHERE email = $1 ORDER BY created_at LIMIT 1")
        .bind(email)
        .fetch_optional(conn)
        .await
}

/// Removes the user and everything the user owns alone (buckets with their documents and
/// chunks, and every row of the platform's tables without a company); rows of a company stay
/// the company's, with no creator. False if there is no such user. Runs as the owner login, in one
/// transaction so a failure removes nothing.
pub async fn remove_user(conn: &mut PgConnection, email: &str) -> Result<bool, sqlx::Error> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let Some(id) = user_by_email(&mut tx, email).await? else {
        return Ok(false);
    };
    sqlx::query("DELETE FROM public.knowledge_buckets WHERE created_by = $1").bind(id).execute(&mut *tx).await?;
    // Personal rows of the platform's tables go too; a company's rows stay the company's.
    sqlx::query("SELECT kb_private.delete_personal_rows($1)").bind(id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM auth.users WHERE id = $1").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(true)
}
