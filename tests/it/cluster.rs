//! The embedded cluster against the real PostgreSQL binaries: init, idempotent start, pgvector,
//! concurrent callers, stop and restart.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kb::cluster::{Cluster, Status};
use sqlx::Connection;

/// Stops the cluster even when an assertion fails halfway.
struct StopOnDrop(Cluster);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let cluster = self.0.clone();
        // Drop runs inside the test's runtime: stop from a separate thread with its own runtime.
        let _ = std::thread::spawn(move || tokio::runtime::Runtime::new().expect("runtime").block_on(cluster.stop()))
            .join();
    }
}

async fn select_one(url: &str) -> i32 {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await.expect("SELECT 1");
    conn.close().await.expect("close");
    one
}

/// A temp dir the `postgres` user can traverse when the tests run as root (whatever the umask).
fn reachable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_cluster_lifecycle() {
    let tmp = reachable_tempdir();
    let data_dir = tmp.path().join("kb-data");
    let cluster = Cluster::new(&data_dir).expect("cluster");
    let guard = StopOnDrop(cluster.clone());

    assert_eq!(cluster.status().await.expect("status"), Status::NotInitialised);
    assert!(cluster.pg_dir().starts_with(cluster.data_dir()), "in-place layout expected");

    let url = cluster.ensure_running("kb_test").await.expect("first ensure_running");
    assert_eq!(url, cluster.database_url("kb_test"));
    let again = cluster.ensure_running("kb_test").await.expect("second ensure_running");
    assert_eq!(url, again);
    assert_eq!(select_one(&url).await, 1);

    // pgvector is installed and usable.
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS vector").execute(&mut conn).await.expect("create extension vector");
    let dist: f64 = sqlx::query_scalar("SELECT '[1,0]'::vector <=> '[0,1]'::vector")
        .fetch_one(&mut conn)
        .await
        .expect("vector query");
    assert!((dist - 1.0).abs() < 1e-9);
    // No TCP listener: unix socket only.
    let listen: String = sqlx::query_scalar("SHOW listen_addresses").fetch_one(&mut conn).await.expect("show");
    assert_eq!(listen, "");
    // Shared buffers: a quarter of the machine's (or container's) memory, 128 MB to 8 GB.
    let expected_mb = kb::host::memory_kb().map_or(256, |kb| (kb / 4).clamp(128 * 1024, 8 * 1024 * 1024) / 1024);
    let shared_kb: i64 = sqlx::query_scalar(
        "SELECT setting::bigint * current_setting('block_size')::bigint / 1024 FROM pg_settings WHERE name = 'shared_buffers'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("shared_buffers");
    assert_eq!(shared_kb, expected_mb * 1024, "shared_buffers");
    for (setting, expected) in
        [("maintenance_work_mem", "512MB"), ("max_connections", "200"), ("fsync", "on"), ("server_encoding", "UTF8")]
    {
        let value: String = sqlx::query_scalar(&format!("SHOW {setting}")).fetch_one(&mut conn).await.expect("show");
        assert_eq!(value, expected, "{setting}");
    }
    conn.close().await.expect("close");

    let Status::Running { pid } = cluster.status().await.expect("status") else {
        panic!("cluster should be running");
    };
    assert!(pid > 0);
    assert!(format!("{}", Status::Running { pid }).contains(&pid.to_string()));

    // Concurrent callers, each with its own handle (as separate kb processes would have),
    // some asking for a database that does not exist yet.
    let mut tasks = Vec::new();
    for i in 0..3 {
        let data_dir = data_dir.clone();
        tasks.push(tokio::spawn(async move {
            let c = Cluster::new(&data_dir).expect("cluster");
            let db = if i == 0 { "kb_test" } else { "kb_other" };
            let url = c.ensure_running(db).await.expect("concurrent ensure_running");
            select_one(&url).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("join"), 1);
    }

    cluster.stop().await.expect("stop");
    assert_eq!(cluster.status().await.expect("status"), Status::Stopped);
    cluster.stop().await.expect("stop when stopped is a no-op");

    // Restart keeps the data (the extension is still there).
    let url = cluster.ensure_running("kb_test").await.expect("restart");
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    let ext: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")
        .fetch_one(&mut conn)
        .await
        .expect("pg_extension");
    assert_eq!(ext, 1);
    conn.close().await.expect("close");

    drop(guard);
    assert_eq!(cluster.status().await.expect("status"), Status::Stopped);
}

#[tokio::test]
async fn long_data_dir_uses_short_socket_dir() {
    let tmp = reachable_tempdir();
    let data_dir = tmp.path().join("d".repeat(60)).join("e".repeat(60));
    let cluster = Cluster::new(&data_dir).expect("cluster");
    let guard = StopOnDrop(cluster.clone());
    assert!(cluster.socket_dir().to_string_lossy().starts_with("/tmp/kb-"), "{:?}", cluster.socket_dir());
    let url = cluster.ensure_running("kb_test").await.expect("ensure_running");
    assert_eq!(select_one(&url).await, 1);
    drop(guard);
    let _ = std::fs::remove_dir(cluster.socket_dir());
}

#[test]
fn missing_binaries_error_mentions_setup() {
    // Run in a child process: KB_PG_BIN must not leak into the other tests of this binary.
    if std::env::var_os("KB_CLUSTER_TEST_CHILD").is_some() {
        let err = Cluster::new(Path::new("/nonexistent/kb")).expect_err("must fail");
        assert!(err.to_string().contains("scripts/setup.sh"), "{err}");
        return;
    }
    let exe = std::env::current_exe().expect("exe");
    let status = std::process::Command::new(exe)
        .args(["--exact", "cluster::missing_binaries_error_mentions_setup"])
        .env("KB_CLUSTER_TEST_CHILD", "1")
        .env("KB_PG_BIN", "/nonexistent/bin")
        .status()
        .expect("child");
    assert!(status.success());
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|r| r.split_whitespace().nth(1).map(|u| u == "0"))
        .unwrap_or(false)
}

/// As root, a data dir the `postgres` user cannot traverse (like /root/.local/share/kb) keeps the
/// server files under /var/lib/kb/<hash>; as any other user it stays in place.
#[tokio::test]
async fn unreachable_data_dir_as_root_uses_var_lib() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 0700 root-owned, like /root: postgres cannot enter it.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let data_dir = tmp.path().join("kb");
    let cluster = Cluster::new(&data_dir).expect("cluster");
    if !running_as_root() {
        assert!(cluster.pg_dir().starts_with(tmp.path()));
        return;
    }
    let server_root = cluster.pg_dir().parent().expect("parent").to_path_buf();
    assert!(server_root.starts_with("/var/lib/kb"), "{server_root:?}");
    let guard = StopOnDrop(cluster.clone());
    let url = cluster.ensure_running("kb_test").await.expect("ensure_running");
    assert_eq!(select_one(&url).await, 1);
    // A second handle on the same data dir finds the same (recorded) location.
    let again = Cluster::new(&data_dir).expect("cluster");
    assert_eq!(again.pg_dir(), cluster.pg_dir());
    drop(guard);
    assert_eq!(cluster.status().await.expect("status"), Status::Stopped);
    std::fs::remove_dir_all(&server_root).expect("clean /var/lib/kb/<hash>");
}

/// After the postmaster is killed (stale postmaster.pid left behind), status says Stopped and
/// ensure_running brings the cluster back with its data.
#[tokio::test]
async fn restarts_after_postmaster_is_killed() {
    let tmp = reachable_tempdir();
    let cluster = Cluster::new(&tmp.path().join("kb")).expect("cluster");
    let guard = StopOnDrop(cluster.clone());
    let url = cluster.ensure_running("kb_test").await.expect("ensure_running");
    let Status::Running { pid } = cluster.status().await.expect("status") else {
        panic!("should run");
    };
    let killed = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill");
    assert!(killed.success());
    // Wait for the kernel to reap it (its parent is init once pg_ctl has exited).
    for _ in 0..100 {
        if cluster.status().await.expect("status") == Status::Stopped {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(cluster.status().await.expect("status"), Status::Stopped);
    assert!(cluster.pg_dir().join("postmaster.pid").exists(), "stale pid file expected");

    let again = cluster.ensure_running("kb_test").await.expect("ensure_running after crash");
    assert_eq!(again, url);
    assert_eq!(select_one(&url).await, 1);
    drop(guard);
}

/// A server that cannot start yields an error quoting the server log.
#[tokio::test]
async fn start_failure_quotes_the_log() {
    use std::io::Write;
    let tmp = reachable_tempdir();
    let cluster = Cluster::new(&tmp.path().join("kb")).expect("cluster");
    let guard = StopOnDrop(cluster.clone());
    cluster.ensure_running("kb_test").await.expect("ensure_running");
    cluster.stop().await.expect("stop");
    std::fs::OpenOptions::new()
        .append(true)
        .open(cluster.pg_dir().join("postgresql.conf"))
        .and_then(|mut f| f.write_all(b"\nshared_buffers = 'lots'\n"))
        .expect("break the config");
    let err = cluster.ensure_running("kb_test").await.expect_err("start must fail");
    let msg = err.to_string();
    assert!(msg.contains("failed to start"), "{msg}");
    assert!(msg.contains("shared_buffers"), "log tail should name the setting: {msg}");
    drop(guard);
}
