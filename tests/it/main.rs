//! Integration tests: one binary, against a real PostgreSQL with pgvector (kb's embedded
//! cluster in a temporary data directory) and the real local embedding model.

mod chunking;
mod cluster;
mod config_docs;
mod embed_local;
mod extract_pdf;
mod helpers;
mod http;
mod ingest;
mod openai;
mod platform;
mod rls_matrix;
mod search;
mod versions;
