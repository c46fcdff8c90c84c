//! The database login the HTTP server and workers use: never a superuser, never BYPASSRLS,
//! so row level security decides what every request sees. For the embedded cluster kb
//! creates that login (`kb_app`) itself; with `DATABASE_URL` it checks the one it is given.

use sqlx::PgConnection;

/// The login kb creates in its embedded cluster for the server's connection pool.
pub const APP_LOGIN: &str = "kb_app";

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(
        "the database login {login:?} is a superuser or has BYPASSRLS: row level security would not apply; \
         connect the server as an ordinary login (NOSUPERUSER NOBYPASSRLS) granted anon, authenticated and service_role"
    )]
    Privileged { login: String },
    #[error("the database login {login:?} cannot act as {role}: GRANT anon, authenticated, service_role TO {login}")]
    MissingRole { login: String, role: &'static str },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Creates the application login (if missing) and lets it act as the request roles. Run as
/// the cluster superuser after the migrations. Safe when several processes start at once.
pub async fn ensure_app_login(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(APP_LOGIN)
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        // NOINHERIT: the login holds no table privileges of its own; it gets them only by
        // `SET LOCAL ROLE` inside a request's transaction.
        let created = sqlx::query(&format!("CREATE ROLE {APP_LOGIN} LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT"))
            .execute(&mut *conn)
            .await;
        match created {
            Ok(_) => {}
            // Another process created it between our check and our CREATE.
            Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42710") | Some("23505")) => {}
            Err(e) => return Err(e),
        }
    }
    sqlx::query(&format!("GRANT anon, authenticated, service_role TO {APP_LOGIN}")).execute(&mut *conn).await?;
    // Readiness compares the applied migrations with the ones this binary carries.
    sqlx::query(&format!("GRANT SELECT ON public._sqlx_migrations TO {APP_LOGIN}")).execute(&mut *conn).await?;
    Ok(())
}

/// Refuses a login that row level security would not constrain, or that cannot switch to
/// the request roles.
pub async fn check_app_login(conn: &mut PgConnection) -> Result<(), LoginError> {
    let (login, privileged): (String, bool) = sqlx::query_as(
        "SELECT current_user::text, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await?;
    if privileged {
        return Err(LoginError::Privileged { login });
    }
    for role in ["anon", "authenticated", "service_role"] {
        let member: bool = sqlx::query_scalar("SELECT pg_has_role(current_user, $1, 'MEMBER')")
            .bind(role)
            .fetch_one(&mut *conn)
            .await?;
        if !member {
            return Err(LoginError::MissingRole { login, role });
        }
    }
    Ok(())
}

/// The newest migration applied to the database, if any (readable by the app login).
pub async fn applied_migration(conn: &mut PgConnection) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT max(version) FROM public._sqlx_migrations WHERE success").fetch_one(conn).await
}

/// The newest migration this binary carries.
pub fn latest_migration() -> Option<i64> {
    sqlx::migrate!("./migrations").migrations.iter().map(|m| m.version).max()
}
