//! The extraction worker: parsers whose time or memory a hostile file can blow up (PDF, HTML,
//! and any large document) run in a child process of the `kb` binary, under a wall-clock
//! limit, an address-space and CPU limit, with an empty environment, no inherited
//! descriptors, an empty working directory, and — when kb runs as root — the unprivileged
//! `nobody` user, so a parser bug costs one failed document and reaches none of kb's secrets.
//!
//! Protocol (`kb __extract <format>`, see [`child_main`]): the parent writes the document to
//! the worker's stdin and closes it; the worker answers on stdout with one line of JSON and an
//! exit code:
//! - exit 0 ([`EXIT_OK`]): the [`Extracted`] document
//! - exit 2 ([`EXIT_REFUSED`]): `{"error": ExtractError}`, the file is not one kb can read
//! - exit 3 ([`EXIT_PANIC`]): `{"panic": "..."}`, the parser panicked on this file
//!
//! Anything else (another exit code, death by a signal such as SIGABRT on stack overflow or
//! allocation failure under RLIMIT_AS, SIGXCPU under RLIMIT_CPU) is a crash.

use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{ExtractError, Extracted, Format};

/// The first argument that makes the `kb` binary act as the extraction worker.
pub const WORKER_ARG: &str = "__extract";
/// Worker exit code: the document is on stdout.
pub const EXIT_OK: u8 = 0;
/// Worker exit code: the file was refused; `{"error": ..}` is on stdout.
pub const EXIT_REFUSED: u8 = 2;
/// Worker exit code: the parser panicked; `{"panic": ..}` is on stdout.
pub const EXIT_PANIC: u8 = 3;

/// Environment variables through which the parent hands its limits to the worker: the only
/// variables the worker gets, beside the allocator's.
const MEMORY_ENV: &str = "KB_EXTRACT_WORKER_MAX_MEMORY";
const CPU_ENV: &str = "KB_EXTRACT_WORKER_MAX_CPU_SECONDS";
const NPROC_ENV: &str = "KB_EXTRACT_WORKER_MAX_PROCESSES";

/// Extracted text beyond this is refused: a small hostile PDF can expand enormously.
const MAX_OUTPUT_BYTES: u64 = 256 * 1024 * 1024;
/// Only the end of the worker's stderr is kept, for crash messages (the panic or abort reason).
const MAX_STDERR_BYTES: usize = 16 * 1024;
/// The parsers recurse over nested objects; legitimate deep documents need more than the
/// default 2 MiB thread stack. Hostile ones overflow any stack and end as a crash.
const PARSER_STACK_BYTES: u64 = 128 * 1024 * 1024;
/// Descriptors the worker may open: its three pipes and a few the runtime needs.
const MAX_OPEN_FILES: u64 = 32;
/// Threads and processes of the worker's user, when that user is kb's own unprivileged one.
const MAX_PROCESSES: u64 = 256;

/// Limits on extraction.
#[derive(Debug, Clone)]
pub struct ExtractLimits {
    /// The executable run as `<worker> __extract <format>`; `None` means the current
    /// executable, which is right for the `kb` binary (its `main` dispatches to
    /// [`child_main`]).
    pub worker: Option<PathBuf>,
    /// Wall-clock time extraction and chunking of one document get together.
    pub timeout: Duration,
    /// Address-space limit (RLIMIT_AS) of the worker.
    pub max_memory_bytes: u64,
    /// Most chunks one document may have; more fails the document.
    pub max_chunks: usize,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits { worker: None, timeout: Duration::from_secs(60), max_memory_bytes: 1 << 30, max_chunks: 20_000 }
    }
}

