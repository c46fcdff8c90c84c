//! PDF: text per page via `pdf-extract`, parsed in a child process so that a hostile file that
//! makes the parser panic, loop, exhaust memory or overflow its stack costs one failed document,
//! never the server.
//!
//! Protocol with the worker (`kb __extract-pdf`, see [`child_main`]): the parent writes the PDF
//! to the worker's stdin and closes it; the worker answers on stdout with one line of JSON and an
//! exit code:
//! - exit 0 ([`EXIT_OK`]): `["page 1 text", "page 2 text", ...]`
//! - exit 2 ([`EXIT_PARSE_ERROR`]): `{"error": "..."}`, the file is not a PDF the parser can read
//! - exit 3 ([`EXIT_PANIC`]): `{"panic": "..."}`, the parser panicked on this file
//!
//! Anything else (another exit code, death by a signal such as SIGABRT on stack overflow or
//! allocation failure under RLIMIT_AS, SIGXCPU under RLIMIT_CPU) is a crash.

use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::outline::tidy;
use super::{ExtractError, Extracted, Format, Location, Section};

/// The first argument that makes the `kb` binary act as the PDF worker.
pub const WORKER_ARG: &str = "__extract-pdf";
/// Worker exit code: the pages are on stdout.
pub const EXIT_OK: u8 = 0;
/// Worker exit code: the parser rejected the file; `{"error": ..}` is on stdout.
pub const EXIT_PARSE_ERROR: u8 = 2;
/// Worker exit code: the parser panicked; `{"panic": ..}` is on stdout.
pub const EXIT_PANIC: u8 = 3;

/// Environment variables through which the parent hands its limits to the worker.
const MEMORY_ENV: &str = "KB_PDF_WORKER_MAX_MEMORY";
const CPU_ENV: &str = "KB_PDF_WORKER_MAX_CPU_SECONDS";

/// Extracted text beyond this is refused: a small hostile PDF can expand enormously.
const MAX_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;
/// Only the end of the worker's stderr is kept, for crash messages (the panic or abort reason).
const MAX_STDERR_BYTES: usize = 16 * 1024;
/// The parser recurses over nested PDF objects; legitimate deep documents need more than the
/// default 2 MiB thread stack. Hostile ones overflow any stack and end as a crash.
const PARSER_STACK_BYTES: u64 = 128 * 1024 * 1024;

/// Limits on the PDF worker process.
#[derive(Debug, Clone)]
pub struct PdfLimits {
    /// The executable run as `<worker> __extract-pdf`; `None` means the current executable,
    /// which is right for the `kb` binary (its `main` dispatches to [`child_main`]).
    pub worker: Option<PathBuf>,
    /// Wall-clock time the worker gets before it is killed.
    pub timeout: Duration,
    /// Address-space limit (RLIMIT_AS) of the worker.
    pub max_memory_bytes: u64,
}

impl Default for PdfLimits {
    fn default() -> Self {
        PdfLimits { worker: None, timeout: Duration::from_secs(30), max_memory_bytes: 1 << 30 }
    }
}

/// Extracts a PDF's pages in a worker process; each non-empty page becomes a section.
pub(super) fn extract(bytes: &[u8], limits: &PdfLimits) -> Result<Extracted, ExtractError> {
    let pages = run_worker(bytes, limits)?;
    Ok(to_extracted(pages))
}

/// The in-process parse, run by the worker: one string per page.
fn parse_pages(bytes: &[u8]) -> Result<Vec<String>, String> {
    pdf_extract::extract_text_from_mem_by_pages(bytes).map_err(|e| e.to_string())
}

fn to_extracted(pages: Vec<String>) -> Extracted {
    let sections = pages
        .iter()
        .zip(1u32..)
        .map(|(page, number)| Section { text: normalise_page(page), location: Location::Page(number) })
        .filter(|section| !section.text.is_empty())
        .collect();
    Extracted { format: Format::Pdf, title: None, sections }
}

/// Rebuilds paragraphs from the parser's output, which breaks a line wherever the PDF placed a
/// new line of glyphs and puts blank lines where the vertical gap is large (between paragraphs,
/// around headings). Wrapped lines are joined with a space (or nothing after a hyphen at the end
/// of a word); list items keep their own line.
fn normalise_page(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut line_open = false;
    for line in raw.lines() {
        let line: String = line.split_whitespace().collect::<Vec<_>>().join(" ");
        let line: String = line.chars().filter(|c| !c.is_control()).collect();
        if line.is_empty() {
            if line_open {
                out.push_str("\n\n");
                line_open = false;
            }
            continue;
        }
        if line_open {
            if starts_list_item(&line) {
                out.push('\n');
            } else if !ends_with_word_hyphen(&out) {
                out.push(' ');
            }
        }
        out.push_str(&line);
        line_open = true;
    }
    tidy(&out)
}

