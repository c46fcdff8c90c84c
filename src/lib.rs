//! kb: documents in, searchable chunks out, on PostgreSQL + pgvector.
//!
//! Data flow: `extract` -> `chunk` -> `hash` -> `embed` -> `ingest` -> `store` <- `search` <- `cli`.
//! `extract`, `chunk` and `hash` are pure; everything that touches the database lives in `store`.

pub mod chunk;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod context;
pub mod embed;
pub mod extract;
pub mod hash;
pub mod host;
pub mod http;
pub mod ingest;
pub mod mcp;
pub mod runtime;
pub mod search;
pub mod store;