/// Extracts a document in a worker process under `limits`.
pub(super) fn extract(format: Format, bytes: &[u8], limits: &ExtractLimits) -> Result<Extracted, ExtractError> {
    let worker = match &limits.worker {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| ExtractError::Crashed(format!("cannot locate the kb executable: {e}")))?,
    };
    if !worker.is_file() {
        return Err(ExtractError::Crashed(format!(
            "cannot start the extraction worker {}: not found",
            worker.display()
        )));
    }
    let sandbox = Sandbox::for_this_process(&worker)?;
    // CPU time can never usefully exceed the wall-clock budget; the limit backs up the timeout
    // if the parent itself is stopped.
    let cpu_seconds = limits.timeout.as_secs().saturating_add(1);
    let mut command = Command::new(&sandbox.executable);
    command
        .arg(WORKER_ARG)
        .arg(format.as_str())
        .env_clear()
        .env(MEMORY_ENV, limits.max_memory_bytes.to_string())
        .env(CPU_ENV, cpu_seconds.to_string())
        .env("RUST_BACKTRACE", "0")
        // mimalloc (kb's allocator) reserves 1 GiB of address space per arena by default,
        // which alone would exceed the RLIMIT_AS the worker sets on itself.
        .env("MIMALLOC_ARENA_RESERVE", "32MiB")
        .current_dir(&sandbox.working_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = sandbox.user {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(gid).env(NPROC_ENV, MAX_PROCESSES.to_string());
    }
    let mut child = command.spawn().map_err(|e| {
        ExtractError::Crashed(format!("cannot start the extraction worker {}: {e}", sandbox.executable.display()))
    })?;

    // Three threads keep all pipes moving, so neither side blocks on a full pipe buffer: the
    // worker may write before it has read all of stdin.
    let input = bytes.to_vec();
    let stdin = child.stdin.take();
    let feeder = thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            // A worker that dies early closes the pipe; its exit status tells the story.
            let _ = stdin.write_all(&input);
        }
    });
    let stdout = child.stdout.take();
    let stdout_reader = thread::spawn(move || read_capped(stdout, MAX_OUTPUT_BYTES));
    let stderr = child.stderr.take();
    let stderr_reader = thread::spawn(move || read_capped(stderr, MAX_STDERR_BYTES as u64));

    let status = wait_with_timeout(&mut child, limits.timeout);
    let _ = feeder.join();
    let (stdout, stdout_overflow) = join_reader(stdout_reader);
    let (stderr, _) = join_reader(stderr_reader);

    let status = match status {
        Some(status) => status,
        None => return Err(ExtractError::Timeout(whole_seconds(limits.timeout))),
    };
    if stdout_overflow {
        return Err(ExtractError::TooLarge(MAX_OUTPUT_BYTES / (1024 * 1024)));
    }
    interpret(status, &stdout, &stderr)
}

/// Where and as whom the worker runs.
struct Sandbox {
    executable: PathBuf,
    working_dir: PathBuf,
    /// (uid, gid) to switch to: `nobody` when kb runs as root.
    user: Option<(u32, u32)>,
}

impl Sandbox {
    fn for_this_process(worker: &Path) -> Result<Sandbox, ExtractError> {
        let crashed = |what: &str, e: std::io::Error| ExtractError::Crashed(format!("{what}: {e}"));
        let root = effective_uid() == Some(0);
        let user = if root { nobody() } else { None };
        let base = if root { PathBuf::from("/var/lib/kb/extract") } else { std::env::temp_dir().join("kb-extract") };
        let working_dir = base.join("empty");
        if !working_dir.is_dir() {
            std::fs::create_dir_all(&working_dir).map_err(|e| crashed("creating the worker's directory", e))?;
        }
        let executable = match user {
            Some(_) if !world_executable(worker) => copy_for_others(worker, &base)?,
            _ => worker.to_path_buf(),
        };
        Ok(Sandbox { executable, working_dir, user })
    }
}

/// The effective user id, from `/proc` (no libc call needed).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The `nobody` user and its primary group, from `/etc/passwd`.
fn nobody() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("nobody:"))?;
    let mut fields = line.split(':').skip(2);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// Whether every user may run `path`: the file and each directory above it allow others in.
fn world_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(path) = path.canonicalize() else { return false };
    path.ancestors().all(|p| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// A copy of the worker executable that `nobody` may run, made once per build of it.
fn copy_for_others(worker: &Path, base: &Path) -> Result<PathBuf, ExtractError> {
    use std::os::unix::fs::PermissionsExt;
    let crashed = |e: std::io::Error| ExtractError::Crashed(format!("preparing the extraction worker: {e}"));
    let meta = std::fs::metadata(worker).map_err(crashed)?;
    let stamp = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
    let name = format!("kb-{}-{}", meta.len(), stamp.as_nanos());
    let target = base.join("bin").join(name);
    if target.is_file() {
        return Ok(target);
    }
    let dir = base.join("bin");
    std::fs::create_dir_all(&dir).map_err(crashed)?;
    for p in [base, dir.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).map_err(crashed)?;
    }
    // Copied under a temporary name, then renamed: another process never runs half a file.
    let partial = dir.join(format!(".partial-{}", uuid::Uuid::new_v4().simple()));
    std::fs::copy(worker, &partial).map_err(crashed)?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).map_err(crashed)?;
    std::fs::rename(&partial, &target).map_err(crashed)?;
    Ok(target)
}

