//! The project-local PostgreSQL cluster Hearth uses when no `DATABASE_URL` is
//! set: created with `initdb` under `<home>/pg` (default `.hearth/pg`) on first
//! use, started with `pg_ctl`, listening on 127.0.0.1 at a port of its own with
//! password (SCRAM) authentication. Touches only that directory and the
//! processes it starts; the cluster keeps running after Hearth exits so the
//! next start is instant (`hearth db stop` stops it).
//!
//! PostgreSQL refuses to run as root, so when Hearth runs as root the cluster's
//! files are owned by, and its processes run as, the `postgres` system user.
//!
//! Layout of `<home>/pg`:
//! - `data/`      the cluster (owned by the server's user)
//! - `log/`       the server log, `postgres.log`
//! - `server-dir` present only when the `postgres` user cannot enter this
//!   directory (e.g. a checkout under a mode-0700 parent): then `data/` and
//!   `log/` live in the server-owned directory it names, under `/var/tmp`.
//! - `password`   the `hearth` role's password (mode 0600)
//! - `port`       the TCP port chosen at creation
//! - `lock`       serialises creation and start across processes

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::process::Command;
use tokio_postgres::NoTls;
use tracing::{debug, info, warn};

/// The role and database the embedded cluster serves.
pub const ROLE: &str = "hearth";
pub const DATABASE: &str = "hearth";

/// Ports are picked from this range, starting at an offset hashed from the
/// directory so two checkouts on one machine do not collide.
const PORT_BASE: u16 = 15432;
const PORT_SPAN: u16 = 2000;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found (looked in {searched}). \
         Fix: run `bash docker/provision.sh` (installs PostgreSQL and pgvector), or set HEARTH_PG_BIN \
         to the directory holding them, or set DATABASE_URL to an existing server"
    )]
    PostgresNotFound { searched: String },
    #[error(
        "pgvector is not installed for PostgreSQL {pg_major} (no {control}). \
         Fix: run `bash docker/provision.sh`, or set DATABASE_URL to a server that has pgvector"
    )]
    PgvectorNotInstalled { pg_major: String, control: String },
    #[error(
        "PostgreSQL refuses to run as root and there is no 'postgres' system user. \
         Fix: create one (`adduser --system --group postgres`) or run hearth as a normal user"
    )]
    NoPostgresUser,
    #[error(
        "the PostgreSQL server user '{user}' cannot enter {dir}: make every parent directory \
         traversable (chmod o+x), or set HEARTH_HOME to a directory it can reach"
    )]
    Inaccessible { user: String, dir: String },
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no free TCP port for the embedded cluster in {0}..{1}")]
    NoFreePort(u16, u16),
    #[error("embedded cluster at {dir}: {detail}")]
    Setup { dir: String, detail: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where PostgreSQL's server programs are, and which major version they are.
#[derive(Debug, Clone)]
pub struct PgInstall {
    pub bin: PathBuf,
    pub major: String,
    pub sharedir: PathBuf,
}

impl PgInstall {
    /// `HEARTH_PG_BIN` if set, else the newest `/usr/lib/postgresql/N/bin`
    /// (Debian and Ubuntu), else `pg_config --bindir` from `PATH`.
    pub fn find() -> Result<Self, ClusterError> {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(dir) = std::env::var_os("HEARTH_PG_BIN") {
            candidates.push(dir.into());
        } else {
            let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                    Some((v, e.path().join("bin")))
                })
                .collect();
            versions.sort();
            candidates.extend(versions.into_iter().rev().map(|(_, p)| p));
            if let Ok(out) = std::process::Command::new("pg_config")
                .arg("--bindir")
                .output()
                && out.status.success()
            {
                candidates.push(String::from_utf8_lossy(&out.stdout).trim().into());
            }
        }
        let searched = if candidates.is_empty() {
            "HEARTH_PG_BIN, /usr/lib/postgresql/*/bin, pg_config".to_owned()
        } else {
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let bin = candidates
            .into_iter()
            .find(|b| {
                ["initdb", "pg_ctl", "postgres"]
                    .iter()
                    .all(|p| b.join(p).is_file())
            })
            .ok_or(ClusterError::PostgresNotFound { searched })?;
        let version = std::process::Command::new(bin.join("postgres"))
            .arg("--version")
            .output()
            .map_err(io_err(&bin))?;
        // "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
        let text = String::from_utf8_lossy(&version.stdout);
        let major = text
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.split('.').next())
            .unwrap_or("?")
            .to_owned();
        let sharedir = std::process::Command::new(bin.join("pg_config"))
            .arg("--sharedir")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .unwrap_or_else(|| PathBuf::from(format!("/usr/share/postgresql/{major}")));
        Ok(Self {
            bin,
            major,
            sharedir,
        })
    }

    /// Fails with the fix when pgvector's extension files are missing.
    pub fn require_pgvector(&self) -> Result<(), ClusterError> {
        let control = self.sharedir.join("extension/vector.control");
        if control.is_file() {
            Ok(())
        } else {
            Err(ClusterError::PgvectorNotInstalled {
                pg_major: self.major.clone(),
                control: control.display().to_string(),
            })
        }
    }
}

