//! Integration tests: one binary, against a real PostgreSQL with pgvector (kb's embedded
//! cluster in a temporary data directory) and the real local embedding model.

mod chunking;
mod cluster;
mod config_docs;
mod context;
mod embed_local;
mod eval;
mod extract_pdf;
mod helpers;
mod http;
mod ingest;
mod lexical;
mod mcp;
mod openai;
mod operations;
mod platform;
mod rls_matrix;
mod search;
mod versions;
