//! The page, its script and its stylesheet, embedded in the binary (rust-embed): no
//! CDN, no npm, no files beside the binary. Written by hand, no framework, and small
//! enough to read (`assets/`).
//!
//! Every answer carries a Content-Security-Policy that allows only this origin's own
//! script and stylesheet files: no inline script or style, no `eval`, no other
//! origin, no framing. The script builds the page with `textContent` and DOM nodes,
//! never `innerHTML`, so a value from a table (`<img src=x onerror=…>` in a row) is
//! shown as the text it is; the policy is the second line should that ever slip.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rust_embed::RustEmbed;

use crate::BASE;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// The policy every console answer carries.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn serve(file: &str) -> Response {
    match Assets::get(file) {
        Some(f) => {
            let etag = format!(
                "\"{}\"",
                f.metadata
                    .sha256_hash()
                    .iter()
                    .take(16)
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
            (
                [
                    (header::CONTENT_TYPE, content_type(file).to_string()),
                    (header::ETAG, etag),
                    // Revalidated each load: a new binary's assets are used at once.
                    (header::CACHE_CONTROL, "no-cache".to_string()),
                ],
                f.data.into_owned(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// `/` and `/console`: to the console's page.
pub(crate) async fn to_console() -> Redirect {
    Redirect::to(&format!("{BASE}/"))
}

/// `/console/`: the page.
pub(crate) async fn index() -> Response {
    serve("index.html")
}

/// `/console/assets/{file}`: the script and stylesheet.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    // Only files at the top of assets/ are addressable; no path walks.
    if file.contains('/') || file.contains("..") || file == "index.html" {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    serve(&file)
}

/// `/console/assets/vendor/{lib}/{file}`: a vendored library's built files (uPlot).
pub(crate) async fn vendor(Path((lib, file)): Path<(String, String)>) -> Response {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
            && !s.contains("..")
    };
    if !plain(&lib) || !plain(&file) {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    serve(&format!("vendor/{lib}/{file}"))
}

/// The security headers of every console answer.
pub(crate) async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

/// API answers are per user and may hold data: never stored by a cache.
pub(crate) async fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page loads only files of its own: no inline script or style, no handler
    /// attributes, nothing from elsewhere, and the script never writes HTML.
    #[test]
    fn the_assets_keep_to_the_policy() {
        let html = String::from_utf8(Assets::get("index.html").unwrap().data.into_owned()).unwrap();
        assert!(html.contains("<script src=\"assets/app.js\""), "{html}");
        assert!(
            Assets::get("vendor/uplot/uPlot.iife.min.js").is_some()
                && Assets::get("vendor/uplot/LICENSE").is_some(),
            "uPlot and its license are embedded"
        );
        for forbidden in [
            "<script>",
            "<style",
            " style=",
            " onclick=",
            " onload=",
            "http://",
            "https://",
        ] {
            assert!(!html.contains(forbidden), "index.html has {forbidden:?}");
        }
        for file in ["app.js", "chart.js"] {
            let js = String::from_utf8(Assets::get(file).unwrap().data.into_owned()).unwrap();
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
            ] {
                assert!(!js.contains(forbidden), "{file} uses {forbidden}");
            }
        }
        assert!(Assets::get("app.css").is_some());
    }
}
