//! Logical backups: `pg_dump` to a file, and `pg_restore` (custom format) or `psql` (plain
//! SQL) back into a database, with the installed PostgreSQL's client programs, against the
//! embedded cluster or `DATABASE_URL`. A password never appears on a command line: it is taken
//! out of the URL and handed to the child as `PGPASSWORD`. Restores run in one transaction:
//! a failed restore changes nothing.

use std::io::{BufRead, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};

use super::{BackupArgs, RestoreArgs};
use crate::cluster::{self, Cluster};
use crate::config::Config;
use crate::runtime;
use crate::store::{self, maintenance};

/// A backup file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// pg_dump's custom archive: compressed, restored by pg_restore (tables can be picked).
    Custom,
    /// Plain SQL, restored by psql (the spec's manual backup).
    Plain,
}

impl Format {
    /// `plain` for a `.sql` file, else `custom`.
    fn for_path(path: &Path) -> Format {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("sql")) { Format::Plain } else { Format::Custom }
    }

    /// Custom archives start with `PGDMP`; anything else is taken for SQL.
    fn of_file(path: &Path) -> anyhow::Result<Format> {
        let mut magic = [0u8; 5];
        let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let n = file.read(&mut magic).with_context(|| format!("reading {}", path.display()))?;
        Ok(if n == 5 && &magic == b"PGDMP" { Format::Custom } else { Format::Plain })
    }

    fn name(self) -> &'static str {
        match self {
            Format::Custom => "custom",
            Format::Plain => "plain",
        }
    }
}

/// The database to back up or restore into, and the programs to do it with.
struct Target {
    /// With its password, for kb's own connections.
    url: SecretString,
    /// Without a password: safe on a command line.
    bare_url: String,
    password: Option<SecretString>,
    bin_dir: PathBuf,
    /// For messages.
    database: String,
}

async fn target(config: &Config, database: Option<&str>) -> anyhow::Result<Target> {
    let (url, bin_dir, name) = match (&config.database_url, database) {
        (Some(_), Some(_)) => {
            bail!("--database names a database of the embedded cluster; with DATABASE_URL, point DATABASE_URL at it")
        }
        (Some(url), None) => {
            let url = url.expose_secret().to_string();
            let options: sqlx::postgres::PgConnectOptions = url.parse().context("parsing DATABASE_URL")?;
            let name = options.get_database().unwrap_or("the DATABASE_URL database").to_string();
            (url, cluster::installed_bin_dir()?, name)
        }
        (None, name) => {
            let name = name.unwrap_or(runtime::EMBEDDED_DATABASE);
            let cluster = Cluster::new(&config.data_dir())?;
            let url = cluster.ensure_running(name).await.context("starting the embedded PostgreSQL cluster")?;
            (url, cluster.bin_dir().to_path_buf(), name.to_string())
        }
    };
    let (bare_url, password) = split_password(&url);
    Ok(Target { url: url.into(), bare_url, password: password.map(SecretString::from), bin_dir, database: name })
}

impl Target {
    /// `program` of the installed PostgreSQL, with the password in its environment only.
    fn command(&self, program: &str) -> anyhow::Result<tokio::process::Command> {
        let path = self.bin_dir.join(program);
        if !path.is_file() {
            bail!(
                "{program} not found in {}: install PostgreSQL's client programs (scripts/setup.sh) or set KB_PG_BIN",
                self.bin_dir.display()
            );
        }
        let mut cmd = tokio::process::Command::new(path);
        if let Some(password) = &self.password {
            cmd.env("PGPASSWORD", password.expose_secret());
        }
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        Ok(cmd)
    }
}

