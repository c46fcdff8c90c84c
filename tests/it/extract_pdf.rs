//! The PDF worker process end to end: the real `kb` binary as the worker on good and hostile
//! PDFs, and stand-in workers (shell scripts) that hang, crash or flood their pipes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kb::extract::{ExtractError, Format, Location, PdfLimits, extract};

fn kb_worker() -> PdfLimits {
    PdfLimits { worker: Some(PathBuf::from(env!("CARGO_BIN_EXE_kb"))), ..PdfLimits::default() }
}

fn repo_file(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect("repository file exists")
}

/// A stand-in worker: a shell script that does whatever the test needs.
///
/// The script is written by a `sh` child, not by this process: a file this process held open
/// for writing would be inherited for an instant by workers that other test threads fork, and
/// exec'ing the script would then fail with ETXTBSY ("text file busy").
#[cfg(unix)]
fn script_worker(dir: &tempfile::TempDir, body: &str) -> PdfLimits {
    let path = dir.path().join("worker.sh");
    let status = std::process::Command::new("/bin/sh")
        .args(["-c", "printf '#!/bin/sh\\n%s\\n' \"$1\" > \"$2\" && chmod 755 \"$2\"", "sh", body])
        .arg(&path)
        .status()
        .expect("run sh");
    assert!(status.success(), "writing the script failed");
    PdfLimits { worker: Some(path), timeout: Duration::from_secs(10), ..PdfLimits::default() }
}

#[test]
fn a_good_pdf_comes_back_as_numbered_pages() {
    let doc = extract(Format::Pdf, &repo_file("sample_docs/refund-and-cancellation-policy.pdf"), &kb_worker())
        .expect("the sample parses");
    assert!(doc.sections.len() >= 2, "multi-page, got {}", doc.sections.len());
    for (i, section) in doc.sections.iter().enumerate() {
        assert_eq!(section.location, Location::Page(i as u32 + 1));
    }
    assert!(doc.sections[0].text.starts_with("Refund and Cancellation Policy"));
    assert!(doc.text().contains("Pausing instead of cancelling"), "the last pages are read");
}

#[test]
fn a_malformed_pdf_is_an_error_not_a_panic() {
    let result = extract(Format::Pdf, &repo_file("tests/fixtures/hostile/malformed.pdf"), &kb_worker());
    assert!(matches!(result, Err(ExtractError::Pdf(_) | ExtractError::PdfCrashed(_))), "got {result:?}");
}

#[test]
fn bytes_that_are_not_a_pdf_are_a_parse_error() {
    let result = extract(Format::Pdf, b"hello, I am plain text", &kb_worker());
    assert!(matches!(result, Err(ExtractError::Pdf(_))), "got {result:?}");
}

#[test]
fn a_worker_that_overruns_its_timeout_is_killed() {
    let limits = PdfLimits { timeout: Duration::from_nanos(1), ..kb_worker() };
    let result = extract(Format::Pdf, &repo_file("sample_docs/security-overview.pdf"), &limits);
    assert_eq!(result, Err(ExtractError::PdfTimeout(1)));
}

#[cfg(unix)]
#[test]
fn a_hanging_worker_is_killed_at_the_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = PdfLimits { timeout: Duration::from_millis(300), ..script_worker(&dir, "exec sleep 30") };
    let started = Instant::now();
    let result = extract(Format::Pdf, b"%PDF-1.4", &limits);
    assert_eq!(result, Err(ExtractError::PdfTimeout(1)));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[cfg(unix)]
#[test]
fn a_worker_killed_by_a_signal_is_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = script_worker(&dir, "echo 'memory allocation of 99 bytes failed' >&2\nkill -ABRT $$");
    let result = extract(Format::Pdf, b"%PDF-1.4", &limits);
    let Err(ExtractError::PdfCrashed(msg)) = result else { panic!("expected a crash, got {result:?}") };
    assert!(msg.contains("signal 6") && msg.contains("memory allocation"), "{msg}");
}

#[cfg(unix)]
#[test]
fn a_chatty_worker_that_ignores_its_input_does_not_deadlock() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Floods stderr and stdout (far past the pipe buffers) before reading any input, then
    // answers with one page.
    let limits = script_worker(
        &dir,
        "head -c 3000000 /dev/zero | tr '\\0' x >&2\nhead -c 3000000 /dev/zero | tr '\\0' y\n\
         echo\ncat > /dev/null\necho '[\"one page\"]'",
    );
    let big_input = vec![b'%'; 4_000_000];
    let doc = extract(Format::Pdf, &big_input, &limits).expect("answered");
    assert_eq!(doc.text(), "one page");
}

#[test]
fn a_missing_worker_is_a_clear_error() {
    let limits = PdfLimits { worker: Some(PathBuf::from("/nonexistent/kb")), ..PdfLimits::default() };
    let result = extract(Format::Pdf, b"%PDF-1.4", &limits);
    let Err(ExtractError::PdfCrashed(msg)) = result else { panic!("got {result:?}") };
    assert!(msg.contains("/nonexistent/kb"), "{msg}");
}

#[test]
fn a_tight_memory_limit_fails_cleanly() {
    // 16 MiB of address space is not enough to even start the parser thread's stack.
    let limits = PdfLimits { max_memory_bytes: 16 * 1024 * 1024, ..kb_worker() };
    let result = extract(Format::Pdf, &repo_file("sample_docs/pricing-and-billing.pdf"), &limits);
    assert!(matches!(result, Err(ExtractError::PdfCrashed(_))), "got {result:?}");
}

#[test]
fn a_pdf_that_panics_the_parser_is_a_crash_and_the_caller_lives_on() {
    // Text operators with no operands: pdf-extract indexes past the end of its operand list.
    let result = extract(Format::Pdf, &repo_file("tests/fixtures/hostile/parser-panic.pdf"), &kb_worker());
    let Err(ExtractError::PdfCrashed(msg)) = result else { panic!("got {result:?}") };
    assert!(msg.contains("panic"), "{msg}");
    // The same worker still serves the next document.
    let next = extract(Format::Pdf, &repo_file("sample_docs/pricing-and-billing.pdf"), &kb_worker());
    assert!(next.is_ok(), "got {next:?}");
}
