//! `kb mcp`: kb's MCP server on stdin/stdout, for an AI agent that starts kb itself (Claude
//! Desktop and Code, Cursor, the OpenAI Agents SDK). It acts as the local owner, as every
//! other command does, and runs ingestion workers so documents the agent uploads are
//! processed while it is connected.

use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::Config;
use crate::http::Limits;
use crate::http::auth::Caller;
use crate::ingest::Quotas;
use crate::mcp;
use crate::runtime;
use crate::store::Role;

#[derive(Debug, Clone, clap::Args)]
pub struct McpArgs {
    /// Ingestion workers run by this process, so documents uploaded with `upload_document`
    /// are processed (0: none; a `kb serve` or `kb worker` on the same database does it).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
}

pub async fn run(config: &Config, args: McpArgs) -> anyhow::Result<()> {
    let pool = runtime::connect(config).await?;
    let embedder = runtime::load_embedder(config).await?;
    let owner = super::owner(&pool, embedder.as_ref()).await?;
    let pipeline = runtime::pipeline(config, pool.clone(), embedder.clone()).await?;

    let (stop, stopped) = watch::channel(false);
    let mut tasks =
        runtime::spawn_workers(&pipeline, args.workers, super::CLI_JOB_LEASE, config.job_timeout(), &stopped);
    if args.workers > 0 {
        runtime::spawn_maintenance(&mut tasks, pool.clone(), stopped.clone());
    }
    let settings =
        mcp::Settings { embedder, quotas: Quotas::default(), max_upload_bytes: Limits::default().max_upload_bytes };
    let server = mcp::Server::acting_as(pool.clone(), settings, Caller { user: owner, role: Role::Authenticated });
    tracing::info!(user = %owner, workers = args.workers, "MCP server on stdio");
    let served = mcp::serve_stdio(server, runtime::shutdown_signal()).await.context("serving MCP on stdio");

    // Workers hand their running jobs back to the queue as they stop.
    let _ = stop.send(true);
    let stopping = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), stopping).await.is_err() {
        tracing::warn!("ingestion workers did not stop within 10 s");
    }
    pool.close().await;
    served
}
