//! The web viewer's HTTP routes: the page and its scripts, embedded in the
//! binary from `assets/viewer/`, and the world's map files, read from the
//! map's directory at each request (designers edit maps while the server
//! runs). Touches nothing but that directory, read-only; the page itself
//! speaks to the world over `GET /ws` like any game client (`docs/viewer.md`).

use std::path::PathBuf;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use include_dir::{Dir, include_dir};
use tower_http::services::ServeDir;

/// The viewer's static files (`index.html`, `viewer.js`, `viewer.css`),
/// compiled into the binary so a deployed server needs no asset directory.
static VIEWER: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../assets/viewer");

/// The viewer's routes, with no state of their own:
///
/// - `GET /`: the page (`index.html`);
/// - `GET /viewer/<file>`: its scripts and styles;
/// - `GET /maps/<file>`: files of `maps_dir` (the world's Tiled map, its
///   tilesets and their images), read at request time. A path that climbs
///   out of the directory (`..`, an absolute path) is a 404, as is a
///   directory. An empty `maps_dir` serves no maps at all (a generated
///   world has none; for a map in the working directory pass `.`).
///
/// Every answer carries `Cache-Control: no-cache`: the browser revalidates
/// (maps answer `If-Modified-Since`), so an edited map or a new server
/// build shows on the next reload.
pub fn router(maps_dir: PathBuf) -> Router {
    let router = Router::new()
        .route("/", get(index))
        .route("/viewer/{*file}", get(viewer_file));
    let router = if maps_dir.as_os_str().is_empty() {
        router
    } else {
        let maps = ServeDir::new(maps_dir).append_index_html_on_directories(false);
        router.nest_service("/maps", maps)
    };
    router.layer(map_response(no_cache))
}

async fn index() -> Response {
    embedded("index.html")
}

async fn viewer_file(Path(file): Path<String>) -> Response {
    embedded(&file)
}

/// An embedded file with its content type, or a 404.
fn embedded(file: &str) -> Response {
    match VIEWER.get_file(file) {
        Some(f) => ([(header::CONTENT_TYPE, content_type(file))], f.contents()).into_response(),
        None => (StatusCode::NOT_FOUND, "no such viewer file\n").into_response(),
    }
}

/// The content type of a viewer file, from its extension.
fn content_type(file: &str) -> &'static str {
    let ext = file.rsplit_once('.').map_or("", |(_, ext)| ext);
    match ext.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn no_cache(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves `router(maps_dir)` on a free port of 127.0.0.1.
    async fn serve(maps_dir: PathBuf) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(maps_dir)).await });
        addr
    }

    /// `GET path` written byte for byte (HTTP clients would normalise the
    /// `..` away): the status and the body.
    async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// A map directory `<tmp>/maps` with a map in it, and a secret beside it.
    fn map_dir(name: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("hearth-viewer-{name}-{}", std::process::id()));
        let maps = root.join("maps");
        std::fs::create_dir_all(maps.join("sub")).unwrap();
        std::fs::write(maps.join("town.tmj"), r#"{"type":"map"}"#).unwrap();
        std::fs::write(root.join("secret.txt"), "the secret").unwrap();
        maps
    }

    #[tokio::test]
    async fn serves_the_page_and_its_files() {
        let addr = serve(map_dir("page")).await;
        let http = reqwest::Client::new();

        let r = http.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(r.headers()["cache-control"], "no-cache");
        let body = r.text().await.unwrap();
        assert!(body.contains("/viewer/viewer.js"), "{body}");

        for (file, kind) in [
            ("viewer.js", "text/javascript; charset=utf-8"),
            ("viewer.css", "text/css; charset=utf-8"),
            ("index.html", "text/html; charset=utf-8"),
        ] {
            let r = http
                .get(format!("http://{addr}/viewer/{file}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{file}");
            assert_eq!(r.headers()["content-type"], kind, "{file}");
            assert_eq!(r.headers()["cache-control"], "no-cache", "{file}");
            let body = r.bytes().await.unwrap();
            assert_eq!(&body[..], VIEWER.get_file(file).unwrap().contents());
        }
    }

    #[tokio::test]
    async fn serves_map_files_as_they_are_now() {
        let maps = map_dir("maps");
        let addr = serve(maps.clone()).await;
        let http = reqwest::Client::new();
        let url = format!("http://{addr}/maps/town.tmj");

        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-cache");
        assert_eq!(r.text().await.unwrap(), r#"{"type":"map"}"#);

        // a designer saves the map: the next request sees it
        std::fs::write(maps.join("town.tmj"), r#"{"type":"map","width":3}"#).unwrap();
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), r#"{"type":"map","width":3}"#);
    }

    #[tokio::test]
    async fn refuses_traversal_and_unknown_files() {
        let addr = serve(map_dir("traversal")).await;
        for path in [
            "/maps/../secret.txt",
            "/maps/sub/../../secret.txt",
            "/maps/%2e%2e/secret.txt",
            "/maps/..%2fsecret.txt",
            "/maps/%2Fetc%2Fpasswd",
            "/maps//etc/passwd",
            "/maps/",
            "/maps/sub",
            "/maps/nothing.tmj",
            "/viewer/../Cargo.toml",
            "/viewer/nothing.js",
            "/viewer/",
        ] {
            let (status, body) = raw_get(addr, path).await;
            assert_eq!(status, 404, "{path}: {body}");
            assert!(!body.contains("the secret"), "{path}");
            assert!(!body.contains("root:"), "{path}");
        }
        let (status, _) = raw_get(addr, "/maps/town.tmj").await;
        assert_eq!(status, 200, "the same way, a file that is there");
    }

    #[tokio::test]
    async fn an_empty_maps_dir_serves_no_maps() {
        // the working directory holds Cargo.toml: it must not be served
        let addr = serve(PathBuf::new()).await;
        for path in ["/maps/Cargo.toml", "/maps/src/lib.rs"] {
            let (status, _) = raw_get(addr, path).await;
            assert_eq!(status, 404, "{path}");
        }
        let (status, _) = raw_get(addr, "/").await;
        assert_eq!(status, 200, "the page is still served");
    }
}