/// The OS user the server runs as: ourselves, or `postgres` when we are root.
#[derive(Debug, Clone)]
struct ServerUser {
    name: String,
    ids: Option<(u32, u32)>,
}

impl ServerUser {
    fn resolve() -> Result<Self, ClusterError> {
        if !nix::unistd::geteuid().is_root() {
            let name = std::env::var("USER").unwrap_or_else(|_| "current user".into());
            return Ok(Self { name, ids: None });
        }
        let user = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .ok_or(ClusterError::NoPostgresUser)?;
        Ok(Self {
            name: user.name,
            ids: Some((user.uid.as_raw(), user.gid.as_raw())),
        })
    }

    /// Whether this user may enter `dir` and every directory above it, judged
    /// from owner and mode bits (supplementary groups are not counted).
    fn can_traverse(&self, dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Some((uid, gid)) = self.ids else {
            return true;
        };
        dir.ancestors().all(|d| {
            let Ok(meta) = fs::metadata(d) else {
                return false;
            };
            let mode = meta.mode();
            if meta.uid() == uid {
                mode & 0o100 != 0
            } else if meta.gid() == gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            }
        })
    }

    fn chown(&self, path: &Path) -> Result<(), ClusterError> {
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_err(path))?;
        }
        Ok(())
    }

    fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(cwd)
            .env("LC_ALL", "C.UTF-8")
            .kill_on_drop(false);
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }
}

/// A handle on the embedded cluster's directory.
#[derive(Debug, Clone)]
pub struct EmbeddedCluster {
    root: PathBuf,
}

