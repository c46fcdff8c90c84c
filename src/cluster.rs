//! kb's own embedded PostgreSQL cluster.
//!
//! With no `DATABASE_URL`, kb runs a private PostgreSQL cluster made with the installed `initdb`
//! and started/stopped with `pg_ctl`. This module finds the server binaries, initialises the
//! cluster once, starts it on demand, creates databases and hands back a connection URL.
//!
//! # Layout
//!
//! For a data directory `D` (see [`Cluster::default_data_dir`]):
//!
//! ```text
//! D/cluster.lock    exclusive lock serialising every start/stop/init across processes
//! D/cluster.state   port, superuser (and external pg location): fixed at first initialisation
//! D/pg/             the PostgreSQL data directory (initdb output)
//! D/pg.log          server log (pg_ctl -l)
//! D/sock/           unix socket directory, mode 0700
//! D/wal_archive/    archived WAL segments (point-in-time recovery, see below)
//! D/backups/        base backups (`kb db backup --base`), `base-<finished at, UTC>`
//! D/pg.before-restore-<time>/  the data directory a point-in-time restore replaced
//! ```
//!
//! # Settings kb manages
//!
//! `D/pg/kb.conf` is rewritten at every start (and included from `postgresql.conf`, which
//! existing clusters get too): WAL archiving (`archive_mode`, `archive_command` copying
//! completed segments into `D/wal_archive`, but only once `D/backups` exists, so a cluster
//! that never had a base backup keeps no WAL) and `shared_preload_libraries =
//! 'pg_stat_statements'` where the library is installed. `archive_mode` and preloading take
//! effect at the next start: a running cluster whose settings changed logs that it needs a
//! restart (`kb db stop && kb db start`). While a point-in-time restore runs, `kb.conf` also
//! holds its recovery settings (`cluster/pitr.rs`).
//!
//! # Network exposure
//!
//! The cluster listens on a unix socket only (`listen_addresses = ''`): no TCP port is opened,
//! so the fixed default port (5432) never clashes with another server, it only names the socket
//! file. The socket lives in a private directory (mode 0700, owned by the server's OS user), and
//! `pg_hba.conf` allows `trust` for local socket connections and rejects host connections. Only
//! the owning OS user (and root) can reach the socket, so trust auth gives nobody else access.
//!
//! A unix socket path is limited to 107 bytes. When `D/sock/.s.PGSQL.<port>` would be longer,
//! the socket directory falls back to `/tmp/kb-<hash of D>` (0700, checked to be a real
//! directory owned by the server user before each start, so a squatter cannot hijack it).
//!
//! # Running as root
//!
//! PostgreSQL refuses to run as root. When kb's effective uid is 0, every `initdb`/`pg_ctl` runs
//! as the `postgres` system user via `runuser -u postgres --`, and the `pg/` subtree, the log
//! and the socket directory are owned by `postgres`. The `postgres` user must exist (Debian's
//! PostgreSQL packages, installed by `scripts/setup.sh`, create it); kb does not create users.
//!
//! The server user must be able to traverse every directory above `D/pg`. Root's default data
//! directory, `/root/.local/share/kb`, is not traversable (`/root` is 0700) and loosening
//! `/root` is not acceptable. So, as root, when the `postgres` user cannot reach `D`, the server
//! files (`pg/`, `pg.log`, `sock/`) go to `/var/lib/kb/<hash of D>/` instead; `D` keeps the lock
//! and the state file, which records that external location so it never moves afterwards.
//! [`Cluster::pg_dir`] tells where the data really is.
//!
//! # Concurrency and crashes
//!
//! Several kb processes (parallel tests) may call [`Cluster::ensure_running`] at once: all state
//! changes happen under an exclusive `flock` on `D/cluster.lock`, and the state is re-checked
//! after the lock is taken. `CREATE DATABASE` also runs under that lock and tolerates
//! `duplicate_database` anyway. A stale `postmaster.pid` after a crash is handled by `pg_ctl`
//! (which checks whether the pid is alive) for both `status` and `start`.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::Connection;
use tracing::{debug, info, warn};

mod pitr;
mod settings;
mod standby;

pub use pitr::{BaseBackup, RestoreReport};

/// Default port: only names the socket file (`.s.PGSQL.<port>`) inside a private directory.
const DEFAULT_PORT: u16 = 5432;
/// Where Debian/Ubuntu install PostgreSQL server binaries, one `N/bin` per major version.
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";
/// Root-owned home for clusters whose data dir the `postgres` user cannot reach.
const ROOT_FALLBACK_BASE: &str = "/var/lib/kb";
/// `sizeof(sockaddr_un.sun_path)` on Linux is 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
/// Seconds pg_ctl waits for start/stop. Crash recovery after a kill can take a while.
const PG_CTL_TIMEOUT_SECS: u32 = 300;
/// Lines of the server log quoted in a start failure.
const LOG_TAIL_LINES: usize = 30;
const SERVER_BINARIES: [&str; 3] = ["postgres", "initdb", "pg_ctl"];

