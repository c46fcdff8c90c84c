//! The spec's maintenance and cleanup ("Maintenance Tasks", "Cleanup Scripts"), run by the
//! operator (`kb db maintain`, `kb db cleanup`) as kb's own login: `VACUUM ANALYZE`, and the
//! retention rules — audit log rows removed, campaign metrics moved to
//! `campaign_metrics_archive`, finished campaigns archived — each rule in one transaction.
//! Also the cluster-wide roles a full restore's grants name.

use sqlx::{PgConnection, Postgres, Transaction};
use tracing::instrument;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("no table {0:?} in the database (name it as `table` or `schema.table`)")]
    NoSuchTable(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// `VACUUM ANALYZE` of one table, named as the user typed it (`campaigns`, `public.leads`).
/// The name is resolved by the database (`to_regclass`) and quoted from the catalog.
#[instrument(skip(conn))]
pub async fn vacuum_analyze_table(conn: &mut PgConnection, table: &str) -> Result<String, MaintenanceError> {
    let quoted: Option<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p', 'm')",
    )
    .bind(table)
    .fetch_optional(&mut *conn)
    .await?;
    let quoted = quoted.ok_or_else(|| MaintenanceError::NoSuchTable(table.to_string()))?;
    // VACUUM cannot take a parameter, nor run in a transaction: the name is the catalog's.
    sqlx::query(&format!("VACUUM ANALYZE {quoted}")).persistent(false).execute(&mut *conn).await?;
    Ok(quoted)
}

/// `VACUUM ANALYZE` of every table the login may vacuum.
#[instrument(skip_all)]
pub async fn vacuum_analyze_all(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("VACUUM ANALYZE").persistent(false).execute(conn).await?;
    Ok(())
}

/// Removes audit log rows older than `days` (the spec: 90). `public.delete_old_audit_log`.
#[instrument(skip(tx))]
pub async fn delete_old_audit_log(tx: &mut Transaction<'_, Postgres>, days: u32) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT public.delete_old_audit_log(make_interval(days => $1))")
        .bind(days as i32)
        .fetch_one(&mut **tx)
        .await
}

/// Moves campaign metrics recorded more than `days` ago (the spec: a year) into
/// `campaign_metrics_archive`: one statement, so a row is in exactly one of the two tables.
#[instrument(skip(tx))]
pub async fn archive_old_campaign_metrics(tx: &mut Transaction<'_, Postgres>, days: u32) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "WITH moved AS (
           DELETE FROM public.campaign_metrics
           WHERE recorded_at < now() - make_interval(days => $1)
           RETURNING id, campaign_id, metric_type, metric_value, metric_date, additional_data, recorded_at
         ), archived AS (
           INSERT INTO public.campaign_metrics_archive
             (id, campaign_id, metric_type, metric_value, metric_date, additional_data, recorded_at)
           SELECT * FROM moved
           RETURNING 1
         )
         SELECT count(*) FROM archived",
    )
    .bind(days as i32)
    .fetch_one(&mut **tx)
    .await
}

/// Archives completed campaigns that ended more than `days` ago (the spec: 30).
/// `public.archive_finished_campaigns`.
#[instrument(skip(tx))]
pub async fn archive_finished_campaigns(tx: &mut Transaction<'_, Postgres>, days: u32) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT public.archive_finished_campaigns(make_interval(days => $1))")
        .bind(days as i32)
        .fetch_one(&mut **tx)
        .await
}

/// Creates the API roles (`anon`, `authenticated`, `service_role`) where missing, as the
/// first migration does: roles belong to the cluster, not to a dump, and a full restore's
/// grants and policies name them.
pub async fn ensure_api_roles(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "DO $$
         DECLARE
           r TEXT;
         BEGIN
           FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
               BEGIN
                 IF r = 'service_role' THEN
                   EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT BYPASSRLS', r);
                 ELSE
                   EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', r);
                 END IF;
               EXCEPTION WHEN duplicate_object OR unique_violation THEN
                 NULL;
               END;
             END IF;
           END LOOP;
         END
         $$",
    )
    .execute(conn)
    .await?;
    Ok(())
}