impl EmbeddedCluster {
    /// The cluster under `<home>/pg`.
    pub fn new(home: &Path) -> Self {
        Self {
            root: home.join("pg"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `data/` and `log/` live: `root` itself, unless the server user
    /// cannot reach it (see the module docs).
    fn server_base(&self, root: &Path, user: &ServerUser) -> Result<PathBuf, ClusterError> {
        let marker = root.join("server-dir");
        if let Ok(text) = fs::read_to_string(&marker) {
            return Ok(PathBuf::from(text.trim()));
        }
        if user.can_traverse(root) {
            return Ok(root.to_path_buf());
        }
        let hash = Sha256::digest(root.as_os_str().as_encoded_bytes());
        let tag: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let base = PathBuf::from("/var/tmp").join(format!("hearth-pg-{tag}"));
        fs::create_dir_all(&base).map_err(io_err(&base))?;
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).map_err(io_err(&base))?;
        user.chown(&base)?;
        fs::write(&marker, base.display().to_string()).map_err(io_err(&marker))?;
        warn!(
            dir = %root.display(),
            server_dir = %base.display(),
            user = %user.name,
            "the PostgreSQL user cannot enter the project directory; keeping the cluster's files in the server directory"
        );
        Ok(base)
    }

    /// The directory holding the cluster's `data/` and `log/`.
    pub fn server_dir(&self) -> PathBuf {
        fs::read_to_string(self.root.join("server-dir"))
            .map(|t| PathBuf::from(t.trim()))
            .unwrap_or_else(|_| self.root.clone())
    }

    /// Creates the cluster if needed, starts it if it is not running, makes
    /// sure the `hearth` database has the `vector` extension, and returns the
    /// connection settings for `database` (normally [`DATABASE`]).
    pub async fn ensure_running(
        &self,
        database: &str,
    ) -> Result<tokio_postgres::Config, ClusterError> {
        let install = PgInstall::find()?;
        install.require_pgvector()?;
        let user = ServerUser::resolve()?;
        fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        let root = self.root.canonicalize().map_err(io_err(&self.root))?;

        let lock_path = root.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| ClusterError::Setup {
                dir: root.display().to_string(),
                detail: e.to_string(),
            })?
            .map_err(io_err(&lock_path))?;

        let result = self.ensure_running_locked(&root, &install, &user).await;
        drop(lock);
        let (port, password) = result?;

        let mut config = self.config(port, &password);
        let mut admin = config.clone();
        admin.dbname("postgres");
        ensure_database(&admin, &config, &self.root).await?;
        config.dbname(database);
        Ok(config)
    }

    fn config(&self, port: u16, password: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user(ROLE)
            .password(password)
            .dbname(DATABASE)
            .application_name("hearth")
            .connect_timeout(Duration::from_secs(10));
        config
    }

    async fn ensure_running_locked(
        &self,
        root: &Path,
        install: &PgInstall,
        user: &ServerUser,
    ) -> Result<(u16, String), ClusterError> {
        let base = self.server_base(root, user)?;
        let data = base.join("data");
        let log_dir = base.join("log");
        let password_file = root.join("password");
        let port_file = root.join("port");

        if !data.join("PG_VERSION").is_file() {
            self.init(root, &base, install, user).await?;
        }
        let password = fs::read_to_string(&password_file)
            .map_err(io_err(&password_file))?
            .trim()
            .to_owned();
        let port: u16 = fs::read_to_string(&port_file)
            .map_err(io_err(&port_file))?
            .trim()
            .parse()
            .map_err(|_| ClusterError::Setup {
                dir: root.display().to_string(),
                detail: format!("{} does not hold a port number", port_file.display()),
            })?;

        if let Some(running) = running_port(&data) {
            debug!(port = running, "embedded PostgreSQL already running");
            return Ok((running, password));
        }
        // Another program may have taken our port since the cluster was made.
        let port = if port_free(port) {
            port
        } else {
            let p = pick_port(root)?;
            fs::write(&port_file, p.to_string()).map_err(io_err(&port_file))?;
            info!(
                old = port,
                new = p,
                "embedded PostgreSQL port taken; moving"
            );
            p
        };
        info!(dir = %data.display(), port, "starting embedded PostgreSQL");
        let options =
            format!("-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''");
        let out = user
            .command(&install.bin.join("pg_ctl"), &base)
            .arg("start")
            .arg("-w")
            .args(["-t", "60"])
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(log_dir.join("postgres.log"))
            .arg("-o")
            .arg(&options)
            .output()
            .await
            .map_err(|e| spawn_err(e, user, root, "pg_ctl start"))?;
        check_output(&out, "pg_ctl start", Some(&log_dir.join("postgres.log")))?;
        Ok((port, password))
    }

    async fn init(
        &self,
        root: &Path,
        base: &Path,
        install: &PgInstall,
        user: &ServerUser,
    ) -> Result<(), ClusterError> {
        let data = base.join("data");
        let log_dir = base.join("log");
        info!(dir = %data.display(), pg = %install.major, user = %user.name, "creating embedded PostgreSQL cluster");
        // A half-made cluster from an interrupted run is started over.
        if data.exists() {
            fs::remove_dir_all(&data).map_err(io_err(&data))?;
        }
        for dir in [&data, &log_dir] {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
            user.chown(dir)?;
        }

        let mut bytes = [0u8; 24];
        rand::fill(&mut bytes);
        let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let password_file = root.join("password");
        write_private(&password_file, &password)?;
        // initdb reads the password from a file its own user can read.
        let pwfile = base.join("initdb.pw");
        write_private(&pwfile, &password)?;
        user.chown(&pwfile)?;

        let out = user
            .command(&install.bin.join("initdb"), base)
            .arg("-D")
            .arg(&data)
            .args(["-U", ROLE, "-E", "UTF8", "--locale=C.UTF-8"])
            .args(["--auth-local=scram-sha-256", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .await
            .map_err(|e| spawn_err(e, user, root, "initdb"));
        let _ = fs::remove_file(&pwfile);
        check_output(&out?, "initdb", None)?;

        let port = pick_port(root)?;
        let port_file = root.join("port");
        fs::write(&port_file, port.to_string()).map_err(io_err(&port_file))?;
        Ok(())
    }

    /// Stops the cluster if it runs. Returns whether it was running.
    pub async fn stop(&self) -> Result<bool, ClusterError> {
        let base = self.server_dir();
        let data = base.join("data");
        if running_port(&data).is_none() {
            return Ok(false);
        }
        let install = PgInstall::find()?;
        let user = ServerUser::resolve()?;
        let out = user
            .command(&install.bin.join("pg_ctl"), &base)
            .args(["stop", "-w", "-m", "fast", "-D"])
            .arg(&data)
            .output()
            .await
            .map_err(|e| spawn_err(e, &user, &self.root, "pg_ctl stop"))?;
        check_output(&out, "pg_ctl stop", None)?;
        Ok(true)
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), ClusterError> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(text.as_bytes()).map_err(io_err(path))
}

fn spawn_err(e: std::io::Error, user: &ServerUser, dir: &Path, what: &str) -> ClusterError {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        ClusterError::Inaccessible {
            user: user.name.clone(),
            dir: dir.display().to_string(),
        }
    } else {
        ClusterError::Command {
            what: what.into(),
            detail: e.to_string(),
        }
    }
}

fn check_output(out: &Output, what: &str, log: Option<&Path>) -> Result<(), ClusterError> {
    if out.status.success() {
        return Ok(());
    }
    let mut detail = format!(
        "{} {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    if let Some(log) = log
        && let Ok(text) = fs::read_to_string(log)
    {
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        detail.push_str("; server log ends with:\n");
        detail.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    Err(ClusterError::Command {
        what: what.into(),
        detail,
    })
}

/// The port of the postmaster running on `data`, if one is alive.
/// `postmaster.pid` holds the PID on line 1 and the port on line 4.
fn running_port(data: &Path) -> Option<u16> {
    let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let mut lines = text.lines();
    let pid: i32 = lines.next()?.trim().parse().ok()?;
    let port: u16 = lines.nth(2)?.trim().parse().ok()?;
    // EPERM: alive, but owned by another user (the `postgres` user, when we are not root)
    let alive = matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Ok(()) | Err(nix::errno::Errno::EPERM)
    );
    (alive && !port_free(port)).then_some(port)
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn pick_port(root: &Path) -> Result<u16, ClusterError> {
    let hash = Sha256::digest(root.as_os_str().as_encoded_bytes());
    let offset = u16::from_le_bytes([hash[0], hash[1]]) % PORT_SPAN;
    (0..PORT_SPAN)
        .map(|i| PORT_BASE + (offset + i) % PORT_SPAN)
        .find(|p| port_free(*p))
        .ok_or(ClusterError::NoFreePort(PORT_BASE, PORT_BASE + PORT_SPAN))
}

/// Creates `config`'s database if missing, with the `vector` extension.
async fn ensure_database(
    admin: &tokio_postgres::Config,
    config: &tokio_postgres::Config,
    dir: &Path,
) -> Result<(), ClusterError> {
    let setup = |e: tokio_postgres::Error| ClusterError::Setup {
        dir: dir.display().to_string(),
        detail: crate::error::describe_postgres(&e),
    };
    let name = config.get_dbname().unwrap_or(DATABASE).to_owned();
    let (client, conn) = admin.connect(NoTls).await.map_err(setup)?;
    let task = tokio::spawn(conn);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(setup)?
        .is_some();
    if !exists {
        info!(database = %name, "creating database");
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        if let Err(e) = client.batch_execute(&sql).await {
            // a concurrent process may have created it first
            if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(setup(e));
            }
        }
    }
    drop(client);
    let _ = task.await;
    let (client, conn) = config.connect(NoTls).await.map_err(setup)?;
    let task = tokio::spawn(conn);
    let has_vector = client
        .query_opt("SELECT 1 FROM pg_extension WHERE extname = 'vector'", &[])
        .await
        .map_err(setup)?
        .is_some();
    if !has_vector {
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
            .await
            .map_err(setup)?;
    }
    drop(client);
    let _ = task.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_picked_in_range_and_depend_on_the_directory() {
        let a = pick_port(Path::new("/a")).expect("a port");
        assert!((PORT_BASE..PORT_BASE + PORT_SPAN).contains(&a));
    }

    #[test]
    fn a_missing_pid_file_means_not_running() {
        assert_eq!(running_port(Path::new("/nonexistent")), None);
    }

    #[test]
    fn a_missing_extension_names_the_fix() {
        let install = PgInstall {
            bin: "/nowhere/bin".into(),
            major: "15".into(),
            sharedir: "/nowhere/share".into(),
        };
        let err = install.require_pgvector().unwrap_err().to_string();
        assert!(
            err.contains("/nowhere/share/extension/vector.control"),
            "{err}"
        );
        assert!(err.contains("docker/provision.sh"), "{err}");
    }

    #[test]
    fn missing_binaries_name_the_fix() {
        let err = ClusterError::PostgresNotFound {
            searched: "/x".into(),
        }
        .to_string();
        assert!(
            err.contains("docker/provision.sh") && err.contains("DATABASE_URL"),
            "{err}"
        );
    }
}
