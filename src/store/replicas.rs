//! Read replicas: searches, which tolerate a little lag, run on a streaming replica of the
//! database when one is configured (`KB_READ_DATABASE_URL`) and current; everything else runs
//! on the primary: writes, and the reads a client expects to reflect its own writes (a
//! document's status after its upload, `/rest/v1`).
//!
//! A monitor task checks each replica every `CHECK_EVERY`: that it is reachable, still in
//! recovery (a promoted replica has left the primary's timeline), that its login can neither
//! bypass row level security nor is a superuser, and how far behind it is. Lag is measured in
//! time against the primary's own WAL position: the monitor notes the primary's current LSN
//! at each check, and a replica that has replayed the LSN noted at time t holds every commit
//! made before t. A replica more than `max_lag` behind gets no searches until it catches up;
//! with no current replica, searches run on the primary. A search that finds its replica
//! unreachable marks it down and runs again on the primary.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::watch;

use super::login;

/// How often the monitor checks each replica.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Longest one replica's check may take before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The primary and its replicas, as the server reads from them.
pub struct Reads {
    primary: PgPool,
    replicas: Vec<Replica>,
    next: AtomicUsize,
    max_lag: Duration,
}

struct Replica {
    /// Where it is, for logs and metrics (host and database, never credentials).
    name: String,
    pool: PgPool,
    current: AtomicBool,
}

/// The pool a read runs on.
struct Target {
    pool: PgPool,
    replica: Option<usize>,
}

impl Target {
    /// `primary` or `replica`, for metrics.
    fn database(&self) -> &'static str {
        if self.replica.is_some() { "replica" } else { "primary" }
    }
}

/// Errors that say the database could not be reached, as opposed to a failed statement.
pub trait Unreachable {
    fn unreachable(&self) -> bool;
}

impl Unreachable for sqlx::Error {
    fn unreachable(&self) -> bool {
        match self {
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
            // Connection exceptions, and the server shutting down or still starting.
            sqlx::Error::Database(e) => e.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
            _ => false,
        }
    }
}

impl Reads {
    /// Every read on the primary.
    pub fn primary_only(primary: PgPool) -> Arc<Reads> {
        Reads::new(primary, Vec::new(), Duration::ZERO)
    }

    /// `replicas`: (name, pool) of each; none is used before the monitor finds it current.
    pub fn new(primary: PgPool, replicas: Vec<(String, PgPool)>, max_lag: Duration) -> Arc<Reads> {
        let replicas =
            replicas.into_iter().map(|(name, pool)| Replica { name, pool, current: AtomicBool::new(false) }).collect();
        Arc::new(Reads { primary, replicas, next: AtomicUsize::new(0), max_lag })
    }

    /// The primary's pool.
    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// The next current replica (round robin), or the primary when none is.
    fn pick(&self) -> Target {
        let n = self.replicas.len();
        if n > 0 {
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            for i in 0..n {
                let at = (start + i) % n;
                let replica = &self.replicas[at];
                if replica.current.load(Ordering::Relaxed) {
                    return Target { pool: replica.pool.clone(), replica: Some(at) };
                }
            }
        }
        Target { pool: self.primary.clone(), replica: None }
    }

    /// Runs `read` on a current replica, or on the primary; if the replica cannot be
    /// reached, marks it down and runs `read` again on the primary.
    pub async fn run<T, E, F, Fut>(&self, read: F) -> Result<T, E>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Unreachable + std::fmt::Display,
    {
        let target = self.pick();
        let database = target.database();
        let result = read(target.pool).await;
        let result = match (result, target.replica) {
            (Err(e), Some(at)) if e.unreachable() => {
                let replica = &self.replicas[at];
                replica.current.store(false, Ordering::Relaxed);
                tracing::warn!(replica = %replica.name, error = %e, "read replica unreachable; reading from the primary");
                metrics::counter!(READS, "database" => "primary").increment(1);
                return read(self.primary.clone()).await;
            }
            (result, _) => result,
        };
        metrics::counter!(READS, "database" => database).increment(1);
        result
    }

