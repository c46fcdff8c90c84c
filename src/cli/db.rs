//! `kb db`: the embedded cluster (`start`, `stop`, `status`) and the spec's operations, as
//! commands an operator or cron runs: `backup` / `restore` (pg_dump, pg_restore, psql; base
//! backups and point-in-time recovery for the embedded cluster), `stats` (the monitoring
//! queries), `maintain` (VACUUM ANALYZE, vector indexes) and `cleanup` (retention).

mod dump;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};

use super::EXIT_INDEX_FAILED;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::runtime;
use crate::store::{self, maintenance, stats};

#[derive(Debug, clap::Subcommand)]
pub enum DbCommand {
    /// Start the embedded cluster (creating it if needed).
    Start,
    /// Stop the embedded cluster.
    Stop,
    /// Show whether the embedded cluster is running.
    Status,
    /// Make a streaming replica of the embedded cluster in another data directory and start
    /// it; `kb serve` sends searches to it with KB_READ_DATABASE_URL (printed).
    Replica(ReplicaArgs),
    /// Back up the database to a file (pg_dump), or take a base backup of the embedded
    /// cluster for point-in-time recovery (--base).
    Backup(BackupArgs),
    /// Restore a backup file into the database (pg_restore or psql), or the embedded cluster
    /// to a moment (--to).
    Restore(RestoreArgs),
    /// Monitoring: slowest statements, table sizes, index usage, connections, locks.
    Stats(StatsArgs),
    /// VACUUM ANALYZE, then rebuild the vector indexes the data has outgrown.
    Maintain(MaintainArgs),
    /// Apply the retention rules: old audit log rows, campaign metrics, finished campaigns.
    Cleanup(CleanupArgs),
}

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The backup file to write.
    #[arg(long, short = 'f', required_unless_present = "base", conflicts_with = "base")]
    pub file: Option<PathBuf>,
    /// Only this table (`name` or `schema.name`; repeatable). Default: the whole database.
    #[arg(long = "table", short = 't', value_name = "TABLE")]
    pub tables: Vec<String>,
    /// Rows only, no schema (restore into a database that has kb's schema).
    #[arg(long)]
    pub data_only: bool,
    /// `custom` (pg_restore; the default) or `plain` SQL (psql; the default for a `.sql` file).
    #[arg(long, value_enum)]
    pub format: Option<dump::Format>,
    /// Embedded cluster: a base backup (pg_basebackup) into the data directory's `backups`
    /// folder, from which `kb db restore --to` recovers; turns WAL archiving on.
    #[arg(long, conflicts_with_all = ["tables", "data_only", "format", "database"])]
    pub base: bool,
    /// With --base: how many base backups to keep (older ones, and the WAL only they needed,
    /// are removed).
    #[arg(long, default_value_t = 2, requires = "base", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,
    /// Embedded cluster: back up this database instead of kb's.
    #[arg(long)]
    pub database: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup file to restore (custom format or plain SQL, recognised by its content).
    #[arg(long, short = 'f', required_unless_present = "to", conflicts_with = "to")]
    pub file: Option<PathBuf>,
    /// Custom format: only this table (repeatable).
    #[arg(long = "table", short = 't', value_name = "TABLE")]
    pub tables: Vec<String>,
    /// Custom format: only the rows (the database gets kb's schema first), triggers disabled.
    #[arg(long)]
    pub data_only: bool,
    /// Custom format: drop the backup's objects before recreating them.
    #[arg(long)]
    pub clean: bool,
    /// Embedded cluster: restore into this database (created if missing) instead of kb's.
    #[arg(long)]
    pub database: Option<String>,
    /// Embedded cluster: point-in-time recovery to this moment, with a time zone
    /// (`2026-12-06T10:30:00Z`, `2026-12-06 11:30:00+01`), from the newest base backup
    /// finished before it.
    #[arg(long, value_parser = parse_moment, conflicts_with_all = ["tables", "data_only", "clean", "database"])]
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, clap::Args)]
pub struct ReplicaArgs {
    /// The replica's data directory (new or empty); manage it later with
    /// `KB_DATA_DIR=<dir> kb db status|stop|start`.
    #[arg(value_name = "DIR")]
    pub replica_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Print one JSON object (the same as `GET /v1/admin/stats`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct MaintainArgs {
    /// Only this table (repeatable). Default: every table.
    #[arg(long = "table", short = 't', value_name = "TABLE")]
    pub tables: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    /// Audit log rows older than this many days are removed.
    #[arg(long, env = "KB_AUDIT_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=365_000))]
    pub audit_days: u32,
    /// Campaign metrics recorded more than this many days ago move to campaign_metrics_archive.
    #[arg(long, env = "KB_METRICS_RETENTION_DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=365_000))]
    pub metrics_days: u32,
    /// Completed campaigns that ended more than this many days ago are archived.
    #[arg(long, env = "KB_ARCHIVE_CAMPAIGNS_AFTER_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=365_000))]
    pub archive_after_days: u32,
    /// Print one JSON object with the counts.
    #[arg(long)]
    pub json: bool,
}

/// A moment with a time zone: RFC 3339, or PostgreSQL's `2026-12-06 03:56:33.123+00`.
pub fn parse_moment(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!("{text:?} is not a moment with a time zone, like 2026-12-06T10:30:00Z or 2026-12-06 11:30:00+01")
        })
}