fn starts_list_item(line: &str) -> bool {
    let first = line.split(' ').next().unwrap_or_default();
    matches!(first, "\u{2022}" | "-" | "*" | "\u{2013}" | "\u{25aa}" | "\u{25cf}")
        || first.strip_suffix(['.', ')']).is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// "self-" at the end of a line: the word continues on the next line without a space.
fn ends_with_word_hyphen(text: &str) -> bool {
    let mut tail = text.chars().rev();
    tail.next() == Some('-') && tail.next().is_some_and(char::is_alphabetic)
}

/// Runs the worker on `bytes` under `limits` and returns its pages.
fn run_worker(bytes: &[u8], limits: &PdfLimits) -> Result<Vec<String>, ExtractError> {
    let worker = match &limits.worker {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| ExtractError::PdfCrashed(format!("cannot locate the kb executable: {e}")))?,
    };
    // CPU time can never usefully exceed the wall-clock budget; the limit backs up the timeout
    // if the parent itself is stopped.
    let cpu_seconds = limits.timeout.as_secs().saturating_add(1);
    let mut child = Command::new(&worker)
        .arg(WORKER_ARG)
        .env(MEMORY_ENV, limits.max_memory_bytes.to_string())
        .env(CPU_ENV, cpu_seconds.to_string())
        .env("RUST_BACKTRACE", "0")
        // mimalloc (kb's allocator) reserves 1 GiB of address space per arena by default,
        // which alone would exceed the RLIMIT_AS the worker sets on itself.
        .env("MIMALLOC_ARENA_RESERVE", "32MiB")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ExtractError::PdfCrashed(format!("cannot start the PDF worker {}: {e}", worker.display())))?;

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
        None => return Err(ExtractError::PdfTimeout(whole_seconds(limits.timeout))),
    };
    if stdout_overflow {
        return Err(ExtractError::Pdf(format!("its text is larger than {} MiB", MAX_OUTPUT_BYTES / (1024 * 1024))));
    }
    interpret(status, &stdout, &stderr)
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
    error: Option<String>,
    panic: Option<String>,
}

