//! Ingestion workers: claim queued jobs (uploads over HTTP, re-ingestion requests) and process
//! them (`job::process`). A job holds a lease that the worker renews while it works, up to the
//! job's time limit; a worker that dies stops renewing it, and another worker claims the job
//! once it expires. Transient failures are retried with backoff up to the job's
//! `max_attempts`; the rest fail the version.

use std::time::Duration;

use tokio::sync::watch;

use super::Pipeline;
use super::job::{self, Pass, WorkerSettings};

/// Runs jobs until `shutdown` turns true; then hands the job in hand (if its processing is
/// cut short) back to the queue.
pub async fn run(pipeline: Pipeline, settings: WorkerSettings, mut shutdown: watch::Receiver<bool>) {
    tracing::info!(worker = %settings.id, "ingestion worker started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let pass = tokio::select! {
            pass = job::run_once(&pipeline, &settings) => pass,
            _ = shutdown.changed() => break,
        };
        match pass {
            Ok(Pass::Idle) => {
                tokio::select! {
                    _ = tokio::time::sleep(settings.idle_poll) => {}
                    _ = shutdown.changed() => break,
                }
            }
            Ok(pass) => {
                metrics::counter!("kb_ingest_jobs_total", "outcome" => pass.outcome()).increment(1);
                tracing::debug!(?pass, "job finished");
            }
            Err(e) => {
                tracing::warn!(error = %e, "worker pass failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    match job::release(&pipeline.pool, &settings.id).await {
        Ok(n) if n > 0 => tracing::info!(jobs = n, "handed running jobs back to the queue"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not hand jobs back; their leases will expire"),
    }
}