/// What can go wrong managing the embedded cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (postgres, initdb, pg_ctl) not found in {searched}; \
         run scripts/setup.sh to install PostgreSQL and pgvector, or set KB_PG_BIN to their directory"
    )]
    BinariesMissing { searched: String },

    #[error(
        "kb runs as root, so its PostgreSQL cluster must run as the `postgres` system user, \
         which does not exist; run scripts/setup.sh (the PostgreSQL packages create it) or \
         create it with `useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres`"
    )]
    NoPostgresUser,

    #[error(
        "kb runs as root and needs `runuser` (util-linux) to run PostgreSQL as the `postgres` \
         user, but it was not found in /usr/sbin, /sbin, /usr/bin or /bin"
    )]
    RunuserMissing,

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("initdb failed for {pg_dir} ({status}):\n{stderr}")]
    InitdbFailed { pg_dir: PathBuf, status: String, stderr: String },

    #[error("PostgreSQL failed to start ({status}): {stderr}\n--- last lines of {log_file} ---\n{log_tail}")]
    StartFailed { status: String, stderr: String, log_file: PathBuf, log_tail: String },

    #[error("PostgreSQL failed to stop ({status}): {stderr}")]
    StopFailed { status: String, stderr: String },

    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed { command: String, status: String, stderr: String },

    #[error("unsafe socket directory {path}: {reason}")]
    UnsafeSocketDir { path: PathBuf, reason: String },

    #[error("invalid database name {name:?}: {reason}")]
    InvalidDatabaseName { name: String, reason: String },

    #[error(
        "cluster state file {path} says {found}, but this process expected {expected}; \
         another kb process initialised the cluster differently (KB_PG_PORT?), retry"
    )]
    StateMismatch { path: PathBuf, found: String, expected: String },

    #[error("{context}: {source}")]
    Database {
        context: String,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "WAL archiving is not active in the running cluster (archive_mode = {archive_mode}): \
         restart it so it takes its settings (`kb db stop && kb db start`), then take the base backup"
    )]
    NotArchiving { archive_mode: String },

    #[error("{pg_dir} already holds a database cluster: a replica goes into a new data directory")]
    AlreadyInitialised { pg_dir: PathBuf },

    #[error(
        "no base backup finished before {target}: point-in-time recovery starts from one \
         (`kb db backup --base`){available}"
    )]
    NoBaseBackup { target: String, available: String },

    #[error(
        "the point-in-time restore failed: {source}\n\
         The data directory from before the restore is kept at {previous}; to go back to it: \
         `kb db stop`, then replace {pg_dir} with it"
    )]
    RestoreFailed {
        previous: PathBuf,
        pg_dir: PathBuf,
        #[source]
        source: Box<ClusterError>,
    },
}

impl ClusterError {
    fn io(context: impl Into<String>, source: io::Error) -> Self {
        ClusterError::Io { context: context.into(), source }
    }
}

/// Whether the cluster exists and runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No `initdb` has been run in the data directory yet.
    NotInitialised,
    /// Initialised, no live postmaster (a stale `postmaster.pid` counts as stopped).
    Stopped,
    /// A postmaster with this pid serves the cluster.
    Running { pid: u32 },
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::NotInitialised => f.write_str("not initialised"),
            Status::Stopped => f.write_str("stopped"),
            Status::Running { pid } => write!(f, "running (pid {pid})"),
        }
    }
}

/// Which OS user runs the server binaries.
#[derive(Debug, Clone)]
enum RunAs {
    /// kb's own user (not root).
    CurrentUser { uid: u32 },
    /// kb is root: `runuser -u postgres -- ...`.
    Postgres { runuser: PathBuf, uid: u32, gid: u32 },
}

impl RunAs {
    fn uid(&self) -> u32 {
        match self {
            RunAs::CurrentUser { uid } | RunAs::Postgres { uid, .. } => *uid,
        }
    }

    /// `(uid, gid)` to chown freshly created files to, when kb is root.
    fn chown_to(&self) -> Option<(u32, u32)> {
        match self {
            RunAs::CurrentUser { .. } => None,
            RunAs::Postgres { uid, gid, .. } => Some((*uid, *gid)),
        }
    }
}

/// Settings fixed when the cluster is first initialised, kept in `D/cluster.state`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    port: u16,
    superuser: String,
    /// Set only when the server files live outside the data dir (root fallback).
    external_root: Option<PathBuf>,
}

impl State {
    fn parse(text: &str) -> Option<State> {
        let mut port = None;
        let mut superuser = None;
        let mut external_root = None;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once('=')?;
            match key.trim() {
                "port" => port = value.trim().parse().ok(),
                "superuser" => superuser = Some(value.trim().to_string()),
                "server_root" => external_root = Some(PathBuf::from(value.trim())),
                _ => {}
            }
        }
        Some(State { port: port?, superuser: superuser.filter(|s| !s.is_empty())?, external_root })
    }

    fn render(&self) -> String {
        let mut out = String::from("# kb embedded PostgreSQL cluster: written at first initialisation, do not edit\n");
        out.push_str(&format!("port={}\nsuperuser={}\n", self.port, self.superuser));
        if let Some(root) = &self.external_root {
            out.push_str(&format!("server_root={}\n", root.display()));
        }
        out
    }
}

/// kb's embedded PostgreSQL cluster in one data directory.
#[derive(Debug, Clone)]
pub struct Cluster {
    data_dir: PathBuf,
    bin_dir: PathBuf,
    /// Directory holding `pg/`, `pg.log` and (usually) `sock/`: the data dir, or the root fallback.
    server_root: PathBuf,
    pg_dir: PathBuf,
    log_file: PathBuf,
    socket_dir: PathBuf,
    state: State,
    run_as: RunAs,
}

