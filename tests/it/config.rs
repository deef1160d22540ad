//! The configuration end to end, through the real binary: `hearth config`
//! merges hearth.toml with the environment and redacts the password; an
//! unknown key or a bad value (in the file, a variable, or a flag) is an
//! error naming it, with exit code 2; `hearth serve` refuses to start on a
//! bad file and runs with a good one. No database is needed.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hearth_tests::server::free_port;

/// A fresh working directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hearth-config-{}-{name}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `hearth` in `dir`, with none of this process's configuration variables.
fn hearth(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth-cli"));
    cmd.current_dir(dir).env("HEARTH_HOME", dir.join(".hearth"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name == "DATABASE_URL" || (name.starts_with("HEARTH_") && name != "HEARTH_HOME") {
            cmd.env_remove(&*name);
        }
    }
    cmd
}

fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn hearth_config_prints_the_file_under_the_environment_with_the_password_hidden() {
    let dir = scratch("merged");
    std::fs::write(
        dir.join("hearth.toml"),
        r#"
[server]
listen = "0.0.0.0:9000"
world = "from-the-file"

[database]
url = "postgres://hearth:hunter2@db.example:5432/hearth"
pool_size = 8

[llm]
temperature = 0.3
"#,
    )
    .unwrap();
    let (code, out, err) = run(hearth(&dir)
        .arg("config")
        .env("HEARTH_DATABASE_POOL_SIZE", "4")
        .env("HEARTH_SERVER_WORLD", "from-the-env")
        .env("HEARTH_LLM_URL", "http://127.0.0.1:11434/v1"));
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.contains("hunter2"), "the password is shown:\n{out}");
    for line in [
        "listen = \"0.0.0.0:9000\"  # hearth.toml",
        "world = \"from-the-env\"  # HEARTH_SERVER_WORLD",
        "url = \"postgres://hearth:***@db.example:5432/hearth\"  # hearth.toml",
        "pool_size = 4  # HEARTH_DATABASE_POOL_SIZE",
        "temperature = 0.3  # hearth.toml",
        "url = \"http://127.0.0.1:11434/v1\"  # HEARTH_LLM_URL",
        "tick_rate = 10\n",
        "# stop_after is unset",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }

    // a flag beats the environment, which beats the file
    let (code, out, err) = run(hearth(&dir)
        .args(["--database-url", "postgres://flag:s3cret@elsewhere/db"])
        .arg("config")
        .env("DATABASE_URL", "postgres://env:pw@db/x"));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("url = \"postgres://flag:***@elsewhere/db\"  # --database-url"),
        "{out}"
    );
    assert!(!out.contains("s3cret") && !out.contains("pw@"), "{out}");

    // the output is a configuration file itself
    std::fs::write(dir.join("again.toml"), &out).unwrap();
    let (code, again, err) = run(hearth(&dir).args(["--config", "again.toml", "config"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        again.contains("world = \"from-the-file\"  # again.toml"),
        "{again}"
    );

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hearth_config_default_prints_the_example_files_values() {
    let dir = scratch("default");
    // a broken hearth.toml is not read by --default
    std::fs::write(dir.join("hearth.toml"), "[server]\nlissen = 1\n").unwrap();
    let (code, out, err) = run(hearth(&dir).args(["config", "--default"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("# File: none"), "{out}");
    let example =
        std::fs::read_to_string(hearth_tests::workspace_root().join("hearth.example.toml"))
            .unwrap();
    for line in out.lines().filter(|l| l.contains(" = ")) {
        assert!(
            example.contains(line),
            "{line:?} is not in hearth.example.toml"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_key_in_the_file_is_named() {
    let dir = scratch("unknown");
    std::fs::write(
        dir.join("hearth.toml"),
        "[server]\nlissen = \"0.0.0.0:9000\"\n",
    )
    .unwrap();
    let (code, out, err) = run(hearth(&dir).arg("config"));
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("hearth.toml: unknown key 'server.lissen' (did you mean 'listen'?)"),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");

    std::fs::write(dir.join("other.toml"), "[databse]\nurl = \"x\"\n").unwrap();
    let (code, _, err) = run(hearth(&dir).args(["--config", "other.toml", "config"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("other.toml: unknown section [databse] (did you mean [database]?)"),
        "{err}"
    );

    // --config names a file that must exist
    let (code, _, err) = run(hearth(&dir).args(["--config", "missing.toml", "config"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("missing.toml: cannot read it"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let dir = scratch("env");
    let (code, _, err) = run(hearth(&dir)
        .arg("config")
        .env("HEARTH_DATABASE_POOL_SIZE", "many"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("HEARTH_DATABASE_POOL_SIZE: expected an integer, found \"many\""),
        "{err}"
    );

    let (code, _, err) = run(hearth(&dir)
        .arg("config")
        .env("HEARTH_SERVER_LISSEN", "0.0.0.0:1"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "HEARTH_SERVER_LISSEN: not a configuration key (did you mean HEARTH_SERVER_LISTEN?)"
        ),
        "{err}"
    );

    // HEARTH_ variables that are not keys are left alone
    let (code, _, err) = run(hearth(&dir)
        .arg("config")
        .env("HEARTH_TOKEN_SECRET", "x")
        .env("HEARTH_LLM_PORT", "8088"));
    assert_eq!(code, Some(0), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_refuses_a_bad_configuration_naming_the_key() {
    let dir = scratch("serve-bad");
    std::fs::write(
        dir.join("bad.toml"),
        "[server]\nlisten = \"nope\"\n[content]\nsynthetic_agents = 5\n",
    )
    .unwrap();
    let (code, _, err) = run(hearth(&dir).args(["--config", "bad.toml", "serve", "--no-db"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("bad.toml: [server] listen: invalid socket address \"nope\""),
        "{err}"
    );

    std::fs::write(dir.join("hearth.toml"), "[world]\ntick_rate = 0\n").unwrap();
    let (code, _, err) = run(hearth(&dir).args(["serve", "--no-db"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("hearth.toml: [world] tick_rate: must be from 1 to 1000, found 0"),
        "{err}"
    );

    // a flag's value is checked too, and named by the flag
    let (code, _, err) = run(hearth(&dir).args(["serve", "--no-db", "--tick-rate", "0"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--tick-rate: must be from 1 to 1000"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_runs_with_the_files_settings() {
    let dir = scratch("serve-good");
    let port = free_port();
    std::fs::write(
        dir.join("hearth.toml"),
        format!(
            "[server]\nworld = \"configured\"\nlisten = \"127.0.0.1:{port}\"\n\
             [content]\nsynthetic_agents = 5\nlore = \"no-lore-here\"\nwatch = false\n\
             [world]\ntick_rate = 20\n"
        ),
    )
    .unwrap();
    let mut child = hearth(&dir)
        .args(["serve", "--no-db"])
        .env("HEARTH_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("the server ended: {status}"));
        }
        if answers_ok(&url) {
            break Ok(());
        }
        if Instant::now() > deadline {
            break Err("not ready within 60 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    ready.unwrap();
}

/// Whether a GET of `url` answers 2xx (one request on a small runtime:
/// reqwest's blocking client is not built).
fn answers_ok(url: &str) -> bool {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
        .and_then(|rt| rt.block_on(reqwest::get(url)).ok())
        .is_some_and(|r| r.status().is_success())
}
