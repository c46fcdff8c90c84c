//! Point-in-time recovery of the embedded cluster: base backups (`pg_basebackup` into
//! `D/backups/base-<finished at>`), pruning of older backups and of the WAL they alone needed
//! (`pg_archivecleanup`), and a restore to a moment: the cluster stops, its data directory is
//! moved aside (never deleted), the newest base backup finished before that moment is copied
//! in, the WAL it needs is replayed from `D/wal_archive` (and from the old `pg_wal`, whatever
//! was not archived yet) up to the moment, and the server is promoted onto a new timeline.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::Connection;
use tracing::info;

use super::settings::{conf_quote, restore_command};
use super::{Cluster, ClusterError, KbOutput, PG_CTL_TIMEOUT_SECS, Status, connect_with_retry, log_tail, output_text};

/// Base backup directories are `base-` + the time the backup finished (UTC, microseconds).
const BACKUP_PREFIX: &str = "base-";
const BACKUP_TIME_FORMAT: &str = "%Y%m%dT%H%M%S%.6fZ";

/// One base backup in `D/backups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseBackup {
    pub path: PathBuf,
    /// When the backup had finished (the server's clock): a restore can reach any later moment.
    pub finished_at: DateTime<Utc>,
    /// The first WAL segment the backup needs (from its `backup_label`).
    pub start_wal: Option<String>,
}

/// What a point-in-time restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub backup: BaseBackup,
    /// The data directory from before the restore, kept aside.
    pub previous_pg_dir: PathBuf,
    /// The commit time of the last transaction replayed.
    pub replayed_to: Option<DateTime<Utc>>,
    /// WAL segments taken from the old data directory because they were not archived yet.
    pub unarchived_segments: usize,
}

