//! Streaming replicas of the embedded cluster: `pg_basebackup --write-recovery-conf` from the
//! running primary into another data directory, started as a hot standby that replays the
//! primary's WAL as it is written (over the primary's unix socket, so on the same machine).
//! `kb serve` sends searches there with `KB_READ_DATABASE_URL` (see `store::reads`).

use std::fs;

use tracing::info;

use super::{Cluster, ClusterError, KbOutput, connect_with_retry, create_dirs_0755, output_text};

impl Cluster {
    /// Makes this cluster, which must not be initialised yet, a streaming replica of
    /// `primary` (started if needed), starts it and waits until it accepts connections.
    /// Returns the replica's superuser URL for database `db_name`.
    pub async fn create_standby_of(&self, primary: &Cluster, db_name: &str) -> Result<String, ClusterError> {
        primary.ensure_running(db_name).await?;
        let _lock = self.lock().await?;
        if self.is_initialised() {
            return Err(ClusterError::AlreadyInitialised { pg_dir: self.pg_dir.clone() });
        }
        if self.state.superuser != primary.state.superuser {
            return Err(ClusterError::StateMismatch {
                path: self.data_dir.join("cluster.state"),
                found: self.state.superuser.clone(),
                expected: primary.state.superuser.clone(),
            });
        }
        self.write_or_check_state()?;
        create_dirs_0755(&self.server_root)?;
        self.make_server_dir(&self.pg_dir, 0o700)?;
        info!(primary = %primary.pg_dir.display(), pg_dir = %self.pg_dir.display(), "copying the primary for a replica");
        let out = primary
            .base_backup_command(&self.pg_dir, "kb replica")
            // standby.signal, and primary_conninfo in postgresql.auto.conf.
            .arg("--write-recovery-conf")
            .kb_output("pg_basebackup")
            .await?;
        if !out.status.success() {
            // An empty data directory again: the next attempt starts over.
            let _ = fs::remove_dir_all(&self.pg_dir);
            return Err(ClusterError::CommandFailed {
                command: "pg_basebackup".into(),
                status: out.status.to_string(),
                stderr: output_text(&out),
            });
        }
        self.start().await?;
        let url = self.database_url(db_name);
        let conn = connect_with_retry(&url).await?;
        drop(conn);
        Ok(url)
    }
}
