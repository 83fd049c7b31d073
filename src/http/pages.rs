//! The storefront (`/`) and the admin page (`/admin`): small static pages, compiled into the binary so that a
//! machine that reaches nothing else still serves them, and no build step stands between a checkout and a page.
//! They speak only to this service's own API and WebSockets, which the content security policy holds them to (the
//! listener adds the headers every answer carries).

use warp::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::Reply;

use super::problem::Problem;

/// A file of a page: its name under `/assets/` (or the page's path), its type and its content.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

const STOREFRONT: Asset =
    Asset { name: "index.html", content_type: HTML, body: include_str!("pages/assets/index.html") };
const ADMIN: Asset = Asset { name: "admin.html", content_type: HTML, body: include_str!("pages/assets/admin.html") };
const ASSETS: [Asset; 4] = [
    Asset { name: "app.css", content_type: CSS, body: include_str!("pages/assets/app.css") },
    Asset { name: "common.js", content_type: JS, body: include_str!("pages/assets/common.js") },
    Asset { name: "store.js", content_type: JS, body: include_str!("pages/assets/store.js") },
    Asset { name: "admin.js", content_type: JS, body: include_str!("pages/assets/admin.js") },
];

/// Scripts and styles from this origin only; API calls and WebSockets to this origin only.
const POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                      form-action 'self'; frame-ancestors 'none'";

pub async fn storefront() -> Response {
    serve(&STOREFRONT)
}

pub async fn admin() -> Response {
    serve(&ADMIN)
}

pub async fn asset(name: String) -> Result<Response, Problem> {
    let asset = ASSETS.iter().find(|asset| asset.name == name).ok_or_else(|| Problem::not_found("no such asset"))?;
    Ok(serve(asset))
}

fn serve(asset: &Asset) -> Response {
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    // The pages change with the binary, which a browser cannot know: it asks again, cheaply, each time.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if asset.content_type == HTML {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_a_page_loads_is_served() {
        for page in [&STOREFRONT, &ADMIN] {
            for referenced in page.body.split("/assets/").skip(1) {
                let name: String = referenced.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.').collect();
                assert!(
                    ASSETS.iter().any(|asset| asset.name == name),
                    "{} loads {name}, which is not served",
                    page.name
                );
            }
        }
    }

    #[test]
    fn no_page_reaches_beyond_this_service() {
        for asset in ASSETS.iter().chain([&STOREFRONT, &ADMIN]) {
            assert!(!asset.body.contains("http://") && !asset.body.contains("https://"), "{} links out", asset.name);
        }
    }
}
