//! The web app (`web/`), served at `/` from assets embedded at compile time (see `build.rs`).
//!
//! Any GET of a path that is not an API, `/v1`, hook or operations route is the app's: a file
//! of the build when there is one (hashed `assets/*` cached for a year as immutable, the rest
//! revalidated), else `index.html` so the app's own routes (`/runs/<id>`, `/approvals`) load
//! on reload. Paths that name a file (a dot in the last segment) or a hidden one (`/.env`)
//! and are not in the build answer 404 like any unknown route. Without a build the app's
//! paths answer a short page saying how to make one (`make web`).

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::ApiError;

/// One embedded file of `web/dist`.
pub(crate) struct Asset {
    /// Relative to `web/dist`, with `/` separators.
    pub path: &'static str,
    pub body: &'static [u8],
    /// The same file gzipped, when the web build made one.
    pub gzip: Option<&'static [u8]>,
}

static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// Where `BATON_WEB_DIR` points, for developing the web app: its files are read once, when the
/// first page is asked for, and served instead of the embedded ones, so a change to `web/` needs
/// `npm run build` and a server restart, not a Rust build. A folder without `index.html` or one
/// that cannot be read is logged as an error and served as "not built".
fn assets() -> &'static [Asset] {
    static DISK: std::sync::OnceLock<&'static [Asset]> = std::sync::OnceLock::new();
    let Some(dir) = std::env::var_os("BATON_WEB_DIR") else {
        return ASSETS;
    };
    DISK.get_or_init(|| {
        let dir = std::path::PathBuf::from(dir);
        match load_dir(&dir) {
            Ok(found) if found.iter().any(|a| a.path == "index.html") => {
                tracing::info!(dir = %dir.display(), files = found.len(), "serving the web app from BATON_WEB_DIR");
                Vec::leak(found)
            }
            Ok(_) => {
                tracing::error!(dir = %dir.display(), "BATON_WEB_DIR has no index.html (run `npm run build` in web/)");
                &[]
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "BATON_WEB_DIR cannot be read");
                &[]
            }
        }
    })
}

/// Every file under `dir` (gzipped twins beside their originals), read once and kept for the
/// life of the process.
fn load_dir(dir: &std::path::Path) -> std::io::Result<Vec<Asset>> {
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        out: &mut Vec<Asset>,
    ) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
                continue;
            }
            if path.extension().is_some_and(|e| e == "gz") {
                continue;
            }
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            let mut gz = path.clone().into_os_string();
            gz.push(".gz");
            out.push(Asset {
                path: String::leak(rel),
                body: Vec::leak(std::fs::read(&path)?),
                gzip: std::fs::read(&gz).ok().map(Vec::leak).map(|b| &*b),
            });
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>Baton</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em}</style><h1>Baton</h1><p>The web app was not built into this binary. Build it with <code>make web</code> (Node.js and npm needed), then rebuild and restart the server (<code>make run</code> does both).</p><p>The API works without it: <a href=\"/api/v1/docs\">API reference</a>.</p>";

