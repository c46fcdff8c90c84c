//! The settings kb manages in its embedded cluster (see the module doc of `cluster`):
//! `kb.conf`, included from `postgresql.conf` and rewritten at every start — WAL archiving
//! into the data directory once a base backup exists, pg_stat_statements preloaded — plus a
//! memory sized to the machine (shared buffers), plus a point-in-time restore's recovery
//! settings while it runs.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use sqlx::Connection;
use tracing::debug;

use super::{Cluster, ClusterError, shell_quote};

/// Settings kb manages, in the PostgreSQL data directory, rewritten at every start.
const SETTINGS_FILE: &str = "kb.conf";
/// Loaded at start when installed: the slowest statements of `kb db stats`.
const STATEMENTS_LIBRARY: &str = "pg_stat_statements";

impl Cluster {
    /// Under the lock: `postgresql.conf` includes `kb.conf` (appended once, so clusters made
    /// by older kb versions get it too), and `kb.conf` holds the settings of this version.
    /// Returns whether `kb.conf` changed (a running server needs a restart).
    pub(super) fn write_settings(&self) -> Result<bool, ClusterError> {
        self.write_settings_with("")
    }

    /// `write_settings`, with `extra` lines (a restore's recovery settings) at the end.
    pub(super) fn write_settings_with(&self, extra: &str) -> Result<bool, ClusterError> {
        let conf = self.pg_dir.join("postgresql.conf");
        let text = fs::read_to_string(&conf).map_err(|e| ClusterError::io(format!("reading {}", conf.display()), e))?;
        let include = format!("include_if_exists = '{SETTINGS_FILE}'");
        if !text.lines().any(|l| l.trim() == include) {
            let block = format!("\n# ---- kb: the settings kb manages (kb's src/cluster.rs) ----\n{include}\n");
            OpenOptions::new()
                .append(true)
                .open(&conf)
                .and_then(|mut f| f.write_all(block.as_bytes()))
                .map_err(|e| ClusterError::io(format!("writing {}", conf.display()), e))?;
        }
        self.make_server_dir(&self.wal_archive_dir(), 0o700)?;
        let mut settings =
            render_settings(&self.wal_archive_dir(), &self.backups_dir(), self.library_installed(STATEMENTS_LIBRARY));
        settings.push_str(extra);
        let path = self.pg_dir.join(SETTINGS_FILE);
        if fs::read_to_string(&path).is_ok_and(|old| old == settings) {
            return Ok(false);
        }
        self.write_server_file(&path, &settings)?;
        Ok(true)
    }

    /// Whether the server can load `name` (`$libdir/name.so`, per `pg_config --pkglibdir`,
    /// else the `lib` directory beside the binaries).
    fn library_installed(&self, name: &str) -> bool {
        let pkglibdir = std::process::Command::new(self.bin_dir.join("pg_config"))
            .arg("--pkglibdir")
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        let beside = self.bin_dir.parent().map(|p| p.join("lib"));
        [pkglibdir, beside].into_iter().flatten().any(|dir| dir.join(format!("{name}.so")).is_file())
    }

    /// Write `path` (mode 0600) for the server user to read: root hands it over.
    pub(super) fn write_server_file(&self, path: &Path, contents: &str) -> Result<(), ClusterError> {
        let ctx = || format!("writing {}", path.display());
        let tmp = path.with_extension("tmp");
        OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(contents.as_bytes()))
            .map_err(|e| ClusterError::io(ctx(), e))?;
        if let Some((uid, gid)) = self.run_as.chown_to() {
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).map_err(|e| ClusterError::io(ctx(), e))?;
        }
        fs::rename(&tmp, path).map_err(|e| ClusterError::io(ctx(), e))
    }
}

/// `kb.conf`: WAL archiving into `archive` once `backups` exists, pg_stat_statements, and
/// memory sized to the machine.
fn render_settings(archive: &Path, backups: &Path, statements: bool) -> String {
    let mut out = String::from(
        "# Written by kb at every start of its embedded cluster: do not edit (postgresql.conf or\n\
         # ALTER SYSTEM override it). WAL is archived once a base backup exists (kb db backup --base).\n",
    );
    out.push_str("archive_mode = on\n");
    out.push_str(&format!("archive_command = {}\n", conf_quote(&archive_command(archive, backups))));
    if statements {
        out.push_str(&format!("shared_preload_libraries = '{STATEMENTS_LIBRARY}'\n"));
    }
    out.push_str(&memory_settings(crate::host::memory_kb()));
    out
}

/// PostgreSQL's usual sizing for a machine it mostly has to itself: a quarter of the memory
/// for shared buffers (128 MB to 8 GB), and the planner told that three quarters may cache
/// files. A vector index outside shared buffers costs every search a copy per page from the
/// OS cache (hnsw reads ~2,300 pages per search at ef_search 250); at 1M rows of 384
/// dimensions the index alone is ~2 GB.
fn memory_settings(memory_kb: Option<i64>) -> String {
    let Some(memory_kb) = memory_kb else {
        return String::from("shared_buffers = 256MB\n");
    };
    let shared = (memory_kb / 4).clamp(128 * 1024, 8 * 1024 * 1024);
    format!("shared_buffers = {}MB\neffective_cache_size = {}MB\n", shared / 1024, memory_kb * 3 / 4 / 1024)
}

