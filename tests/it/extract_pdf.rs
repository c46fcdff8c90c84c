//! The extraction worker process end to end: the real `kb` binary as the worker on good and
//! hostile PDFs, and stand-in workers (shell scripts) that hang, crash or flood their pipes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kb::extract::{ExtractError, ExtractLimits, Format, Location, extract};

fn kb_worker() -> ExtractLimits {
    ExtractLimits { worker: Some(PathBuf::from(env!("CARGO_BIN_EXE_kb"))), ..ExtractLimits::default() }
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
fn script_worker(dir: &tempfile::TempDir, body: &str) -> ExtractLimits {
    let path = dir.path().join("worker.sh");
    let status = std::process::Command::new("/bin/sh")
        .args(["-c", "printf '#!/bin/sh\\n%s\\n' \"$1\" > \"$2\" && chmod 755 \"$2\"", "sh", body])
        .arg(&path)
        .status()
        .expect("run sh");
    assert!(status.success(), "writing the script failed");
    ExtractLimits { worker: Some(path), timeout: Duration::from_secs(10), ..ExtractLimits::default() }
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
    assert!(matches!(result, Err(ExtractError::Pdf(_) | ExtractError::Crashed(_))), "got {result:?}");
}

#[test]
fn bytes_that_are_not_a_pdf_are_a_parse_error() {
    let result = extract(Format::Pdf, b"hello, I am plain text", &kb_worker());
    assert!(matches!(result, Err(ExtractError::Pdf(_))), "got {result:?}");
}

#[test]
fn a_worker_that_overruns_its_timeout_is_killed() {
    let limits = ExtractLimits { timeout: Duration::from_nanos(1), ..kb_worker() };
    let result = extract(Format::Pdf, &repo_file("sample_docs/security-overview.pdf"), &limits);
    assert_eq!(result, Err(ExtractError::Timeout(1)));
}

#[cfg(unix)]
#[test]
fn a_hanging_worker_is_killed_at_the_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = ExtractLimits { timeout: Duration::from_millis(300), ..script_worker(&dir, "exec sleep 30") };
    let started = Instant::now();
    let result = extract(Format::Pdf, b"%PDF-1.4", &limits);
    assert_eq!(result, Err(ExtractError::Timeout(1)));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[cfg(unix)]
#[test]
fn a_worker_killed_by_a_signal_is_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = script_worker(&dir, "echo 'memory allocation of 99 bytes failed' >&2\nkill -ABRT $$");
    let result = extract(Format::Pdf, b"%PDF-1.4", &limits);
    let Err(ExtractError::Crashed(msg)) = result else { panic!("expected a crash, got {result:?}") };
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
         echo\ncat > /dev/null\n\
         echo '{\"format\":\"Pdf\",\"title\":null,\"sections\":[{\"text\":\"one page\",\"location\":{\"Page\":1}}]}'",
    );
    let big_input = vec![b'%'; 4_000_000];
    let doc = extract(Format::Pdf, &big_input, &limits).expect("answered");
    assert_eq!(doc.text(), "one page");
}

#[test]
fn a_missing_worker_is_a_clear_error() {
    let limits = ExtractLimits { worker: Some(PathBuf::from("/nonexistent/kb")), ..ExtractLimits::default() };
    let result = extract(Format::Pdf, b"%PDF-1.4", &limits);
    let Err(ExtractError::Crashed(msg)) = result else { panic!("got {result:?}") };
    assert!(msg.contains("/nonexistent/kb"), "{msg}");
}

#[test]
fn a_tight_memory_limit_fails_cleanly() {
    // 16 MiB of address space is not enough to even start the parser thread's stack.
    let limits = ExtractLimits { max_memory_bytes: 16 * 1024 * 1024, ..kb_worker() };
    let result = extract(Format::Pdf, &repo_file("sample_docs/pricing-and-billing.pdf"), &limits);
    assert!(matches!(result, Err(ExtractError::Crashed(_))), "got {result:?}");
}

#[test]
fn a_pdf_that_panics_the_parser_is_a_crash_and_the_caller_lives_on() {
    // Text operators with no operands: pdf-extract indexes past the end of its operand list.
    let result = extract(Format::Pdf, &repo_file("tests/fixtures/hostile/parser-panic.pdf"), &kb_worker());
    let Err(ExtractError::Crashed(msg)) = result else { panic!("got {result:?}") };
    assert!(msg.contains("panic"), "{msg}");
    // The same worker still serves the next document.
    let next = extract(Format::Pdf, &repo_file("sample_docs/pricing-and-billing.pdf"), &kb_worker());
    assert!(next.is_ok(), "got {next:?}");
}