/// Runs a client program to completion; its stderr is the error when it fails.
async fn run(mut cmd: tokio::process::Command, what: &str) -> anyhow::Result<Output> {
    tracing::debug!(command = ?cmd.as_std(), "running {what}");
    let out = cmd.output().await.with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

pub async fn backup(config: &Config, args: BackupArgs) -> anyhow::Result<()> {
    let file = args.file.context("--file is required")?;
    let format = args.format.unwrap_or_else(|| Format::for_path(&file));
    let target = target(config, args.database.as_deref()).await?;
    let scope = if args.tables.is_empty() { "whole database".to_string() } else { args.tables.join(", ") };
    let content = if args.data_only { "rows only" } else { "schema and rows" };
    eprintln!("backing up {} ({scope}; {content}; {} format) to {}...", target.database, format.name(), file.display());
    let started = Instant::now();

    // The backup holds every row (user e-mails, encrypted secrets): readable by its owner only.
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| format!("creating {}", file.display()))?;
    let mut cmd = target.command("pg_dump")?;
    cmd.args(["--no-password", "--no-owner"]);
    cmd.arg(match format {
        Format::Custom => "--format=custom",
        Format::Plain => "--format=plain",
    });
    // A table name that matches nothing is an error, not an empty backup.
    if !args.tables.is_empty() {
        cmd.arg("--strict-names");
    }
    for table in &args.tables {
        cmd.arg(format!("--table={table}"));
    }
    if args.data_only {
        cmd.arg("--data-only");
        // The target database's migrations table already says which migrations it has.
        if args.tables.is_empty() {
            cmd.arg("--exclude-table-data=public._sqlx_migrations");
        }
        // Audit and statistics triggers must not fire again for restored rows (pg_restore
        // is told at restore time; a plain file carries it).
        if format == Format::Plain {
            cmd.arg("--disable-triggers");
        }
    }
    cmd.arg("--file").arg(&file).arg("--dbname").arg(&target.bare_url);
    if let Err(e) = run(cmd, "pg_dump").await {
        let _ = std::fs::remove_file(&file);
        return Err(e.context(format!("backing up {}", target.database)));
    }
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    println!(
        "backup of {} written to {} ({bytes} bytes, {} format) in {:.1} s",
        target.database,
        file.display(),
        format.name(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn restore(config: &Config, args: RestoreArgs) -> anyhow::Result<()> {
    let file = args.file.clone().context("--file is required")?;
    let format = Format::of_file(&file)?;
    if format == Format::Plain && (!args.tables.is_empty() || args.data_only || args.clean) {
        bail!(
            "--table, --data-only and --clean pick from a custom-format backup; {} is plain SQL and restores as \
             written (take it with `kb db backup --table ... --data-only` instead)",
            file.display()
        );
    }
    let target = target(config, args.database.as_deref()).await?;
    let has_schema = match format {
        Format::Custom => archive_has_schema(&target, &file).await?,
        Format::Plain => sql_has_schema(&file)?,
    };
    let data_only = args.data_only || !has_schema;
    let started = Instant::now();

    let pool = store::connect(target.url.expose_secret(), 2).await.context("connecting to PostgreSQL")?;
    if data_only {
        // Rows need kb's tables.
        store::migrate(&pool).await.context("applying migrations before restoring rows")?;
    } else {
        // A full backup's grants and policies name the API roles, which belong to the cluster.
        let mut conn = pool.acquire().await?;
        maintenance::ensure_api_roles(&mut conn)
            .await
            .context("creating the roles anon, authenticated, service_role")?;
    }
    eprintln!(
        "restoring {} into {} ({}; {} format; one transaction)...",
        file.display(),
        target.database,
        if data_only { "rows only" } else { "schema and rows" },
        format.name()
    );
    let restored = match format {
        Format::Custom => restore_archive(&target, &file, &args, data_only).await,
        Format::Plain => {
            let mut cmd = target.command("psql")?;
            cmd.args(["--no-password", "--no-psqlrc", "--quiet", "--single-transaction", "--set", "ON_ERROR_STOP=1"])
                .arg("--file")
                .arg(&file)
                .arg("--dbname")
                .arg(&target.bare_url)
                .stdout(Stdio::null());
            run(cmd, "psql").await.map(|_| ())
        }
    };
    if let Err(e) = restored {
        let hint = if data_only {
            "nothing was changed; rows that already exist conflict: restore rows into a database without them"
        } else {
            "nothing was changed; a full backup restores into an empty database (DATABASE_URL, or --database NAME \
             for the embedded cluster), or over its own objects with --clean (custom format)"
        };
        return Err(e.context(format!("restoring {} into {} ({hint})", file.display(), target.database)));
    }
    // A backup from an older kb gets this version's migrations.
    store::migrate(&pool).await.context("applying migrations after the restore")?;
    pool.close().await;
    println!("restored {} into {} in {:.1} s", file.display(), target.database, started.elapsed().as_secs_f64());
    Ok(())
}

/// Whether a custom archive holds table definitions (not only rows).
async fn archive_has_schema(target: &Target, file: &Path) -> anyhow::Result<bool> {
    Ok(toc(target, file).await?.lines().any(toc_line_defines_a_table))
}

/// `pg_restore --list`: the archive's table of contents.
async fn toc(target: &Target, file: &Path) -> anyhow::Result<String> {
    let mut cmd = target.command("pg_restore")?;
    cmd.arg("--list").arg(file);
    let out = run(cmd, "pg_restore --list").await?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `123; 1259 16390 TABLE public campaigns kb`, not `TABLE DATA`.
fn toc_line_defines_a_table(line: &str) -> bool {
    !line.starts_with(';') && line.contains(" TABLE ") && !line.contains(" TABLE DATA ")
}

/// A plain dump defines its tables before its first `COPY`: read up to there only.
fn sql_has_schema(file: &Path) -> anyhow::Result<bool> {
    let reader =
        std::io::BufReader::new(std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?);
    for line in reader.split(b'\n') {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if line.starts_with(b"CREATE TABLE ") {
            return Ok(true);
        }
        if line.starts_with(b"COPY ") || line.starts_with(b"INSERT INTO ") {
            return Ok(false);
        }
    }
    Ok(false)
}

async fn restore_archive(target: &Target, file: &Path, args: &RestoreArgs, data_only: bool) -> anyhow::Result<()> {
    // `COMMENT ON EXTENSION` needs the extension's owner (Supabase's `postgres` is not): the
    // comments are left out so that one line cannot fail the whole restore.
    let list: String = toc(target, file).await?.lines().filter(|l| !l.contains(" COMMENT - EXTENSION ")).fold(
        String::new(),
        |mut out, line| {
            out.push_str(line);
            out.push('\n');
            out
        },
    );
    let list_path = std::env::temp_dir().join(format!("kb-restore-{}.list", std::process::id()));
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&list_path)
        .and_then(|mut f| f.write_all(list.as_bytes()))
        .with_context(|| format!("writing {}", list_path.display()))?;
    let mut cmd = target.command("pg_restore")?;
    cmd.args(["--no-password", "--no-owner", "--single-transaction", "--exit-on-error"])
        .arg(format!("--use-list={}", list_path.display()));
    if data_only {
        cmd.args(["--data-only", "--disable-triggers"]);
    }
    if args.clean {
        cmd.args(["--clean", "--if-exists"]);
    }
    // pg_restore takes bare table names; a schema is a filter of its own.
    let mut schemas: Vec<&str> = Vec::new();
    for table in &args.tables {
        let (schema, name) = split_table(table);
        if let Some(schema) = schema
            && !schemas.contains(&schema)
        {
            schemas.push(schema);
            cmd.arg(format!("--schema={schema}"));
        }
        cmd.arg(format!("--table={name}"));
    }
    cmd.arg("--dbname").arg(&target.bare_url).arg(file);
    let result = run(cmd, "pg_restore").await.map(|_| ());
    let _ = std::fs::remove_file(&list_path);
    result
}

/// `schema.table` -> (`Some(schema)`, `table`); `table` -> (`None`, `table`).
fn split_table(name: &str) -> (Option<&str>, &str) {
    match name.split_once('.') {
        Some((schema, table)) => (Some(schema), table),
        None => (None, name),
    }
}

/// The URL without its password (user info or `password=` parameter), and the password.
fn split_password(url: &str) -> (String, Option<String>) {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return (url.to_string(), None);
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut password = None;
    let mut bare = url[..scheme_end].to_string();
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.split_once(':') {
                Some((user, secret)) => {
                    password = Some(percent_decode(secret));
                    bare.push_str(user);
                }
                None => bare.push_str(userinfo),
            }
            bare.push_str(&authority[at..]);
        }
        None => bare.push_str(authority),
    }
    let path_and_query = &rest[authority_end..];
    match path_and_query.split_once('?') {
        Some((path, query)) => {
            bare.push_str(path);
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| match pair.split_once('=') {
                    Some(("password", value)) => {
                        password = Some(percent_decode(value));
                        false
                    }
                    _ => true,
                })
                .collect();
            if !kept.is_empty() {
                bare.push('?');
                bare.push_str(&kept.join("&"));
            }
        }
        None => bare.push_str(path_and_query),
    }
    (bare, password)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_taken_out_of_the_url() {
        let (bare, password) =
            split_password("postgres://kb:s3cr%40t%2Fx@db.example.com:5432/postgres?sslmode=require");
        assert_eq!(bare, "postgres://kb@db.example.com:5432/postgres?sslmode=require");
        assert_eq!(password.as_deref(), Some("s3cr@t/x"));

        let (bare, password) = split_password("postgresql://kb:p@ss@host/db");
        assert_eq!(bare, "postgresql://kb@host/db");
        assert_eq!(password.as_deref(), Some("p@ss"));

        let (bare, password) = split_password("postgres://kb@host/db?password=abc%20d&sslmode=disable");
        assert_eq!(bare, "postgres://kb@host/db?sslmode=disable");
        assert_eq!(password.as_deref(), Some("abc d"));

        let embedded = "postgres://root@localhost/kb?host=%2Ftmp%2Fkb&port=5432&sslmode=disable";
        assert_eq!(split_password(embedded), (embedded.to_string(), None));
        assert_eq!(split_password("postgres://host/db?password=x").0, "postgres://host/db");
    }

    #[test]
    fn the_format_follows_the_extension_and_the_content() {
        assert_eq!(Format::for_path(Path::new("backup_20240101.sql")), Format::Plain);
        assert_eq!(Format::for_path(Path::new("kb.dump")), Format::Custom);
        let dir = tempfile::tempdir().expect("test setup");
        let custom = dir.path().join("a.sql");
        std::fs::write(&custom, b"PGDMP\x01\x0e").expect("test setup");
        assert_eq!(Format::of_file(&custom).expect("read"), Format::Custom);
        let plain = dir.path().join("b.dump");
        std::fs::write(&plain, b"--\n-- PostgreSQL database dump\n").expect("test setup");
        assert_eq!(Format::of_file(&plain).expect("read"), Format::Plain);
    }

    #[test]
    fn a_plain_dump_has_a_schema_when_a_table_comes_before_the_rows() {
        let dir = tempfile::tempdir().expect("test setup");
        let full = dir.path().join("full.sql");
        std::fs::write(&full, "SET x = 1;\nCREATE TABLE public.a (id int);\nCOPY public.a (id) FROM stdin;\n1\n\\.\n")
            .expect("test setup");
        assert!(sql_has_schema(&full).expect("read"));
        let rows = dir.path().join("rows.sql");
        std::fs::write(&rows, "SET x = 1;\nCOPY public.a (id) FROM stdin;\nCREATE TABLE x\n").expect("test setup");
        assert!(!sql_has_schema(&rows).expect("read"));
        assert!(toc_line_defines_a_table("223; 1259 16390 TABLE public campaigns kb"));
        assert!(!toc_line_defines_a_table("4001; 0 16390 TABLE DATA public campaigns kb"));
        assert!(!toc_line_defines_a_table(";     Dumped from database version: 15.8 TABLE "));
        assert_eq!(split_table("auth.users"), (Some("auth"), "users"));
        assert_eq!(split_table("campaigns"), (None, "campaigns"));
    }
}