/// Copies a completed segment into `archive`, only while `backups` exists (without a base
/// backup, archived WAL could restore nothing). A segment already archived with the same
/// bytes counts as archived (a retry after a crash); different bytes fail, so the archiver
/// retries and logs instead of overwriting. Copied under a temporary name, then renamed, so
/// recovery never reads a half-copied segment.
fn archive_command(archive: &Path, backups: &Path) -> String {
    let a = pg_escape_percent(&shell_quote(&archive.to_string_lossy()));
    let b = pg_escape_percent(&shell_quote(&backups.to_string_lossy()));
    format!(
        "test ! -d {b} || {{ test -f {a}/%f && cmp -s %p {a}/%f; }} || \
         {{ test ! -f {a}/%f && cp %p {a}/%f.tmp && mv {a}/%f.tmp {a}/%f; }}"
    )
}

/// Reads archived segments back during a point-in-time restore.
pub(super) fn restore_command(archive: &Path) -> String {
    let a = pg_escape_percent(&shell_quote(&archive.to_string_lossy()));
    format!("cp {a}/%f %p")
}

/// `%` starts a placeholder in archive and restore commands: a literal one is `%%`.
fn pg_escape_percent(s: &str) -> String {
    s.replace('%', "%%")
}

/// A string value in postgresql.conf syntax.
pub(super) fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Best effort: `CREATE EXTENSION pg_stat_statements` in the database when the server loaded
/// it, so `kb db stats` and `/v1/admin/stats` see the slowest statements.
pub(super) async fn enable_statement_stats(url: &str) {
    let result = async {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let enabled = crate::store::stats::enable_statement_stats(&mut conn).await;
        let _ = conn.close().await;
        enabled
    }
    .await;
    if let Err(e) = result {
        debug!(error = %e, "pg_stat_statements not enabled");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `archive_command` as the server runs it: placeholders substituted, then `sh -c`.
    fn run_archive_command(command: &str, segment: &Path) -> bool {
        let name = segment.file_name().and_then(|n| n.to_str()).expect("test setup");
        let shell = command.replace("%p", &segment.to_string_lossy()).replace("%f", name).replace("%%", "%");
        std::process::Command::new("sh").arg("-c").arg(shell).status().expect("sh").success()
    }

    #[test]
    fn wal_is_archived_only_once_a_base_backup_exists_and_never_overwritten() {
        let root = tempfile::tempdir().expect("test setup");
        // Quotes and a percent sign in the paths survive both sh and the placeholders.
        let dir = root.path().join("it's 100%");
        let (archive, backups) = (dir.join("wal_archive"), dir.join("backups"));
        fs::create_dir_all(&archive).expect("test setup");
        let segment = root.path().join("000000010000000000000003");
        fs::write(&segment, "wal bytes").expect("test setup");
        let command = archive_command(&archive, &backups);

        assert!(run_archive_command(&command, &segment), "no base backup: nothing to keep, success");
        assert!(!archive.join("000000010000000000000003").exists());
        fs::create_dir_all(&backups).expect("test setup");
        assert!(run_archive_command(&command, &segment));
        assert_eq!(fs::read_to_string(archive.join("000000010000000000000003")).expect("archived"), "wal bytes");
        assert!(run_archive_command(&command, &segment), "the same bytes again: already archived");
        fs::write(&segment, "other bytes").expect("test setup");
        assert!(!run_archive_command(&command, &segment), "different bytes are never overwritten");
        assert_eq!(fs::read_to_string(archive.join("000000010000000000000003")).expect("kept"), "wal bytes");

        let restored = root.path().join("restored");
        let restore = restore_command(&archive).replace("%p", &restored.to_string_lossy());
        let restore = restore.replace("%f", "000000010000000000000003").replace("%%", "%");
        assert!(std::process::Command::new("sh").arg("-c").arg(restore).status().expect("sh").success());
        assert_eq!(fs::read_to_string(&restored).expect("restored"), "wal bytes");
    }

    #[test]
    fn settings_are_valid_postgresql_conf() {
        let settings = render_settings(Path::new("/d/wal_archive"), Path::new("/d/backups"), true);
        assert!(settings.contains("archive_mode = on\n"));
        assert!(settings.contains("shared_preload_libraries = 'pg_stat_statements'\n"));
        assert!(!render_settings(Path::new("/a"), Path::new("/b"), false).contains("shared_preload_libraries"));
        assert_eq!(conf_quote(r"it's a \ path"), r"'it''s a \\ path'");
    }

    #[test]
    fn memory_follows_the_machine() {
        let gib = 1024 * 1024;
        assert_eq!(memory_settings(Some(24 * gib)), "shared_buffers = 6144MB\neffective_cache_size = 18432MB\n");
        assert!(memory_settings(Some(gib / 4)).starts_with("shared_buffers = 128MB\n"));
        assert!(memory_settings(Some(256 * gib)).starts_with("shared_buffers = 8192MB\n"));
        assert_eq!(memory_settings(None), "shared_buffers = 256MB\n");
    }
}