/// Maps the worker's exit status and output to pages or an error.
fn interpret(status: ExitStatus, stdout: &[u8], stderr: &[u8]) -> Result<Vec<String>, ExtractError> {
    // The answer is the last line: anything a library printed before it is not ours.
    let stdout = String::from_utf8_lossy(stdout);
    let answer = stdout.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or_default();
    let code = status.code().and_then(|c| u8::try_from(c).ok());
    match code {
        Some(EXIT_OK) => serde_json::from_str::<Vec<String>>(answer)
            .map_err(|e| ExtractError::PdfCrashed(format!("the PDF worker's answer was unreadable: {e}"))),
        Some(EXIT_PARSE_ERROR | EXIT_PANIC) => {
            let reported = serde_json::from_str::<WorkerError>(answer).ok();
            match reported {
                Some(WorkerError { error: Some(msg), .. }) => Err(ExtractError::Pdf(msg)),
                Some(WorkerError { panic: Some(msg), .. }) => {
                    Err(ExtractError::PdfCrashed(format!("parser panic: {msg}")))
                }
                _ => Err(ExtractError::PdfCrashed(describe_exit(status, stderr))),
            }
        }
        _ => Err(ExtractError::PdfCrashed(describe_exit(status, stderr))),
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

#[cfg(unix)]
fn signal_of(status: ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

#[cfg(not(unix))]
fn signal_of(_status: ExitStatus) -> Option<i32> {
    None
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

/// The worker: `kb __extract-pdf`. Reads a PDF on stdin and answers on stdout as described in
/// the module documentation. Limits come from the parent through the environment.
pub fn child_main() -> ExitCode {
    let max_memory = env_u64(MEMORY_ENV).unwrap_or(PdfLimits::default().max_memory_bytes);
    let cpu_seconds = env_u64(CPU_ENV).unwrap_or(PdfLimits::default().timeout.as_secs() + 1);
    apply_limits(max_memory, cpu_seconds);

    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        return answer(EXIT_PARSE_ERROR, &serde_json::json!({ "error": format!("reading the PDF: {e}") }));
    }
    // Leave a good part of the address space for the heap.
    let stack = PARSER_STACK_BYTES.min(max_memory / 4).max(8 * 1024 * 1024);
    let parser = thread::Builder::new()
        .name("pdf-parser".into())
        .stack_size(usize::try_from(stack).unwrap_or(usize::MAX))
        .spawn(move || catch_unwind(AssertUnwindSafe(|| parse_pages(&bytes))));
    let outcome = match parser {
        Ok(handle) => handle.join(),
        Err(e) => {
            return answer(EXIT_PANIC, &serde_json::json!({ "panic": format!("cannot start the parser thread: {e}") }));
        }
    };
    match outcome {
        Ok(Ok(Ok(pages))) => answer(EXIT_OK, &serde_json::json!(pages)),
        Ok(Ok(Err(msg))) => answer(EXIT_PARSE_ERROR, &serde_json::json!({ "error": msg })),
        Ok(Err(payload)) | Err(payload) => {
            answer(EXIT_PANIC, &serde_json::json!({ "panic": panic_message(payload.as_ref()) }))
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Caps the worker's address space and CPU time. Failure to set a limit is reported on stderr
/// but does not stop the parse: the parent's timeout still bounds it.
fn apply_limits(max_memory: u64, cpu_seconds: u64) {
    if let Err(e) = rlimit::Resource::AS.set(max_memory, max_memory) {
        eprintln!("kb pdf worker: cannot set RLIMIT_AS: {e}");
    }
    // The soft limit sends SIGXCPU; the hard one, a second later, SIGKILL.
    if let Err(e) = rlimit::Resource::CPU.set(cpu_seconds, cpu_seconds.saturating_add(1)) {
        eprintln!("kb pdf worker: cannot set RLIMIT_CPU: {e}");
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

    fn sample(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_docs").join(name);
        std::fs::read(path).expect("sample pdf exists")
    }

    #[test]
    fn the_sample_pdf_parses_in_process_into_numbered_pages() {
        let pages = parse_pages(&sample("pricing-and-billing.pdf")).expect("parses");
        assert!(pages.len() >= 2, "multi-page sample, got {}", pages.len());
        let doc = to_extracted(pages);
        assert_eq!(doc.sections[0].location, Location::Page(1));
        assert_eq!(doc.sections[1].location, Location::Page(2));
        let first = &doc.sections[0].text;
        assert!(first.starts_with("Lighthouse Pricing Plans and Billing Guide"), "{first}");
        assert!(first.contains("Annual billing saves roughly 16 percent"), "words are not glued: {first}");
        let all = doc.text();
        assert!(all.contains("Upgrading and downgrading"), "the last page is read");
    }

    #[test]
    fn every_sample_pdf_reads_back_as_words() {
        for name in [
            "pricing-and-billing.pdf",
            "refund-and-cancellation-policy.pdf",
            "data-privacy-policy.pdf",
            "security-overview.pdf",
        ] {
            let doc = to_extracted(parse_pages(&sample(name)).expect(name));
            let text = doc.text();
            let words: Vec<&str> = text.split_whitespace().collect();
            let longest = words.iter().map(|w| w.chars().count()).max().unwrap_or(0);
            assert!(words.len() > 500, "{name}: {} words", words.len());
            assert!(longest < 40, "{name}: a {longest}-char word means glued text");
        }
    }

    #[test]
    fn wrapped_lines_are_joined_and_paragraphs_kept() {
        let raw = "\n\nTitle\n\nFirst line of a para-\ngraph that wraps\nonto   three lines.\n\n\n\
                   \u{2022} item one\n\u{2022} item two\n1. step\n\n\nEnd.  \n";
        assert_eq!(
            normalise_page(raw),
            "Title\n\nFirst line of a para-graph that wraps onto three lines.\n\n\u{2022} item one\n\
             \u{2022} item two\n1. step\n\nEnd."
        );
    }

    #[test]
    fn a_garbled_pdf_is_a_parse_error_in_process() {
        assert!(parse_pages(b"%PDF-1.7\nthis is not really a pdf").is_err());
        assert!(parse_pages(b"").is_err());
    }

    #[test]
    fn empty_pages_are_not_sections_but_keep_their_numbers() {
        let doc = to_extracted(vec!["one".into(), "  \n ".into(), "three".into()]);
        let pages: Vec<&Location> = doc.sections.iter().map(|s| &s.location).collect();
        assert_eq!(pages, vec![&Location::Page(1), &Location::Page(3)]);
    }

    #[cfg(unix)]
    #[test]
    fn worker_exits_map_to_errors() {
        use std::os::unix::process::ExitStatusExt;
        let ok = ExitStatus::from_raw(0);
        assert_eq!(interpret(ok, b"noise\n[\"a\",\"b\"]\n", b""), Ok(vec!["a".into(), "b".into()]));
        let parse = ExitStatus::from_raw(2 << 8);
        assert_eq!(interpret(parse, b"{\"error\":\"bad xref\"}\n", b""), Err(ExtractError::Pdf("bad xref".into())));
        let panic = ExitStatus::from_raw(3 << 8);
        assert_eq!(
            interpret(panic, b"{\"panic\":\"index out of bounds\"}\n", b""),
            Err(ExtractError::PdfCrashed("parser panic: index out of bounds".into()))
        );
        let abort = ExitStatus::from_raw(6);
        let Err(ExtractError::PdfCrashed(msg)) =
            interpret(abort, b"", b"thread 'pdf-parser' has overflowed its stack\n")
        else {
            panic!("an abort is a crash")
        };
        assert!(msg.contains("signal 6") && msg.contains("overflowed its stack"), "{msg}");
    }
}