/// What the worker process was given, as a stand-in worker saw it. The variables the worker
/// may see: its limits, the allocator's setting, and what the shell sets for itself.
#[cfg(unix)]
#[tokio::test]
async fn the_worker_gets_no_secrets_no_descriptors_and_no_way_into_the_cluster() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = crate::helpers::test_cluster();
    cluster.ensure_running("postgres").await.expect("cluster");
    let out = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(out.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let o = out.path().display();
    let body = format!(
        "/usr/bin/env > {o}/env\n/usr/bin/id -u > {o}/uid\n/bin/pwd > {o}/cwd\n/bin/ls -l /proc/self/fd > {o}/fds\n\
         /usr/bin/psql -h {sock} -p {port} -U postgres -d postgres -Atc 'select 1' > {o}/psql 2>&1\n\
         echo $? > {o}/psql_rc\ncat > /dev/null\n\
         echo '{{\"format\":\"Pdf\",\"title\":null,\"sections\":[{{\"text\":\"x\",\"location\":{{\"Page\":1}}}}]}}'",
        sock = cluster.socket_dir().display(),
        port = cluster.port(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let limits = script_worker(&dir, &body);
    let doc = extract(Format::Pdf, b"%PDF-1.4", &limits).expect("the stand-in answers");
    assert_eq!(doc.text(), "x");
    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap_or_default();

    let names: Vec<String> = read("env").lines().filter_map(|l| l.split('=').next()).map(str::to_string).collect();
    let allowed = [
        "KB_EXTRACT_WORKER_MAX_MEMORY",
        "KB_EXTRACT_WORKER_MAX_CPU_SECONDS",
        "KB_EXTRACT_WORKER_MAX_PROCESSES",
        "RUST_BACKTRACE",
        "MIMALLOC_ARENA_RESERVE",
        "PWD",
        "SHLVL",
        "_",
        "OLDPWD",
    ];
    let leaked: Vec<&String> = names.iter().filter(|n| !allowed.contains(&n.as_str())).collect();
    assert!(leaked.is_empty(), "the worker inherited {leaked:?}");
    assert!(names.iter().any(|n| n == "KB_EXTRACT_WORKER_MAX_MEMORY"), "the limits are passed: {names:?}");

    // Beyond stdin, stdout, stderr and the shell's own script, only descriptors this test
    // process itself inherited without close-on-exec (a build tool's jobserver pipes, which the
    // real worker closes first thing) may reach a worker: nothing kb opened.
    let inherited_here: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("fds")
        .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_string))
        .filter(|fd| {
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).map(str::trim).unwrap_or("0");
            u32::from_str_radix(flags, 8).is_ok_and(|f| f & 0o2000000 == 0)
        })
        .collect();
    let listing: Vec<(String, String)> = read("fds")
        .lines()
        .filter_map(|l| l.split_once(" -> "))
        .map(|(left, target)| (left.split_whitespace().last().unwrap_or_default().to_string(), target.to_string()))
        .collect();
    // The shell keeps copies of its own stdio around redirections: the same pipes as 0, 1, 2.
    let stdio: Vec<&String> =
        listing.iter().filter(|(fd, _)| ["0", "1", "2"].contains(&fd.as_str())).map(|(_, t)| t).collect();
    for (fd, target) in &listing {
        let allowed = stdio.contains(&target)
            || target.ends_with("worker.sh")
            || target.starts_with("/proc/")
            || inherited_here.iter().any(|f| f == fd);
        assert!(allowed && !target.starts_with("socket:"), "the worker inherited {fd} -> {target}:\n{}", read("fds"));
    }
    let cwd = read("cwd");
    assert!(cwd.trim().ends_with("/empty"), "working directory {cwd:?}");
    let is_empty = std::fs::read_dir(cwd.trim()).map(|mut d| d.next().is_none()).unwrap_or(false);
    assert!(is_empty, "the working directory is empty");

    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false);
    if root {
        assert_ne!(read("uid").trim(), "0", "as root, the worker runs as an unprivileged user");
        assert_ne!(read("psql_rc").trim(), "0", "the worker reached the cluster: {}", read("psql"));
    }
}