impl Cluster {
    /// The base backups, oldest first.
    pub fn base_backups(&self) -> Result<Vec<BaseBackup>, ClusterError> {
        let dir = self.backups_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ClusterError::io(format!("reading {}", dir.display()), e)),
        };
        let mut backups: Vec<BaseBackup> = entries
            .flatten()
            .filter_map(|entry| {
                let finished_at = parse_backup_name(entry.file_name().to_str()?)?;
                let path = entry.path();
                let start_wal = fs::read_to_string(path.join("backup_label")).ok().and_then(|l| start_wal_of(&l));
                Some(BaseBackup { path, finished_at, start_wal })
            })
            .collect();
        backups.sort_by_key(|b| b.finished_at);
        Ok(backups)
    }

    /// Takes a base backup of the running cluster (starting it if needed) into
    /// `D/backups/base-<finished at>`, then keeps the newest `keep` backups (at least one)
    /// and the archived WAL from the oldest of them on.
    pub async fn base_backup(&self, keep: usize) -> Result<BaseBackup, ClusterError> {
        let url = self.ensure_running("postgres").await?;
        let _lock = self.lock().await?;
        let mut conn = connect_with_retry(&url).await?;
        let archive_mode: String = sqlx::query_scalar("SELECT current_setting('archive_mode')")
            .fetch_one(&mut conn)
            .await
            .map_err(|source| ClusterError::Database { context: "reading archive_mode".into(), source })?;
        if archive_mode != "on" && archive_mode != "always" {
            return Err(ClusterError::NotArchiving { archive_mode });
        }
        // From now on completed segments are archived (the backups folder is the switch).
        self.make_server_dir(&self.backups_dir(), 0o700)?;
        self.make_server_dir(&self.wal_archive_dir(), 0o700)?;

        // What a backup killed halfway left behind (under the lock, none is running now).
        let in_progress = format!("{BACKUP_PREFIX}in-progress-");
        for entry in fs::read_dir(self.backups_dir()).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&in_progress) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let partial = self.backups_dir().join(format!("{in_progress}{}", std::process::id()));
        info!(path = %partial.display(), "taking a base backup");
        let out = self.base_backup_command(&partial, "kb base backup").kb_output("pg_basebackup").await?;
        if !out.status.success() {
            let _ = fs::remove_dir_all(&partial);
            return Err(ClusterError::CommandFailed {
                command: "pg_basebackup".into(),
                status: out.status.to_string(),
                stderr: output_text(&out),
            });
        }
        // The server's clock, as recovery_target_time is read by the server.
        let finished_at: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut conn)
            .await
            .map_err(|source| ClusterError::Database { context: "reading the time".into(), source })?;
        let _ = conn.close().await;
        let path = self.backups_dir().join(backup_name(finished_at));
        fs::rename(&partial, &path).map_err(|e| ClusterError::io(format!("renaming {}", partial.display()), e))?;
        let start_wal = fs::read_to_string(path.join("backup_label")).ok().and_then(|l| start_wal_of(&l));
        let backup = BaseBackup { path, finished_at, start_wal };
        self.prune_backups(keep.max(1)).await?;
        Ok(backup)
    }

    /// `pg_basebackup` of this running cluster into `target`: plain files, with the WAL the
    /// copy needs streamed alongside, after a fast checkpoint.
    pub(super) fn base_backup_command(&self, target: &Path, label: &str) -> tokio::process::Command {
        let mut command = self.run_bin("pg_basebackup");
        command
            .arg("-D")
            .arg(target)
            .args(["--format=plain", "--wal-method=stream", "--checkpoint=fast", "--no-password"])
            .args(["--label", label])
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.state.port.to_string(), "-U", &self.state.superuser]);
        command
    }

    /// Removes all but the newest `keep` base backups, and the archived WAL older than the
    /// oldest one kept.
    async fn prune_backups(&self, keep: usize) -> Result<(), ClusterError> {
        let backups = self.base_backups()?;
        let excess = backups.len().saturating_sub(keep);
        for old in &backups[..excess] {
            info!(path = %old.path.display(), "removing an old base backup");
            fs::remove_dir_all(&old.path)
                .map_err(|e| ClusterError::io(format!("removing {}", old.path.display()), e))?;
        }
        if let Some(oldest_wal) = backups.get(excess).and_then(|b| b.start_wal.clone()) {
            let out = self
                .run_bin("pg_archivecleanup")
                .arg(self.wal_archive_dir())
                .arg(&oldest_wal)
                .kb_output("pg_archivecleanup")
                .await?;
            if !out.status.success() {
                return Err(ClusterError::CommandFailed {
                    command: "pg_archivecleanup".into(),
                    status: out.status.to_string(),
                    stderr: output_text(&out),
                });
            }
        }
        Ok(())
    }

    /// Restores the cluster to its state at `target` (see the module doc). `progress` hears
    /// each step. On failure after the data directory was moved aside, the error says where
    /// it is.
    pub async fn restore_to(
        &self,
        target: DateTime<Utc>,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<RestoreReport, ClusterError> {
        let _lock = self.lock().await?;
        let backups = self.base_backups()?;
        let Some(backup) = backups.iter().rev().find(|b| b.finished_at <= target).cloned() else {
            let available = match backups.first() {
                Some(first) => format!("; the oldest base backup finished at {}", first.finished_at),
                None => format!("; there is none in {}", self.backups_dir().display()),
            };
            return Err(ClusterError::NoBaseBackup { target: target.to_rfc3339(), available });
        };
        progress(&format!("using the base backup {} (finished {})", backup.path.display(), backup.finished_at));

        if let Status::Running { .. } = self.status_unlocked().await? {
            progress("stopping PostgreSQL");
            self.stop_unlocked().await?;
        }
        let previous = self.server_root.join(format!("pg.before-restore-{}", Utc::now().format("%Y%m%dT%H%M%SZ")));
        if self.pg_dir.exists() {
            progress(&format!("keeping the current data directory at {}", previous.display()));
            fs::rename(&self.pg_dir, &previous)
                .map_err(|e| ClusterError::io(format!("moving {} aside", self.pg_dir.display()), e))?;
        }
        self.recover(&backup, &previous, target, progress).await.map_err(|source| ClusterError::RestoreFailed {
            previous: previous.clone(),
            pg_dir: self.pg_dir.clone(),
            source: Box::new(source),
        })
    }

    /// The restore once the old data directory is aside: copy, configure, replay, promote.
    async fn recover(
        &self,
        backup: &BaseBackup,
        previous: &Path,
        target: DateTime<Utc>,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<RestoreReport, ClusterError> {
        progress(&format!("copying the base backup into {}", self.pg_dir.display()));
        copy_tree(&backup.path, &self.pg_dir).await?;
        let unarchived_segments = self.copy_unarchived_wal(&previous.join("pg_wal"))?;
        if unarchived_segments > 0 {
            progress(&format!("{unarchived_segments} WAL segments not archived yet taken from the old data directory"));
        }
        let recovery = format!(
            "# Recovery settings of a point-in-time restore; removed once the server is promoted.\n\
             restore_command = {}\n\
             recovery_target_time = '{}'\n\
             recovery_target_action = 'pause'\n",
            conf_quote(&restore_command(&self.wal_archive_dir())),
            target.format("%Y-%m-%d %H:%M:%S%.6f+00"),
        );
        self.write_settings_with(&recovery)?;
        self.write_server_file(&self.pg_dir.join("recovery.signal"), "")?;

        progress(&format!("replaying archived WAL up to {target}"));
        let log_from = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
        self.start().await?;
        let url = self.database_url("postgres");
        let replayed_to = match self.wait_for_target(&url).await {
            Ok(replayed_to) => replayed_to,
            Err(e) => {
                return Err(ClusterError::StartFailed {
                    status: "recovery did not reach its target".into(),
                    stderr: e.to_string(),
                    log_file: self.log_file.clone(),
                    log_tail: log_tail(&self.log_file, log_from, super::LOG_TAIL_LINES),
                });
            }
        };
        progress("promoting the restored cluster");
        let mut conn = connect_with_retry(&url).await?;
        let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut conn)
            .await
            .map_err(|source| ClusterError::Database { context: "reading the recovery state".into(), source })?;
        if in_recovery {
            let promoted: bool = sqlx::query_scalar("SELECT pg_promote(true, 300)")
                .fetch_one(&mut conn)
                .await
                .map_err(|source| ClusterError::Database { context: "promoting the server".into(), source })?;
            if !promoted {
                return Err(ClusterError::CommandFailed {
                    command: "pg_promote()".into(),
                    status: "false".into(),
                    stderr: "the server was not promoted within 300 s".into(),
                });
            }
        }
        let _ = conn.close().await;
        // Promoted: the recovery settings go (they would be ignored, but confuse a reader).
        self.write_settings()?;
        Ok(RestoreReport {
            backup: backup.clone(),
            previous_pg_dir: previous.to_path_buf(),
            replayed_to,
            unarchived_segments,
        })
    }

    /// Waits until recovery pauses at its target (or has ended); the last replayed commit.
    async fn wait_for_target(&self, url: &str) -> Result<Option<DateTime<Utc>>, ClusterError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(PG_CTL_TIMEOUT_SECS));
        loop {
            let mut conn = connect_with_retry(url).await?;
            let state: (bool, bool, Option<DateTime<Utc>>) = sqlx::query_as(
                "SELECT pg_is_in_recovery(), pg_is_in_recovery() AND pg_is_wal_replay_paused(),
                        pg_last_xact_replay_timestamp()",
            )
            .fetch_one(&mut conn)
            .await
            .map_err(|source| ClusterError::Database { context: "reading the recovery state".into(), source })?;
            let _ = conn.close().await;
            match state {
                (false, _, at) | (true, true, at) => return Ok(at),
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(ClusterError::CommandFailed {
                        command: "recovery".into(),
                        status: "timed out".into(),
                        stderr: format!("recovery did not reach its target within {PG_CTL_TIMEOUT_SECS} s"),
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Copies WAL segments of the old `pg_wal` that the archive lacks into the new one, so a
    /// restore reaches commits made after the last archived segment.
    fn copy_unarchived_wal(&self, old_wal: &Path) -> Result<usize, ClusterError> {
        let Ok(entries) = fs::read_dir(old_wal) else {
            return Ok(0);
        };
        let mut copied = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !is_wal_segment_name(name) || self.wal_archive_dir().join(name).exists() {
                continue;
            }
            let to = self.pg_dir.join("pg_wal").join(name);
            let ctx = || format!("copying {} to {}", entry.path().display(), to.display());
            fs::copy(entry.path(), &to).map_err(|e| ClusterError::io(ctx(), e))?;
            if let Some((uid, gid)) = self.run_as.chown_to() {
                std::os::unix::fs::chown(&to, Some(uid), Some(gid)).map_err(|e| ClusterError::io(ctx(), e))?;
            }
            copied += 1;
        }
        Ok(copied)
    }
}

/// `cp -a`: permissions and owners kept (the server's files stay the server user's).
async fn copy_tree(from: &Path, to: &Path) -> Result<(), ClusterError> {
    let out =
        tokio::process::Command::new("cp").arg("-a").arg(from).arg(to).stdin(Stdio::null()).kb_output("cp -a").await?;
    if !out.status.success() {
        return Err(ClusterError::CommandFailed {
            command: format!("cp -a {} {}", from.display(), to.display()),
            status: out.status.to_string(),
            stderr: output_text(&out),
        });
    }
    Ok(())
}

fn backup_name(finished_at: DateTime<Utc>) -> String {
    format!("{BACKUP_PREFIX}{}", finished_at.format(BACKUP_TIME_FORMAT))
}

fn parse_backup_name(name: &str) -> Option<DateTime<Utc>> {
    let time = name.strip_prefix(BACKUP_PREFIX)?;
    NaiveDateTime::parse_from_str(time, BACKUP_TIME_FORMAT).ok().map(|t| t.and_utc())
}

/// `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)` in a `backup_label`.
fn start_wal_of(label: &str) -> Option<String> {
    let line = label.lines().find(|l| l.starts_with("START WAL LOCATION:"))?;
    let file = line.split("(file ").nth(1)?.trim_end_matches(')').trim();
    is_wal_segment_name(file).then(|| file.to_string())
}

/// 24 hex digits: timeline, log, segment.
fn is_wal_segment_name(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_round_trip_to_the_microsecond() {
        let at = DateTime::parse_from_rfc3339("2026-12-06T03:56:33.123456Z").expect("time").with_timezone(&Utc);
        let name = backup_name(at);
        assert_eq!(name, "base-20261206T035633.123456Z");
        assert_eq!(parse_backup_name(&name), Some(at));
        assert_eq!(parse_backup_name("base-in-progress-42"), None);
        assert_eq!(parse_backup_name("pg.before-restore-20261206T035633Z"), None);
    }

    #[test]
    fn the_start_segment_is_read_from_the_backup_label() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
                     CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\n";
        assert_eq!(start_wal_of(label).as_deref(), Some("000000010000000000000002"));
        assert_eq!(start_wal_of("LABEL: x\n"), None);
        assert!(is_wal_segment_name("00000002000000000000000A"));
        assert!(!is_wal_segment_name("00000002.history"));
        assert!(!is_wal_segment_name("000000010000000000000002.partial"));
    }
}