pub async fn run(config: &Config, command: DbCommand) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Start | DbCommand::Stop | DbCommand::Status => lifecycle(config, command).await?,
        DbCommand::Replica(args) => replica(config, &args.replica_dir).await?,
        DbCommand::Backup(args) if args.base => base_backup(config, args.keep as usize).await?,
        DbCommand::Backup(args) => dump::backup(config, args).await?,
        DbCommand::Restore(RestoreArgs { to: Some(target), .. }) => point_in_time(config, target).await?,
        DbCommand::Restore(args) => dump::restore(config, args).await?,
        DbCommand::Stats(args) => print_stats(config, args).await?,
        DbCommand::Maintain(args) => return maintain(config, args).await,
        DbCommand::Cleanup(args) => cleanup(config, args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The embedded cluster, refusing `DATABASE_URL` (which kb does not manage).
fn embedded(config: &Config, what: &str) -> anyhow::Result<Cluster> {
    if config.database_url.is_some() {
        bail!("DATABASE_URL is set: kb uses that database, not its embedded cluster, so {what} is not available");
    }
    Ok(Cluster::new(&config.data_dir())?)
}

async fn lifecycle(config: &Config, command: DbCommand) -> anyhow::Result<()> {
    let cluster = embedded(config, "managing the cluster")?;
    match command {
        DbCommand::Start => {
            let url = cluster.ensure_running(runtime::EMBEDDED_DATABASE).await?;
            println!("running: {url}");
        }
        DbCommand::Stop => {
            cluster.stop().await?;
            println!("stopped");
        }
        _ => println!("{}", cluster.status().await?),
    }
    Ok(())
}

async fn replica(config: &Config, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let primary = embedded(config, "a replica of the embedded cluster")?;
    let replica = Cluster::new(data_dir)?;
    if replica.data_dir() == primary.data_dir() {
        bail!("the replica needs a data directory of its own, not the primary's ({})", data_dir.display());
    }
    // The server's login, so that the replica has it too.
    let admin = runtime::connect(config).await?;
    store::login::ensure_app_login(&mut *admin.acquire().await?).await.context("creating the kb_app login")?;
    admin.close().await;
    let started = Instant::now();
    eprintln!("copying the embedded cluster (pg_basebackup) into {}...", data_dir.display());
    replica
        .create_standby_of(&primary, runtime::EMBEDDED_DATABASE)
        .await
        .with_context(|| format!("making a replica in {}", data_dir.display()))?;
    println!(
        "replica running in {} ({:.1} s), streaming from {}",
        replica.data_dir().display(),
        started.elapsed().as_secs_f64(),
        primary.data_dir().display()
    );
    println!("KB_READ_DATABASE_URL={}", replica.login_url(store::login::APP_LOGIN, runtime::EMBEDDED_DATABASE));
    Ok(())
}

async fn base_backup(config: &Config, keep: usize) -> anyhow::Result<()> {
    let cluster = embedded(config, "a base backup (--base)")?;
    let started = Instant::now();
    eprintln!("taking a base backup of the embedded cluster (pg_basebackup)...");
    let backup = cluster.base_backup(keep).await.context("taking a base backup")?;
    println!(
        "base backup {} (finished {}) in {:.1} s; WAL is archived in {}; kept the newest {keep}",
        backup.path.display(),
        backup.finished_at,
        started.elapsed().as_secs_f64(),
        cluster.wal_archive_dir().display()
    );
    Ok(())
}

async fn point_in_time(config: &Config, target: DateTime<Utc>) -> anyhow::Result<()> {
    let cluster = embedded(config, "point-in-time recovery (--to)")?;
    let started = Instant::now();
    let report = cluster
        .restore_to(target, &|step: &str| eprintln!("{step}..."))
        .await
        .with_context(|| format!("restoring the embedded cluster to {target}"))?;
    let replayed = report.replayed_to.map_or_else(|| "no transaction".to_string(), |t| t.to_string());
    println!(
        "restored to {target} in {:.1} s from {} (last replayed commit: {replayed}); \
         the previous data directory is kept at {}",
        started.elapsed().as_secs_f64(),
        report.backup.path.display(),
        report.previous_pg_dir.display()
    );
    Ok(())
}

async fn print_stats(config: &Config, args: StatsArgs) -> anyhow::Result<()> {
    let pool = runtime::connect(config).await?;
    let mut conn = pool.acquire().await.context("connecting to PostgreSQL")?;
    if let Err(e) = stats::enable_statement_stats(&mut conn).await {
        tracing::debug!(error = %e, "cannot create the pg_stat_statements extension");
    }
    let stats = stats::collect(&mut conn).await.context("reading the database statistics")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    println!("database {} at {}", stats.database, stats.collected_at);
    println!("\nslowest statements (pg_stat_statements, by mean time):");
    match (&stats.slowest_statements, &stats.statements_unavailable) {
        (Some(rows), _) => {
            println!("  {:>10} {:>12} {:>8} {:>10}  query", "mean ms", "total ms", "calls", "rows");
            for s in rows {
                let query = crate::hash::normalise(&s.query);
                let query: String = query.chars().take(100).collect();
                println!(
                    "  {:>10.2} {:>12.1} {:>8} {:>10}  {query}",
                    s.mean_exec_time, s.total_exec_time, s.calls, s.rows
                );
            }
        }
        (None, reason) => println!("  not available: {}", reason.as_deref().unwrap_or("unknown reason")),
    }
    println!("\ntable sizes (public):");
    for t in &stats.table_sizes {
        println!("  {:>10}  {}", t.size, t.table);
    }
    const SHOWN: usize = 20;
    println!(
        "\nindex usage (most scanned first, {} of {}):",
        stats.index_usage.len().min(SHOWN),
        stats.index_usage.len()
    );
    println!("  {:>10} {:>12} {:>12}  index", "scans", "tuples read", "fetched");
    for i in stats.index_usage.iter().take(SHOWN) {
        println!("  {:>10} {:>12} {:>12}  {} ({})", i.idx_scan, i.idx_tup_read, i.idx_tup_fetch, i.index, i.table);
    }
    println!("\nconnections to {} by state:", stats.database);
    for c in &stats.connections {
        println!("  {:>6}  {}", c.connections, c.state.as_deref().unwrap_or("(none)"));
    }
    println!("\nlocks by mode and type:");
    for l in &stats.locks {
        println!("  {:>6}  {} {}", l.locks, l.mode, l.locktype);
    }
    Ok(())
}

async fn maintain(config: &Config, args: MaintainArgs) -> anyhow::Result<ExitCode> {
    let pool = runtime::connect(config).await?;
    let mut conn = pool.acquire().await.context("connecting to PostgreSQL")?;
    if args.tables.is_empty() {
        let started = Instant::now();
        eprintln!("VACUUM ANALYZE of every table...");
        maintenance::vacuum_analyze_all(&mut conn).await.context("VACUUM ANALYZE")?;
        println!("VACUUM ANALYZE: every table in {:.1} s", started.elapsed().as_secs_f64());
    }
    for table in &args.tables {
        let started = Instant::now();
        let name = maintenance::vacuum_analyze_table(&mut conn, table)
            .await
            .with_context(|| format!("VACUUM ANALYZE {table}"))?;
        println!("VACUUM ANALYZE {name}: {:.1} s", started.elapsed().as_secs_f64());
    }
    drop(conn);
    let done = store::index::ensure_indexes(&pool, None).await.context("checking the vector indexes")?;
    if done.builds.is_empty() && done.failures.is_empty() {
        println!("vector indexes are up to date");
    }
    for b in &done.builds {
        println!("{}: {} index over {} chunks (lists: {:?}) in {} s", b.model, b.method, b.rows, b.lists, b.seconds);
    }
    for f in &done.failures {
        eprintln!("warning: the vector index of {} could not be built: {}", f.model, f.error);
    }
    Ok(if done.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_INDEX_FAILED) })
}

