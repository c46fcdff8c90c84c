//! The `kb` binary: parses the command line, starts tracing, dispatches.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

// mimalloc: the local model's many short-lived tensors made the system allocator a third of
// embedding time (benches/embed_local.rs: 9.3 -> 12.1 texts/s at 256 tokens).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The PDF and HTML parsers run in a child process of this same binary (extract::worker).
    if std::env::args_os().nth(1).is_some_and(|a| a == kb::extract::worker::WORKER_ARG) {
        return kb::extract::worker::child_main();
    }
    let cli = kb::cli::Cli::parse();
    let filter = EnvFilter::try_from_env("KB_LOG").unwrap_or_else(|_| EnvFilter::new("warn,kb=info"));
    let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cli.config.log_json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