/// A timeout in whole seconds, rounded up so that a sub-second timeout never reads as zero.
fn whole_seconds(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_nanos().div_ceil(1_000_000_000)).unwrap_or(u64::MAX)
}

/// Waits for the child for at most `timeout`; on timeout kills and reaps it and returns `None`.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    // std has no timed wait; polling a few hundred times a second costs nothing next to a parse.
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            // Timed out, or try_wait failed (the child is in an unknown state): either way it
            // must not outlive this call. Kill then wait, so no zombie is left behind.
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Reads a pipe to its end, keeping at most `cap` bytes. Reading continues past the cap (and
/// discards) so the writer is never blocked; the flag says whether anything was dropped.
fn read_capped(pipe: Option<impl Read>, cap: u64) -> (Vec<u8>, bool) {
    let Some(mut pipe) = pipe else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let _ = pipe.by_ref().take(cap).read_to_end(&mut kept);
    let dropped = std::io::copy(&mut pipe, &mut std::io::sink()).unwrap_or(0);
    (kept, dropped > 0)
}

fn join_reader(reader: JoinHandle<(Vec<u8>, bool)>) -> (Vec<u8>, bool) {
    reader.join().unwrap_or_default()
}

#[derive(Deserialize)]
struct WorkerError {
    error: Option<ExtractError>,
    panic: Option<String>,
}

/// Maps the worker's exit status and output to the document or an error.
fn interpret(status: ExitStatus, stdout: &[u8], stderr: &[u8]) -> Result<Extracted, ExtractError> {
    // The answer is the last line: anything a library printed before it is not ours.
    let stdout = String::from_utf8_lossy(stdout);
    let answer = stdout.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or_default();
    let code = status.code().and_then(|c| u8::try_from(c).ok());
    match code {
        Some(EXIT_OK) => serde_json::from_str::<Extracted>(answer)
            .map_err(|e| ExtractError::Crashed(format!("the extraction worker's answer was unreadable: {e}"))),
        Some(EXIT_REFUSED | EXIT_PANIC) => {
            let reported = serde_json::from_str::<WorkerError>(answer).ok();
            match reported {
                Some(WorkerError { error: Some(e), .. }) => Err(e),
                Some(WorkerError { panic: Some(msg), .. }) => {
                    Err(ExtractError::Crashed(format!("parser panic: {msg}")))
                }
                _ => Err(ExtractError::Crashed(describe_exit(status, stderr))),
            }
        }
        _ => Err(ExtractError::Crashed(describe_exit(status, stderr))),
    }
}

/// A one-line description of how the worker ended, with the last line of its stderr (the
/// runtime's reason for an abort: stack overflow, failed allocation).
fn describe_exit(status: ExitStatus, stderr: &[u8]) -> String {
    let how = match (status.code(), signal_of(status)) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}{}", signal_name(signal)),
        (None, None) => "ended abnormally".to_owned(),
    };
    let stderr = String::from_utf8_lossy(stderr);
    match stderr.lines().rev().map(str::trim).find(|line| !line.is_empty()) {
        Some(last) => format!("{how}: {}", last.chars().take(300).collect::<String>()),
        None => how,
    }
}

fn signal_of(status: ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        6 => " (SIGABRT: stack overflow or out of memory)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        24 => " (SIGXCPU: CPU time limit)",
        _ => "",
    }
}