    /// Checks the replicas every `CHECK_EVERY` until `stop` turns true.
    pub fn spawn_monitor(self: &Arc<Reads>, mut stop: watch::Receiver<bool>) {
        if self.replicas.is_empty() {
            return;
        }
        let reads = self.clone();
        tokio::spawn(async move {
            let mut samples = Samples::default();
            let mut first = true;
            loop {
                reads.check(&mut samples, first).await;
                first = false;
                tokio::select! {
                    _ = tokio::time::sleep(CHECK_EVERY) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }

    /// One round: the primary's position, then each replica's state and lag (all replicas at
    /// once, each bounded by `CHECK_TIMEOUT`, so one that hangs delays no other).
    async fn check(&self, samples: &mut Samples, first: bool) {
        match primary_lsn(&self.primary).await {
            Ok(lsn) => samples.push(Instant::now(), lsn, self.max_lag + CHECK_EVERY * 4),
            Err(e) => tracing::warn!(error = %e, "cannot read the primary's WAL position"),
        }
        let states = futures::future::join_all(self.replicas.iter().map(|r| async {
            tokio::time::timeout(CHECK_TIMEOUT, replica_state(&r.pool)).await.unwrap_or(Err(ReplicaError::TimedOut))
        }))
        .await;
        for (replica, state) in self.replicas.iter().zip(states) {
            let lag = match &state {
                Ok(Some(replayed)) => samples.lag(Instant::now(), *replayed),
                _ => None,
            };
            let current = lag.is_some_and(|lag| lag <= self.max_lag);
            let was = replica.current.swap(current, Ordering::Relaxed);
            metrics::gauge!(REPLICA_CURRENT, "replica" => replica.name.clone()).set(if current { 1.0 } else { 0.0 });
            if let Some(lag) = lag {
                metrics::gauge!(REPLICA_LAG, "replica" => replica.name.clone()).set(lag.as_secs_f64());
            }
            let name = &replica.name;
            if current && !was {
                tracing::info!(replica = %name, ?lag, "read replica current: searches go to it");
            } else if !current && (was || first) {
                match state {
                    Ok(_) => {
                        tracing::warn!(replica = %name, ?lag, max = ?self.max_lag, "read replica behind; searching the primary")
                    }
                    Err(e) => {
                        tracing::warn!(replica = %name, error = %e, "read replica unusable; searching the primary")
                    }
                }
            }
        }
    }
}

/// Reads served, by database (`kb_reads_total{database="primary|replica"}`).
pub const READS: &str = "kb_reads_total";
/// Whether searches go to a replica (1) or not (0).
pub const REPLICA_CURRENT: &str = "kb_read_replica_current";
/// How far behind the primary a replica is, in seconds.
pub const REPLICA_LAG: &str = "kb_read_replica_lag_seconds";

/// The primary's WAL positions noted at recent checks, oldest first.
#[derive(Default)]
struct Samples(VecDeque<(Instant, u64)>);

impl Samples {
    fn push(&mut self, at: Instant, lsn: u64, keep: Duration) {
        self.0.push_back((at, lsn));
        while self.0.front().is_some_and(|(t, _)| at.duration_since(*t) > keep) {
            self.0.pop_front();
        }
    }

    /// How far behind a replica that replayed up to `replayed` is: zero if it has the newest
    /// noted position, else the age of the newest noted position it has; None if it has none.
    fn lag(&self, now: Instant, replayed: u64) -> Option<Duration> {
        let (_, newest) = self.0.back()?;
        if replayed >= *newest {
            return Some(Duration::ZERO);
        }
        self.0.iter().rev().find(|(_, lsn)| replayed >= *lsn).map(|(t, _)| now.duration_since(*t))
    }
}

#[derive(Debug, thiserror::Error)]
enum ReplicaError {
    #[error("{0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Login(#[from] login::LoginError),
    #[error("the server is not in recovery (a primary, or a promoted replica)")]
    NotInRecovery,
    #[error("no answer within {} s", CHECK_TIMEOUT.as_secs())]
    TimedOut,
}

async fn primary_lsn(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let text: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text").fetch_one(pool).await?;
    parse_lsn(&text).ok_or_else(|| sqlx::Error::Protocol(format!("unexpected LSN {text:?}")))
}

/// The position a replica has replayed up to; None when nothing was replayed yet.
async fn replica_state(pool: &PgPool) -> Result<Option<u64>, ReplicaError> {
    let mut conn = pool.acquire().await?;
    // As unprivileged as the primary's login: searches rely on row level security.
    login::check_app_login(&mut conn).await?;
    let (in_recovery, replayed): (bool, Option<String>) =
        sqlx::query_as("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text").fetch_one(&mut *conn).await?;
    if !in_recovery {
        return Err(ReplicaError::NotInRecovery);
    }
    Ok(replayed.as_deref().and_then(parse_lsn))
}

/// `16/B374D848` -> its 64-bit position.
fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_as_postgres_prints_them() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert_eq!(parse_lsn("16"), None);
        assert_eq!(parse_lsn("x/1"), None);
    }

    #[test]
    fn lag_is_the_age_of_the_newest_primary_position_the_replica_has() {
        let t0 = Instant::now();
        let mut samples = Samples::default();
        assert_eq!(samples.lag(t0, 5), None, "nothing noted yet");
        let keep = Duration::from_secs(10);
        samples.push(t0, 100, keep);
        samples.push(t0 + Duration::from_secs(1), 200, keep);
        samples.push(t0 + Duration::from_secs(2), 300, keep);
        let now = t0 + Duration::from_secs(3);
        assert_eq!(samples.lag(now, 300), Some(Duration::ZERO));
        assert_eq!(samples.lag(now, 450), Some(Duration::ZERO), "ahead of the last check");
        assert_eq!(samples.lag(now, 250), Some(Duration::from_secs(2)), "has what was written before t0 + 1 s");
        assert_eq!(samples.lag(now, 100), Some(Duration::from_secs(3)));
        assert_eq!(samples.lag(now, 99), None, "behind every noted position");
        // Samples older than `keep` go.
        samples.push(t0 + Duration::from_secs(12), 400, keep);
        assert_eq!(samples.0.len(), 2, "t0 + 2 s and t0 + 12 s");
    }
}