impl Cluster {
    /// A handle on the cluster living in `data_dir` (its PostgreSQL data goes in `data_dir/pg`).
    ///
    /// Finds the server binaries (`KB_PG_BIN`, else the highest `/usr/lib/postgresql/N/bin`
    /// holding `postgres`, `initdb` and `pg_ctl`) and the OS user to run them as. Creates
    /// nothing on disk.
    pub fn new(data_dir: &Path) -> Result<Cluster, ClusterError> {
        let bin_dir = find_bin_dir()?;
        let data_dir = absolute_path(data_dir)?;
        let run_as = detect_run_as()?;
        let state_file = data_dir.join("cluster.state");

        let state = match fs::read_to_string(&state_file) {
            Ok(text) => State::parse(&text).ok_or_else(|| {
                ClusterError::io(
                    format!("reading {}", state_file.display()),
                    io::Error::new(io::ErrorKind::InvalidData, "malformed cluster state file"),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => State {
                port: default_port(),
                superuser: superuser_name(&run_as)?,
                external_root: choose_external_root(&data_dir, &run_as)?,
            },
            Err(e) => {
                return Err(ClusterError::io(format!("reading {}", state_file.display()), e));
            }
        };

        let server_root = state.external_root.clone().unwrap_or_else(|| data_dir.clone());
        let socket_dir = socket_dir_for(&server_root.join("sock"), state.port, &short_hash(data_dir.as_os_str()));
        Ok(Cluster {
            pg_dir: server_root.join("pg"),
            log_file: server_root.join("pg.log"),
            socket_dir,
            server_root,
            data_dir,
            bin_dir,
            state,
            run_as,
        })
    }

    /// `KB_DATA_DIR`, else `$XDG_DATA_HOME/kb`, else `~/.local/share/kb` (`./.kb` without a home).
    pub fn default_data_dir() -> PathBuf {
        if let Some(dir) = non_empty_env("KB_DATA_DIR") {
            return PathBuf::from(dir);
        }
        // The XDG spec says relative values are invalid and must be ignored.
        if let Some(xdg) = non_empty_env("XDG_DATA_HOME").map(PathBuf::from)
            && xdg.is_absolute()
        {
            return xdg.join("kb");
        }
        match non_empty_env("HOME") {
            Some(home) => PathBuf::from(home).join(".local/share/kb"),
            None => PathBuf::from(".kb"),
        }
    }

    /// The data directory this handle manages (absolute).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The PostgreSQL data directory (`data_dir/pg`, or under `/var/lib/kb` for root, see module doc).
    pub fn pg_dir(&self) -> &Path {
        &self.pg_dir
    }

    /// The server log written by `pg_ctl -l`.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The private directory holding the unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The port naming the socket file (no TCP listener is opened).
    pub fn port(&self) -> u16 {
        self.state.port
    }

    /// The PostgreSQL binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Where completed WAL segments are archived (once a base backup exists).
    pub fn wal_archive_dir(&self) -> PathBuf {
        self.server_root.join("wal_archive")
    }

    /// Where base backups go (`base-<finished at>`); its existence turns WAL archiving on.
    pub fn backups_dir(&self) -> PathBuf {
        self.server_root.join("backups")
    }

    /// Connection URL for `db_name` as the cluster's superuser, over the unix socket.
    pub fn database_url(&self, db_name: &str) -> String {
        self.login_url(&self.state.superuser, db_name)
    }

    /// Connection URL for `db_name` as `login`, over the unix socket.
    pub fn login_url(&self, login: &str, db_name: &str) -> String {
        format!(
            "postgres://{user}@localhost/{db}?host={host}&port={port}&sslmode=disable",
            user = url_encode(login, false),
            db = url_encode(db_name, false),
            host = url_encode(&self.socket_dir.to_string_lossy(), true),
            port = self.state.port,
        )
    }

    /// Initialise the cluster if needed, start it if it is not running, wait until it accepts
    /// connections and create database `db_name` if missing. Returns a superuser URL for it.
    ///
    /// Safe to call from several processes and tasks at once.
    pub async fn ensure_running(&self, db_name: &str) -> Result<String, ClusterError> {
        validate_db_name(db_name)?;
        let _lock = self.lock().await?;

        self.write_or_check_state()?;
        if !self.is_initialised() {
            self.initdb().await?;
        }
        let settings_changed = self.write_settings()?;
        match self.status_unlocked().await? {
            Status::Running { pid } => {
                debug!(pid, "PostgreSQL already running");
                if settings_changed {
                    warn!(
                        pid,
                        "kb changed the cluster's settings (WAL archiving, pg_stat_statements); they apply \
                         at the next start: `kb db stop && kb db start`"
                    );
                }
            }
            _ => self.start().await?,
        }
        self.create_database(db_name).await?;
        settings::enable_statement_stats(&self.database_url(db_name)).await;
        Ok(self.database_url(db_name))
    }

    /// Stop the cluster (fast shutdown: open sessions are disconnected). A no-op when it is not
    /// running or not initialised.
    pub async fn stop(&self) -> Result<(), ClusterError> {
        if !self.data_dir.exists() {
            return Ok(());
        }
        let _lock = self.lock().await?;
        self.stop_unlocked().await
    }

    /// Under the lock: stop the server if it runs.
    async fn stop_unlocked(&self) -> Result<(), ClusterError> {
        match self.status_unlocked().await? {
            Status::Running { pid } => {
                info!(pid, pg_dir = %self.pg_dir.display(), "stopping PostgreSQL");
                let timeout = PG_CTL_TIMEOUT_SECS.to_string();
                let out = self
                    .run_pg_ctl()
                    .arg("-D")
                    .arg(&self.pg_dir)
                    .args(["-m", "fast", "-w", "-t", &timeout, "stop"])
                    .kb_output("pg_ctl stop")
                    .await?;
                if !out.status.success() {
                    return Err(ClusterError::StopFailed { status: out.status.to_string(), stderr: output_text(&out) });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Whether the cluster is initialised and running (per `pg_ctl status`).
    pub async fn status(&self) -> Result<Status, ClusterError> {
        self.status_unlocked().await
    }

    // ------------------------------------------------------------------ internals

    fn is_initialised(&self) -> bool {
        self.pg_dir.join("PG_VERSION").is_file()
    }

    async fn status_unlocked(&self) -> Result<Status, ClusterError> {
        if !self.is_initialised() {
            return Ok(Status::NotInitialised);
        }
        let out = self.run_pg_ctl().arg("-D").arg(&self.pg_dir).arg("status").kb_output("pg_ctl status").await?;
        // pg_ctl status: 0 = running, 3 = not running (also with a stale postmaster.pid),
        // 4 = no accessible data directory.
        match out.status.code() {
            Some(0) => {
                let stdout = String::from_utf8_lossy(&out.stdout);
                match parse_pg_ctl_pid(&stdout) {
                    Some(pid) => Ok(Status::Running { pid }),
                    None => Err(ClusterError::CommandFailed {
                        command: "pg_ctl status".into(),
                        status: out.status.to_string(),
                        stderr: format!("cannot parse the pid from: {stdout}"),
                    }),
                }
            }
            Some(3) => Ok(Status::Stopped),
            _ => Err(ClusterError::CommandFailed {
                command: format!("pg_ctl -D {} status", self.pg_dir.display()),
                status: out.status.to_string(),
                stderr: output_text(&out),
            }),
        }
    }

    /// Exclusive cross-process lock on `data_dir/cluster.lock`, released when the file drops.
    async fn lock(&self) -> Result<File, ClusterError> {
        create_dirs_0755(&self.data_dir)?;
        let path = self.data_dir.join("cluster.lock");
        tokio::task::spawn_blocking(move || {
            // std opens with O_CLOEXEC, so the postmaster started under this lock does not
            // inherit the descriptor (which would keep the lock held for the server's lifetime).
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o644)
                .open(&path)
                .map_err(|e| ClusterError::io(format!("opening {}", path.display()), e))?;
            file.lock().map_err(|e| ClusterError::io(format!("locking {}", path.display()), e))?;
            Ok(file)
        })
        .await
        .map_err(|e| ClusterError::io("waiting for the cluster lock", io::Error::other(e)))?
    }

    /// Under the lock: record the state on first use, or make sure nobody recorded another one.
    fn write_or_check_state(&self) -> Result<(), ClusterError> {
        let path = self.data_dir.join("cluster.state");
        match fs::read_to_string(&path) {
            Ok(text) => match State::parse(&text) {
                Some(found) if found == self.state => Ok(()),
                found => Err(ClusterError::StateMismatch {
                    path,
                    found: format!("{found:?}"),
                    expected: format!("{:?}", self.state),
                }),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let tmp = self.data_dir.join("cluster.state.tmp");
                fs::write(&tmp, self.state.render())
                    .and_then(|()| fs::rename(&tmp, &path))
                    .map_err(|e| ClusterError::io(format!("writing {}", path.display()), e))
            }
            Err(e) => Err(ClusterError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Create `dir` (mode `mode`) owned by the server user; root chowns what it creates.
    fn make_server_dir(&self, dir: &Path, mode: u32) -> Result<(), ClusterError> {
        let ctx = || format!("creating {}", dir.display());
        match fs::DirBuilder::new().mode(mode).create(dir) {
            Ok(()) => {
                fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(|e| ClusterError::io(ctx(), e))?;
                if let Some((uid, gid)) = self.run_as.chown_to() {
                    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| ClusterError::io(ctx(), e))?;
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(ClusterError::io(ctx(), e)),
        }
    }

    async fn initdb(&self) -> Result<(), ClusterError> {
        info!(pg_dir = %self.pg_dir.display(), "initialising database cluster in {}", self.pg_dir.display());
        create_dirs_0755(&self.server_root)?;
        // As root the parent is root-owned, so postgres could not create pg/ itself: make it
        // here (empty, 0700, owned by postgres); initdb accepts an existing empty directory.
        self.make_server_dir(&self.pg_dir, 0o700)?;

        let locale = if c_utf8_available() { "C.UTF-8" } else { "C" };
        let out = self
            .run_bin("initdb")
            .arg("-D")
            .arg(&self.pg_dir)
            .args(["-U", &self.state.superuser])
            .args(["-E", "UTF8", "--locale", locale])
            // Trust on the private unix socket only; TCP is disabled anyway, and rejected in
            // pg_hba.conf should someone turn it on.
            .args(["--auth-local=trust", "--auth-host=reject"])
            .kb_output("initdb")
            .await?;
        if !out.status.success() {
            return Err(ClusterError::InitdbFailed {
                pg_dir: self.pg_dir.clone(),
                status: out.status.to_string(),
                stderr: output_text(&out),
            });
        }

        // Settings go in postgresql.conf (not -c) so `ALTER SYSTEM` can still override them.
        let conf = self.pg_dir.join("postgresql.conf");
        let mut settings = String::from(
            "\n# ---- kb embedded cluster (appended by kb at initialisation) ----\n\
             listen_addresses = ''            # unix socket only, never TCP\n\
             maintenance_work_mem = 512MB     # vector index builds\n\
             max_connections = 200            # parallel tests each open a pool\n\
             fsync = on                       # durability: accepted uploads are never lost\n",
        );
        if dev_shm_too_small() {
            // Docker's default 64MB /dev/shm makes parallel index builds fail with
            // "could not resize shared memory segment"; file-backed DSM avoids that.
            settings.push_str("dynamic_shared_memory_type = mmap  # /dev/shm is small here\n");
        }
        OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .map_err(|e| ClusterError::io(format!("writing {}", conf.display()), e))?;
        Ok(())
    }

    async fn start(&self) -> Result<(), ClusterError> {
        self.prepare_socket_dir()?;
        self.prepare_log_file()?;
        info!(
            pg_dir = %self.pg_dir.display(),
            socket_dir = %self.socket_dir.display(),
            "starting PostgreSQL"
        );
        // pg_ctl hands -o to /bin/sh, hence the quoting. `-h ''` repeats listen_addresses = ''.
        let server_opts =
            format!("-h '' -k {} -p {}", shell_quote(&self.socket_dir.to_string_lossy()), self.state.port);
        let timeout = PG_CTL_TIMEOUT_SECS.to_string();
        let log_len_before = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
        let out = self
            .run_pg_ctl()
            .arg("-D")
            .arg(&self.pg_dir)
            .arg("-l")
            .arg(&self.log_file)
            .args(["-o", &server_opts, "-w", "-t", &timeout, "start"])
            .kb_output("pg_ctl start")
            .await?;
        if !out.status.success() {
            return Err(ClusterError::StartFailed {
                status: out.status.to_string(),
                stderr: output_text(&out),
                log_file: self.log_file.clone(),
                log_tail: log_tail(&self.log_file, log_len_before, LOG_TAIL_LINES),
            });
        }
        Ok(())
    }

    /// The socket directory must be a real directory, owned by the server user, mode 0700:
    /// this is what makes trust authentication safe.
    fn prepare_socket_dir(&self) -> Result<(), ClusterError> {
        let dir = &self.socket_dir;
        self.make_server_dir(dir, 0o700)?;
        let unsafe_dir = |reason: String| ClusterError::UnsafeSocketDir { path: dir.clone(), reason };
        let meta =
            fs::symlink_metadata(dir).map_err(|e| ClusterError::io(format!("inspecting {}", dir.display()), e))?;
        if !meta.file_type().is_dir() {
            return Err(unsafe_dir("not a directory (or a symlink)".into()));
        }
        if meta.uid() != self.run_as.uid() {
            return Err(unsafe_dir(format!("owned by uid {}, expected uid {}", meta.uid(), self.run_as.uid())));
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| ClusterError::io(format!("chmod 0700 {}", dir.display()), e))?;
        }
        Ok(())
    }

    /// As root, pg_ctl (running as postgres) cannot create a file in a root-owned directory:
    /// create the log here and hand it over.
    fn prepare_log_file(&self) -> Result<(), ClusterError> {
        let Some((uid, gid)) = self.run_as.chown_to() else {
            return Ok(());
        };
        let ctx = || format!("creating {}", self.log_file.display());
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.log_file)
            .map_err(|e| ClusterError::io(ctx(), e))?;
        std::os::unix::fs::chown(&self.log_file, Some(uid), Some(gid)).map_err(|e| ClusterError::io(ctx(), e))
    }

    async fn create_database(&self, db_name: &str) -> Result<(), ClusterError> {
        create_database_if_missing(&self.database_url("postgres"), db_name).await
    }

    /// A command running server binary `name` as the server user, with no stdin.
    fn run_bin(&self, name: &str) -> tokio::process::Command {
        let bin = self.bin_dir.join(name);
        let mut cmd = match &self.run_as {
            RunAs::CurrentUser { .. } => tokio::process::Command::new(bin),
            RunAs::Postgres { runuser, .. } => {
                let mut cmd = tokio::process::Command::new(runuser);
                cmd.args(["-u", "postgres", "--"]).arg(bin);
                cmd
            }
        };
        // The server user may not be able to enter kb's working directory (e.g. /root).
        cmd.current_dir("/").stdin(Stdio::null());
        cmd
    }

    fn run_pg_ctl(&self) -> tokio::process::Command {
        self.run_bin("pg_ctl")
    }
}

/// Run a server command to completion, capturing its output, with a debug trace of the call.
trait KbOutput {
    async fn kb_output(&mut self, what: &str) -> Result<Output, ClusterError>;
}

impl KbOutput for tokio::process::Command {
    async fn kb_output(&mut self, what: &str) -> Result<Output, ClusterError> {
        debug!(command = ?self.as_std(), "running {what}");
        self.output().await.map_err(|e| ClusterError::io(format!("running {what}"), e))
    }
}

// ---------------------------------------------------------------------- discovery helpers

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn default_port() -> u16 {
    non_empty_env("KB_PG_PORT").and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_PORT)
}

fn absolute_path(path: &Path) -> Result<PathBuf, ClusterError> {
    // Canonical where it exists, so one directory reached through two paths is one cluster.
    match fs::canonicalize(path) {
        Ok(p) => Ok(p),
        Err(_) => std::path::absolute(path).map_err(|e| ClusterError::io(format!("resolving {}", path.display()), e)),
    }
}

/// The installed PostgreSQL binaries kb uses, also for `DATABASE_URL` (pg_dump, pg_restore,
/// psql): `KB_PG_BIN`, else the highest `/usr/lib/postgresql/N/bin`.
pub fn installed_bin_dir() -> Result<PathBuf, ClusterError> {
    find_bin_dir()
}

/// `KB_PG_BIN`, else the highest `/usr/lib/postgresql/N/bin` with all server binaries.
fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    if let Some(dir) = non_empty_env("KB_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_server_binaries(&dir) {
            Ok(dir)
        } else {
            Err(ClusterError::BinariesMissing { searched: format!("KB_PG_BIN={}", dir.display()) })
        };
    }
    find_bin_dir_in(Path::new(DEBIAN_PG_ROOT))
        .ok_or_else(|| ClusterError::BinariesMissing { searched: format!("{DEBIAN_PG_ROOT}/*/bin") })
}

/// The `root/N/bin` with the highest numeric `N` that holds all server binaries.
fn find_bin_dir_in(root: &Path) -> Option<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in fs::read_dir(root).ok()?.flatten() {
        let Some(major) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let bin = entry.path().join("bin");
        if has_server_binaries(&bin) && best.as_ref().is_none_or(|(m, _)| major > *m) {
            best = Some((major, bin));
        }
    }
    best.map(|(_, bin)| bin)
}

fn has_server_binaries(dir: &Path) -> bool {
    SERVER_BINARIES
        .iter()
        .all(|name| fs::metadata(dir.join(name)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Effective uid, from `/proc/self/status` (no libc: the crate forbids unsafe code).
fn effective_uid() -> Result<u32, ClusterError> {
    let status =
        fs::read_to_string("/proc/self/status").map_err(|e| ClusterError::io("reading /proc/self/status", e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        // Fields: real, effective, saved, filesystem.
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
        .ok_or_else(|| {
            ClusterError::io(
                "reading the effective uid",
                io::Error::new(io::ErrorKind::InvalidData, "no Uid line in /proc/self/status"),
            )
        })
}

fn detect_run_as() -> Result<RunAs, ClusterError> {
    let uid = effective_uid()?;
    if uid != 0 {
        return Ok(RunAs::CurrentUser { uid });
    }
    let runuser = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join("runuser"))
        .find(|p| p.is_file())
        .ok_or(ClusterError::RunuserMissing)?;
    let (uid, gid) = lookup_user("postgres")?.ok_or(ClusterError::NoPostgresUser)?;
    Ok(RunAs::Postgres { runuser, uid, gid })
}

/// `(uid, gid)` of `name` via `getent passwd` (honours NSS), else `/etc/passwd`.
fn lookup_user(name: &str) -> Result<Option<(u32, u32)>, ClusterError> {
    let text = match std::process::Command::new("getent").args(["passwd", name]).stderr(Stdio::null()).output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(_) => fs::read_to_string("/etc/passwd").map_err(|e| ClusterError::io("reading /etc/passwd", e))?,
    };
    Ok(parse_passwd(&text, name))
}

fn parse_passwd(text: &str, name: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    })
}

/// The cluster superuser: the OS user running the server, so `psql` works without `-U`.
fn superuser_name(run_as: &RunAs) -> Result<String, ClusterError> {
    match run_as {
        RunAs::Postgres { .. } => Ok("postgres".into()),
        RunAs::CurrentUser { uid } => {
            let out = std::process::Command::new("id")
                .arg("-un")
                .output()
                .map_err(|e| ClusterError::io("running `id -un`", e))?;
            let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !name.is_empty() {
                Ok(name)
            } else {
                // A uid without a passwd entry (some containers): any role name works for
                // initdb, and trust auth over the private socket does not care.
                warn!(uid, "no user name for this uid; naming the superuser `kb`");
                Ok("kb".into())
            }
        }
    }
}

/// As root: where the server files go when `postgres` cannot reach the data dir (module doc).
fn choose_external_root(data_dir: &Path, run_as: &RunAs) -> Result<Option<PathBuf>, ClusterError> {
    let RunAs::Postgres { runuser, .. } = run_as else {
        return Ok(None);
    };
    let fallback = Path::new(ROOT_FALLBACK_BASE).join(short_hash(data_dir.as_os_str()));
    // Keep whichever location already holds a cluster.
    if data_dir.join("pg").exists() {
        return Ok(None);
    }
    if fallback.join("pg").exists() {
        return Ok(Some(fallback));
    }
    // kb creates the missing part of the data dir 0755, so what matters is whether postgres
    // can traverse the deepest directory that already exists (access(2) checks the whole path).
    let existing = data_dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    let reachable = std::process::Command::new(runuser)
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(existing)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| ClusterError::io("running runuser to check directory access", e))?
        .success();
    if reachable {
        Ok(None)
    } else {
        info!(
            data_dir = %data_dir.display(),
            server_root = %fallback.display(),
            "the postgres user cannot reach the data directory; keeping PostgreSQL files in {}",
            fallback.display()
        );
        Ok(Some(fallback))
    }
}

/// Create `path` and missing parents with mode 0755 regardless of umask, so the server user
/// can traverse them (existing directories are left alone).
fn create_dirs_0755(path: &Path) -> Result<(), ClusterError> {
    let missing: Vec<&Path> = path.ancestors().take_while(|p| !p.exists()).collect();
    for dir in missing.into_iter().rev() {
        let ctx = || format!("creating {}", dir.display());
        match fs::DirBuilder::new().mode(0o755).create(dir) {
            Ok(()) => {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(|e| ClusterError::io(ctx(), e))?
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ClusterError::io(ctx(), e)),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------- pure helpers

/// 16 hex digits of sha256: stable short names for per-data-dir fallback directories.
fn short_hash(s: &OsStr) -> String {
    Sha256::digest(s.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `dir/.s.PGSQL.<port>` fits in a unix socket address.
fn socket_path_fits(dir: &Path, port: u16) -> bool {
    dir.as_os_str().len() + "/.s.PGSQL.".len() + port.to_string().len() <= MAX_SOCKET_PATH
}

/// `preferred` if the socket path fits, else the short `/tmp/kb-<key>`.
fn socket_dir_for(preferred: &Path, port: u16, key: &str) -> PathBuf {
    if socket_path_fits(preferred, port) { preferred.to_path_buf() } else { PathBuf::from(format!("/tmp/kb-{key}")) }
}

/// The pid in `pg_ctl status` output: `pg_ctl: server is running (PID: 1234)`.
fn parse_pg_ctl_pid(stdout: &str) -> Option<u32> {
    let rest = &stdout[stdout.find("PID:")? + 4..];
    rest.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Percent-encode everything but RFC 3986 unreserved characters (and `/` if `keep_slash`).
fn url_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Single-quote for /bin/sh.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn validate_db_name(name: &str) -> Result<(), ClusterError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > 63 {
        "longer than 63 bytes (PostgreSQL would truncate it)"
    } else if name.contains('\0') {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(ClusterError::InvalidDatabaseName { name: name.into(), reason: reason.into() })
}

fn output_text(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stdout.trim());
    }
    text
}

/// The last `lines` lines written to `path` after byte offset `from` (or before it, if the
/// server wrote nothing new).
fn log_tail(path: &Path, from: u64, lines: usize) -> String {
    let read = || -> io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        // Read at most the last 64 KiB: enough for the tail, cheap for a huge log.
        let start = if len > from { from } else { 0 }.max(len.saturating_sub(64 * 1024));
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read the log: {e})"),
    }
}

fn c_utf8_available() -> bool {
    std::process::Command::new("locale").arg("-a").stderr(Stdio::null()).output().is_ok_and(|out| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.eq_ignore_ascii_case("C.UTF-8") || l.eq_ignore_ascii_case("C.utf8"))
    })
}

/// True when /dev/shm is missing or under 1 GiB (typical of containers).
fn dev_shm_too_small() -> bool {
    match fs::read_to_string("/proc/self/mounts") {
        Ok(mounts) => dev_shm_size(&mounts).is_none_or(|size| size.is_some_and(|s| s < 1 << 30)),
        Err(_) => false,
    }
}

/// `None`: no /dev/shm mount; `Some(None)`: mounted without a size option (half of RAM).
fn dev_shm_size(mounts: &str) -> Option<Option<u64>> {
    let line = mounts.lines().find(|l| l.split_whitespace().nth(1) == Some("/dev/shm"))?;
    let options = line.split_whitespace().nth(3).unwrap_or("");
    Some(options.split(',').find_map(|o| {
        let v = o.strip_prefix("size=")?;
        let (digits, mult) = match v.chars().last()? {
            'k' | 'K' => (&v[..v.len() - 1], 1u64 << 10),
            'm' | 'M' => (&v[..v.len() - 1], 1 << 20),
            'g' | 'G' => (&v[..v.len() - 1], 1 << 30),
            _ => (v, 1),
        };
        digits.parse::<u64>().ok().map(|n| n * mult)
    }))
}

/// `CREATE DATABASE` unless it exists.
async fn create_database_if_missing(url: &str, db_name: &str) -> Result<(), ClusterError> {
    let mut conn = connect_with_retry(url).await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(db_name)
        .fetch_optional(&mut conn)
        .await
        .map_err(|source| ClusterError::Database { context: "looking up the database".into(), source })?;
    if exists.is_none() {
        info!(db_name, "creating database");
        let sql = format!("CREATE DATABASE {}", quote_ident(db_name));
        // Not `raw_sql`: its `execute` makes this future non-`Send` (rustc: "Executor is
        // not general enough"), and callers spawn `ensure_running`. Not prepared twice.
        match sqlx::query(&sql).persistent(false).execute(&mut conn).await {
            Ok(_) => {}
            // Someone outside our lock (e.g. psql) created it meanwhile: fine.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(source) => {
                return Err(ClusterError::Database { context: format!("creating database {db_name:?}"), source });
            }
        }
    }
    let _ = conn.close().await;
    Ok(())
}

/// Connect, retrying while the server is still starting or recovering (57P03) or the socket is
/// not there yet.
async fn connect_with_retry(url: &str) -> Result<sqlx::PgConnection, ClusterError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match sqlx::PgConnection::connect(url).await {
            Ok(conn) => return Ok(conn),
            Err(e) => {
                let retryable = match &e {
                    sqlx::Error::Io(_) => true,
                    sqlx::Error::Database(db) => db.code().as_deref() == Some("57P03"),
                    _ => false,
                };
                if !retryable || tokio::time::Instant::now() >= deadline {
                    return Err(ClusterError::Database {
                        context: "connecting to the embedded cluster".into(),
                        source: e,
                    });
                }
                debug!(error = %e, "PostgreSQL not accepting connections yet, retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_socket_dir_is_kept() {
        let dir = Path::new("/home/alice/.local/share/kb/sock");
        assert_eq!(socket_dir_for(dir, 5432, "abc"), dir);
    }

    #[test]
    fn long_socket_dir_falls_back_to_tmp() {
        let long = PathBuf::from(format!("/{}/sock", "x".repeat(100)));
        let dir = socket_dir_for(&long, 5432, "0123456789abcdef");
        assert_eq!(dir, Path::new("/tmp/kb-0123456789abcdef"));
        assert!(socket_path_fits(&dir, 65535));
    }

    #[test]
    fn socket_limit_is_exact() {
        // dir + "/.s.PGSQL.5432" (14 bytes) must be at most 107 bytes.
        let fits = PathBuf::from(format!("/{}", "a".repeat(107 - 14 - 1)));
        assert!(socket_path_fits(&fits, 5432));
        let too_long = PathBuf::from(format!("/{}", "a".repeat(107 - 14)));
        assert!(!socket_path_fits(&too_long, 5432));
    }

    #[test]
    fn short_hash_is_stable_and_short() {
        let a = short_hash(OsStr::new("/root/.local/share/kb"));
        assert_eq!(a.len(), 16);
        assert_eq!(a, short_hash(OsStr::new("/root/.local/share/kb")));
        assert_ne!(a, short_hash(OsStr::new("/root/.local/share/kb2")));
    }

    fn fake_bin(dir: &Path, names: &[&str]) {
        fs::create_dir_all(dir).expect("test setup");
        for name in names {
            let p = dir.join(name);
            fs::write(&p, "#!/bin/sh\n").expect("test setup");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("test setup");
        }
    }

    #[test]
    fn bin_dir_discovery_picks_highest_complete_major() {
        let root = tempfile::tempdir().expect("test setup");
        fake_bin(&root.path().join("9/bin"), &SERVER_BINARIES);
        fake_bin(&root.path().join("15/bin"), &SERVER_BINARIES);
        // 17 is incomplete (no pg_ctl): skipped.
        fake_bin(&root.path().join("17/bin"), &["postgres", "initdb"]);
        fs::create_dir_all(root.path().join("latest/bin")).expect("test setup");
        assert_eq!(find_bin_dir_in(root.path()), Some(root.path().join("15/bin")));
    }

    #[test]
    fn bin_dir_discovery_requires_executables() {
        let root = tempfile::tempdir().expect("test setup");
        fake_bin(&root.path().join("16/bin"), &SERVER_BINARIES);
        fs::set_permissions(root.path().join("16/bin/initdb"), fs::Permissions::from_mode(0o644)).expect("test setup");
        assert_eq!(find_bin_dir_in(root.path()), None);
        assert_eq!(find_bin_dir_in(&root.path().join("missing")), None);
    }

    #[test]
    fn state_round_trips() {
        let s = State { port: 5433, superuser: "postgres".into(), external_root: Some("/var/lib/kb/0123".into()) };
        assert_eq!(State::parse(&s.render()), Some(s.clone()));
        let local = State { external_root: None, ..s };
        assert_eq!(State::parse(&local.render()), Some(local));
        assert_eq!(State::parse("port=x\nsuperuser=a\n"), None);
    }

    #[test]
    fn pid_is_parsed_from_pg_ctl_status() {
        let out = "pg_ctl: server is running (PID: 4242)\n/usr/lib/postgresql/15/bin/postgres \"-D\" \"/x\"\n";
        assert_eq!(parse_pg_ctl_pid(out), Some(4242));
        assert_eq!(parse_pg_ctl_pid("pg_ctl: no server running\n"), None);
    }

    #[test]
    fn passwd_lookup() {
        let text = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104::/var/lib/postgresql:/bin/bash\n";
        assert_eq!(parse_passwd(text, "postgres"), Some((101, 104)));
        assert_eq!(parse_passwd(text, "post"), None);
    }

    #[test]
    fn url_encodes_socket_dir_and_names() {
        assert_eq!(url_encode("/tmp/kb dir/a+b", true), "/tmp/kb%20dir/a%2Bb");
        assert_eq!(url_encode("kb_test-1", false), "kb_test-1");
        assert_eq!(url_encode("a/b@c", false), "a%2Fb%40c");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/a/it's"), r"'/a/it'\''s'");
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
    }

    #[test]
    fn db_names_are_validated() {
        assert!(validate_db_name("kb").is_ok());
        assert!(validate_db_name("").is_err());
        assert!(validate_db_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn dev_shm_size_parsing() {
        let docker = "shm /dev/shm tmpfs rw,nosuid,nodev,noexec,relatime,size=65536k 0 0\n";
        assert_eq!(dev_shm_size(docker), Some(Some(64 << 20)));
        let host = "tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0\n";
        assert_eq!(dev_shm_size(host), Some(None));
        assert_eq!(dev_shm_size("proc /proc proc rw 0 0\n"), None);
    }

    #[test]
    fn status_display() {
        assert_eq!(Status::Running { pid: 7 }.to_string(), "running (pid 7)");
        assert_eq!(Status::Stopped.to_string(), "stopped");
        assert_eq!(Status::NotInitialised.to_string(), "not initialised");
    }
}

#[cfg(test)]
mod send_check {
    fn assert_send<T: Send>(_: T) {}
    #[allow(dead_code)]
    fn ensure_running_is_send(c: super::Cluster) {
        let c2 = c.clone();
        assert_send(async move { c.ensure_running("x").await });
        assert_send(async move { c2.stop().await });
    }
}
