//! The web viewer end to end: a real `hearth serve` on the demo world and a
//! real database, the page in headless Chromium driven through chromedriver
//! (WebDriver): the map draws with its tiles, agents move between two
//! screenshots, and a real click on an agent opens its panel with its
//! traits and plan. Needs Debian's `chromium` and `chromium-driver`
//! (`bash docker/provision.sh` installs them). The screenshots are left in
//! `target/viewer-test/` for a look.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::{Client, ClientBuilder, Locator};
use hearth::cli::{self, Cli};
use hearth_tests::server::{Server, free_port};
use hearth_tests::{TestDb, workspace_root};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Where the screenshots go: `<target>/viewer-test/`.
fn shots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        workspace_root().join(target)
    };
    target.join("viewer-test")
}

/// chromedriver in a process group of its own, so that dropping it ends the
/// browsers it started too, even when the test fails half way.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start() -> Self {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the viewer's end-to-end test drives Debian's headless \
                 Chromium; run `bash docker/provision.sh` (it installs `{package}`)"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let driver = Self { child, port };
        // ready when its status says so
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{}/status", driver.url())).send().await
                && let Ok(status) = r.json::<Value>().await
                && status["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        driver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A browser session: headless Chromium, 1280×800, no background traffic
    /// (this machine's network is closed).
    async fn browser(&self) -> Client {
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--window-size=1280,800",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&self.url())
            .await
            .unwrap_or_else(|e| panic!("cannot open a Chromium session through chromedriver: {e}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The page's test hook, as JSON.
async fn hook(browser: &Client, expr: &str) -> Value {
    browser
        .execute(&format!("return {expr};"), vec![])
        .await
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
}

/// Waits until `expr` is truthy in the page; on timeout, says what the page
/// shows in its status line.
async fn wait_until(browser: &Client, expr: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let v = hook(browser, expr).await;
        if v.as_bool() == Some(true) {
            return;
        }
        if Instant::now() > deadline {
            let status = hook(
                browser,
                "document.getElementById('status').textContent + ' | ' + \
                 document.getElementById('panel-body').textContent",
            )
            .await;
            panic!("never true: {expr}; the page says: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Entity id → (name, tile x, tile y, screen x, screen y), agents only.
async fn agents(browser: &Client) -> Vec<(String, String, f64, f64, f64, f64)> {
    let list = hook(browser, "window.hearthViewer.entities()").await;
    list.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["id"].as_str().unwrap().starts_with("a:"))
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["x"].as_f64().unwrap(),
                e["y"].as_f64().unwrap(),
                e["screenX"].as_f64().unwrap(),
                e["screenY"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// A real click (WebDriver pointer actions) at viewport CSS pixels.
async fn click_at(browser: &Client, x: f64, y: f64) {
    let mouse = MouseActions::new("mouse".into())
        .then(PointerAction::MoveTo {
            duration: Some(Duration::ZERO),
            x: x.round(),
            y: y.round(),
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    browser.perform_actions(mouse).await.unwrap();
    browser.release_actions().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_draws_the_map_shows_agents_moving_and_opens_an_agents_panel() {
    // the browser first: without it nothing below can run
    let driver = Driver::start().await;

    let db = TestDb::migrated().await;
    let root = workspace_root();
    // its own home (the helper's fresh one): a fresh token key, and no
    // embedding model (the hashed embedder starts at once)
    let server = Server::builder()
        .db(&db)
        .world("valley")
        .arg("--agents")
        .arg(root.join("agents").display().to_string())
        .arg("--map")
        .arg(root.join("assets/maps/valley.tmj").display().to_string())
        .lore(root.join("assets/lore"))
        // a game hour every 6 s: agents go about their day while we watch
        .args(["--time-scale", "10"])
        .start()
        .await;
    let base = server.http_url();

    let browser = driver.browser().await;
    browser.goto(&format!("{base}/")).await.unwrap();
    wait_until(
        &browser,
        "window.hearthViewer && window.hearthViewer.ready",
        Duration::from_secs(30),
    )
    .await;

    // the map is the demo map, drawn with its tiles: the canvas's centre is
    // not the page's background colour
    let map = hook(&browser, "window.hearthViewer.map").await;
    assert_eq!(
        map,
        json!({"url": "/maps/valley.tmj", "width": 64, "height": 48}),
        "map error: {}",
        hook(&browser, "window.hearthViewer.mapError").await
    );
    let centre = hook(
        &browser,
        "(() => { const c = document.getElementById('view'); \
         return Array.from(c.getContext('2d').getImageData(c.width / 2, c.height / 2, 1, 1).data); })()",
    )
    .await;
    assert_ne!(
        centre,
        json!([0x1b, 0x1e, 0x24, 255]),
        "the map is not drawn"
    );

    let before = agents(&browser).await;
    let agent_files = std::fs::read_dir(root.join("agents"))
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .is_ok_and(|f| f.path().extension().is_some_and(|e| e == "json"))
        })
        .count();
    assert_eq!(
        before.len(),
        agent_files,
        "every agent of the demo world is drawn: {before:?}"
    );
    let tick_before = hook(&browser, "window.hearthViewer.tick").await;
    let shot_before = browser.screenshot().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = agents(&browser).await;
    let tick_after = hook(&browser, "window.hearthViewer.tick").await;
    let shot_after = browser.screenshot().await.unwrap();

    let dir = shots_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("before.png"), &shot_before).unwrap();
    std::fs::write(dir.join("after.png"), &shot_after).unwrap();

    assert!(
        tick_after.as_u64() > tick_before.as_u64(),
        "ticks arrive: {tick_before} then {tick_after}"
    );
    assert_ne!(shot_before, shot_after, "the two screenshots are the same");
    let moved: Vec<&str> = before
        .iter()
        .filter_map(|(id, _, x, y, ..)| {
            let now = after.iter().find(|a| &a.0 == id)?;
            ((now.2 - x).abs() + (now.3 - y).abs() > 0.01).then_some(id.as_str())
        })
        .collect();
    assert!(
        !moved.is_empty(),
        "no agent moved in 2 s: {before:?} then {after:?}"
    );

    // click an agent where it is drawn: the one that moved least is the
    // easiest to hit; try again if it walked off under the pointer
    let mut candidates: Vec<_> = after
        .iter()
        .map(|a| {
            let then = before.iter().find(|b| b.0 == a.0);
            let moved = then.map_or(f64::MAX, |b| (a.4 - b.4).abs() + (a.5 - b.5).abs());
            (moved, a.0.clone())
        })
        .collect();
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut opened = None;
    for (_, id) in candidates.iter().take(4) {
        let now = agents(&browser).await;
        let Some((_, name, _, _, sx, sy)) = now.into_iter().find(|a| &a.0 == id) else {
            continue;
        };
        click_at(&browser, sx, sy).await;
        let selected = hook(&browser, "window.hearthViewer.selected").await;
        if selected.as_str() == Some(id.as_str()) {
            opened = Some((id.clone(), name));
            break;
        }
    }
    let (id, name) = opened.expect("clicking on agents never selected one");

    // the panel shows who it is: name, traits, plan, schedule, relationships
    wait_until(
        &browser,
        "!document.getElementById('panel').hidden && \
         document.getElementById('panel-body').textContent.includes('openness')",
        Duration::from_secs(10),
    )
    .await;
    let panel = hook(
        &browser,
        "document.getElementById('panel-body').textContent",
    )
    .await;
    let panel = panel.as_str().unwrap();
    assert_eq!(
        hook(&browser, "document.getElementById('panel').dataset.agent").await,
        json!(id)
    );
    for expected in [
        name.as_str(),
        "openness",
        "conscientiousness",
        "Plan",
        "Schedule",
        "Relationships",
    ] {
        assert!(
            panel.contains(expected),
            "{expected:?} not in the panel: {panel}"
        );
    }
    let errors = hook(
        &browser,
        "document.querySelectorAll('#panel .error').length",
    )
    .await;
    assert_eq!(errors, json!(0), "the panel shows an error: {panel}");
    std::fs::write(dir.join("panel.png"), browser.screenshot().await.unwrap()).unwrap();

    // a designer logs in with the page's form: the panel adds the agent's
    // top memories with their score terms
    let url = db.url();
    let add = Cli::try_parse_from([
        "hearth",
        "--database-url",
        &url,
        "--home",
        server.home().to_str().unwrap(),
        "user",
        "add",
        "dana",
        "--role",
        "designer",
        "--world",
        "valley",
        "--password",
        "a designer's password",
    ])
    .unwrap();
    cli::run(add, &mut Vec::new(), std::future::ready(()))
        .await
        .unwrap();
    let form = |field: &'static str| format!("#login input[name={field}]");
    browser
        .find(Locator::Css(&form("username")))
        .await
        .unwrap()
        .send_keys("dana")
        .await
        .unwrap();
    browser
        .find(Locator::Css(&form("password")))
        .await
        .unwrap()
        .send_keys("a designer's password")
        .await
        .unwrap();
    browser
        .find(Locator::Css("#login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(
        &browser,
        "window.hearthViewer.role === 'designer' && window.hearthViewer.ready",
        Duration::from_secs(20),
    )
    .await;
    wait_until(
        &browser,
        "document.querySelectorAll('#panel .memory').length > 0",
        Duration::from_secs(20),
    )
    .await;
    let panel = hook(
        &browser,
        "document.getElementById('panel-body').textContent",
    )
    .await;
    let panel = panel.as_str().unwrap();
    for expected in [
        "Top 10 memories",
        "score",
        "recency",
        "importance",
        "relevance",
    ] {
        assert!(
            panel.contains(expected),
            "{expected:?} not in the panel: {panel}"
        );
    }
    hook(
        &browser,
        "document.querySelector('#panel .memory').scrollIntoView()",
    )
    .await;
    std::fs::write(
        dir.join("designer.png"),
        browser.screenshot().await.unwrap(),
    )
    .unwrap();

    let errors = hook(&browser, "window.hearthViewer.errors()").await;
    assert_eq!(errors, json!([]), "the page threw");

    browser.close().await.unwrap();
    drop(driver);
    server.stop().await;
}