/// What `kb db cleanup` did.
#[derive(Debug, serde::Serialize)]
struct Cleanup {
    campaigns_archived: i64,
    campaign_metrics_archived: i64,
    audit_log_deleted: i64,
}

async fn cleanup(config: &Config, args: CleanupArgs) -> anyhow::Result<()> {
    let pool = runtime::connect(config).await?;
    // Each rule in its own transaction: a rule either happens entirely or not at all.
    let mut tx = pool.begin().await?;
    let campaigns_archived = maintenance::archive_finished_campaigns(&mut tx, args.archive_after_days)
        .await
        .context("archiving finished campaigns")?;
    tx.commit().await.context("archiving finished campaigns")?;
    let mut tx = pool.begin().await?;
    let campaign_metrics_archived = maintenance::archive_old_campaign_metrics(&mut tx, args.metrics_days)
        .await
        .context("moving old campaign metrics to campaign_metrics_archive")?;
    tx.commit().await.context("moving old campaign metrics to campaign_metrics_archive")?;
    let mut tx = pool.begin().await?;
    let audit_log_deleted =
        maintenance::delete_old_audit_log(&mut tx, args.audit_days).await.context("deleting old audit log rows")?;
    tx.commit().await.context("deleting old audit log rows")?;

    let done = Cleanup { campaigns_archived, campaign_metrics_archived, audit_log_deleted };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        println!(
            "campaigns: {} completed campaigns that ended over {} days ago archived",
            done.campaigns_archived, args.archive_after_days
        );
        println!(
            "campaign metrics: {} rows recorded over {} days ago moved to campaign_metrics_archive",
            done.campaign_metrics_archived, args.metrics_days
        );
        println!("audit log: {} rows older than {} days deleted", done.audit_log_deleted, args.audit_days);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_need_a_time_zone() {
        let utc = parse_moment("2026-12-06T10:30:00Z").expect("rfc 3339");
        assert_eq!(parse_moment("2026-12-06 11:30:00+01").expect("postgres style"), utc);
        assert_eq!(
            parse_moment("2026-12-06 10:30:00.250+00").expect("fraction"),
            utc + chrono::Duration::milliseconds(250)
        );
        assert!(parse_moment("2026-12-06 10:30:00").is_err());
        assert!(parse_moment("yesterday").is_err());
    }
}