/// The worker: `kb __extract <format>`. Reads a document on stdin and answers on stdout as
/// described in the module documentation. Limits come from the parent through the
/// environment.
pub fn child_main() -> ExitCode {
    close_inherited_descriptors();
    let defaults = ExtractLimits::default();
    let max_memory = env_u64(MEMORY_ENV).unwrap_or(defaults.max_memory_bytes);
    let cpu_seconds = env_u64(CPU_ENV).unwrap_or(defaults.timeout.as_secs() + 1);
    apply_limits(max_memory, cpu_seconds, env_u64(NPROC_ENV));

    let format = std::env::args().nth(2).and_then(|f| Format::from_path(Path::new(&format!("x.{f}"))));
    let Some(format) = format else {
        let error = ExtractError::Unsupported(std::env::args().nth(2).unwrap_or_default());
        return answer(EXIT_REFUSED, &serde_json::json!({ "error": error }));
    };
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        return answer(EXIT_PANIC, &serde_json::json!({ "panic": format!("reading the document: {e}") }));
    }
    // Leave a good part of the address space for the heap.
    let stack = PARSER_STACK_BYTES.min(max_memory / 4).max(8 * 1024 * 1024);
    let parser = thread::Builder::new()
        .name("parser".into())
        .stack_size(usize::try_from(stack).unwrap_or(usize::MAX))
        .spawn(move || catch_unwind(AssertUnwindSafe(|| super::extract_here(format, &bytes))));
    let outcome = match parser {
        Ok(handle) => handle.join(),
        Err(e) => {
            return answer(EXIT_PANIC, &serde_json::json!({ "panic": format!("cannot start the parser thread: {e}") }));
        }
    };
    match outcome {
        Ok(Ok(Ok(doc))) => answer(EXIT_OK, &serde_json::json!(doc)),
        Ok(Ok(Err(error))) => answer(EXIT_REFUSED, &serde_json::json!({ "error": error })),
        Ok(Err(payload)) | Err(payload) => {
            answer(EXIT_PANIC, &serde_json::json!({ "panic": panic_message(payload.as_ref()) }))
        }
    }
}

/// Closes every descriptor beyond stdin, stdout and stderr. kb opens its files and sockets
/// close-on-exec, but a descriptor kb itself inherited without that flag (from a shell or a
/// build tool) would otherwise reach the parser.
fn close_inherited_descriptors() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return };
    let fds: Vec<i32> =
        entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).filter(|&fd| fd > 2).collect();
    for fd in fds {
        // The directory listing's own descriptor is already gone: EBADF is expected.
        let _ = nix::unistd::close(fd);
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Caps the worker's address space, CPU time, open files and (as kb's unprivileged user)
/// processes. Failure to set a limit is reported on stderr but does not stop the parse: the
/// parent's timeout still bounds it.
fn apply_limits(max_memory: u64, cpu_seconds: u64, max_processes: Option<u64>) {
    if let Err(e) = rlimit::Resource::AS.set(max_memory, max_memory) {
        eprintln!("kb extraction worker: cannot set RLIMIT_AS: {e}");
    }
    // The soft limit sends SIGXCPU; the hard one, a second later, SIGKILL.
    if let Err(e) = rlimit::Resource::CPU.set(cpu_seconds, cpu_seconds.saturating_add(1)) {
        eprintln!("kb extraction worker: cannot set RLIMIT_CPU: {e}");
    }
    if let Err(e) = rlimit::Resource::NOFILE.set(MAX_OPEN_FILES, MAX_OPEN_FILES) {
        eprintln!("kb extraction worker: cannot set RLIMIT_NOFILE: {e}");
    }
    if let Some(n) = max_processes
        && let Err(e) = rlimit::Resource::NPROC.set(n, n)
    {
        eprintln!("kb extraction worker: cannot set RLIMIT_NPROC: {e}");
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

fn answer(code: u8, value: &serde_json::Value) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{value}").and_then(|()| stdout.flush()).is_err() {
        // The parent is gone or stopped listening: nobody to answer.
        return ExitCode::from(EXIT_PANIC);
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn worker_exits_map_to_errors() {
        let ok = ExitStatus::from_raw(0);
        let doc = r#"{"format":"Text","title":null,"sections":[{"text":"a","location":"Whole"}]}"#;
        let parsed = interpret(ok, format!("noise\n{doc}\n").as_bytes(), b"").expect("a document");
        assert_eq!(parsed.text(), "a");
        let refused = ExitStatus::from_raw(2 << 8);
        assert_eq!(
            interpret(refused, br#"{"error":{"Pdf":"bad xref"}}"#, b""),
            Err(ExtractError::Pdf("bad xref".into()))
        );
        assert_eq!(interpret(refused, br#"{"error":"Empty"}"#, b""), Err(ExtractError::Empty));
        let panic = ExitStatus::from_raw(3 << 8);
        assert_eq!(
            interpret(panic, b"{\"panic\":\"index out of bounds\"}\n", b""),
            Err(ExtractError::Crashed("parser panic: index out of bounds".into()))
        );
        let abort = ExitStatus::from_raw(6);
        let Err(ExtractError::Crashed(msg)) = interpret(abort, b"", b"thread 'parser' has overflowed its stack\n")
        else {
            panic!("an abort is a crash")
        };
        assert!(msg.contains("signal 6") && msg.contains("overflowed its stack"), "{msg}");
    }

    #[test]
    fn the_effective_user_is_read_from_proc() {
        assert!(effective_uid().is_some());
    }
}