/// The content security policy of the app's pages: only this origin; inline styles for the
/// graph library's positioning.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// First path segments that belong to the server, never to the app.
fn reserved(first: &str) -> bool {
    matches!(first, "api" | "hooks" | "healthz" | "readyz" | "metrics")
        || first
            .strip_prefix('v')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// What the app answers for `path` out of `assets`, or `None` when the path is not the app's.
fn answer(assets: &[Asset], path: &str, accepts_gzip: bool) -> Option<Response> {
    let rel = path.trim_start_matches('/');
    let first = rel.split('/').next().unwrap_or("");
    if reserved(first) || rel.split('/').any(|s| s.starts_with('.')) {
        return None;
    }
    let found = assets.iter().find(|a| a.path == rel);
    let names_file = rel
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'));
    let asset = match found {
        Some(a) => a,
        None if names_file => return None,
        None => match assets.iter().find(|a| a.path == "index.html") {
            Some(index) => index,
            None => return Some(page(NOT_BUILT.as_bytes(), None, "no-store")),
        },
    };
    let cache = if asset.path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let gzip = asset.gzip.filter(|_| accepts_gzip);
    let mut resp = page(gzip.unwrap_or(asset.body), gzip.map(|_| "gzip"), cache);
    if let Ok(v) = HeaderValue::from_str(content_type(asset.path)) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Some(resp)
}

/// An HTML answer (the content type is replaced for other files) with the app's headers.
fn page(body: &'static [u8], encoding: Option<&'static str>, cache: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Some(e) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(e));
    }
    resp
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|q| matches!(q.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// The router's fallback: the app for a GET (or HEAD) of one of its paths, else the API's 404.
pub(crate) async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let app = (method == Method::GET || method == Method::HEAD)
        .then(|| answer(assets(), uri.path(), accepts_gzip(&headers)))
        .flatten();
    app.unwrap_or_else(|| ApiError::not_found("no such route").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILT: &[Asset] = &[
        Asset {
            path: "index.html",
            body: b"<html>app</html>",
            gzip: None,
        },
        Asset {
            path: "assets/index-abc123.js",
            body: b"console.log(1)",
            gzip: Some(b"GZ"),
        },
        Asset {
            path: "favicon.svg",
            body: b"<svg/>",
            gzip: None,
        },
    ];

    fn header(r: &Response, name: header::HeaderName) -> &str {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[test]
    fn app_paths_get_index_and_files_get_their_type_and_cache() {
        for p in ["/", "/runs/r_1", "/approvals", "/nothing/here", "/swagger"] {
            let r = answer(BUILT, p, true).unwrap();
            assert_eq!(
                header(&r, header::CONTENT_TYPE),
                "text/html; charset=utf-8",
                "{p}"
            );
            assert_eq!(header(&r, header::CACHE_CONTROL), "no-cache", "{p}");
            assert!(header(&r, header::CONTENT_SECURITY_POLICY).contains("default-src 'self'"));
        }
        let js = answer(BUILT, "/assets/index-abc123.js", true).unwrap();
        assert_eq!(
            header(&js, header::CONTENT_TYPE),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            header(&js, header::CACHE_CONTROL),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(header(&js, header::CONTENT_ENCODING), "gzip");
        let plain = answer(BUILT, "/assets/index-abc123.js", false).unwrap();
        assert_eq!(header(&plain, header::CONTENT_ENCODING), "");
        let svg = answer(BUILT, "/favicon.svg", true).unwrap();
        assert_eq!(header(&svg, header::CONTENT_TYPE), "image/svg+xml");
    }

    #[test]
    fn server_routes_missing_files_and_hidden_paths_are_not_the_apps() {
        for p in [
            "/api/v1/nothing",
            "/api",
            "/v1/nothing",
            "/v0/runs",
            "/hooks/x",
            "/healthz",
            "/metrics",
            "/.env",
            "/a/.git/config",
            "/assets/missing-1.js",
            "/robots.txt",
        ] {
            assert!(answer(BUILT, p, true).is_none(), "{p}");
        }
        // "/v" and "/vx" are not API versions.
        assert!(answer(BUILT, "/vx", true).is_some());
    }

    #[test]
    fn without_a_build_the_app_paths_say_how_to_make_one() {
        let r = answer(&[], "/runs/r_1", true).unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, header::CACHE_CONTROL), "no-store");
        assert!(answer(&[], "/api/v1/x", true).is_none());
        assert!(NOT_BUILT.contains("make web"));
    }

    #[test]
    fn a_folder_of_a_build_is_read_with_its_gzipped_twins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("index.html"), "<html>dev</html>").unwrap();
        std::fs::write(dir.path().join("assets/app-1.js"), "js").unwrap();
        std::fs::write(dir.path().join("assets/app-1.js.gz"), "GZ").unwrap();
        let found = load_dir(dir.path()).unwrap();
        assert_eq!(found.len(), 2);
        let js = found.iter().find(|a| a.path == "assets/app-1.js").unwrap();
        assert_eq!((js.body, js.gzip), (&b"js"[..], Some(&b"GZ"[..])));
        let page = answer(&found, "/runs/r_1", false).unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(load_dir(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn gzip_is_sent_only_to_clients_that_accept_it() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(accepts_gzip(&h("gzip, deflate, br")));
        assert!(accepts_gzip(&h("br;q=1.0, gzip;q=0.8")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("br")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
