//! Turning raw request parts into domain types, with the client told exactly which part was wrong.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use warp::http::StatusCode;

use serde::de::DeserializeOwned;

use super::problem::Problem;

/// Deepest nesting of arrays and objects a JSON body may have. No body of this API nests more than three levels;
/// the limit keeps a crafted one from costing a deep recursion to refuse.
pub const MAX_JSON_DEPTH: usize = 32;

/// Reads a whole body, which must arrive `within` the time given: a client that sends its headers and then trickles
/// or withholds the body would otherwise hold its connection and a task for as long as it likes.
pub async fn bytes<B: Buf>(
    body: impl Stream<Item = Result<B, warp::Error>>,
    within: Duration,
) -> Result<Bytes, Problem> {
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut whole = BytesMut::new();
        while let Some(chunk) = body.next().await {
            whole.put(chunk.map_err(|_| Problem::invalid("body: the connection failed while it was read"))?);
        }
        Ok(whole.freeze())
    };
    tokio::time::timeout(within, read).await.unwrap_or_else(|_| {
        Err(Problem::new(StatusCode::REQUEST_TIMEOUT, "BODY_TIMEOUT", "the request body did not arrive in time"))
    })
}

/// Parses a JSON object body; the message names the field and the rule it broke. Anything but an object is
/// refused before serde sees it, since serde would happily fill a struct from an array.
pub fn json<T: DeserializeOwned>(body: &Bytes) -> Result<T, Problem> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(Problem::invalid("body: must be a JSON object"));
    }
    if !nested_within(body, MAX_JSON_DEPTH) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "JSON_TOO_DEEP",
            format!("body: arrays and objects nest deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    serde_json::from_slice(body).map_err(|err| Problem::invalid(format!("body: {err}")))
}

/// Whether no array or object in `body` (as JSON, valid or not) lies more than `limit` levels deep.
fn nested_within(body: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Parses a path segment such as a product id.
pub fn segment<T>(text: &str) -> Result<T, Problem>
where
    T: std::str::FromStr<Err = crate::domain::ParseError>,
{
    text.parse().map_err(Problem::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ProductId, Quantity};

    #[derive(serde::Deserialize, Debug)]
    struct Purchase {
        quantity: Quantity,
    }

    #[test]
    fn bad_bodies_and_segments_are_client_errors() {
        assert!(json::<Purchase>(&Bytes::from_static(b"{\"quantity\": 0}")).is_err());
        assert!(json::<Purchase>(&Bytes::from_static(b"{\"quantity\": \"1\"}")).is_err());
        assert!(json::<Purchase>(&Bytes::from_static(b"{quantity")).is_err());
        assert!(json::<Purchase>(&Bytes::from_static(b"[1]")).is_err());
        let parsed: Purchase = json(&Bytes::from_static(b"{\"quantity\": 2}")).expect("a valid body parses");
        assert_eq!(parsed.quantity.get(), 2);
        assert!(segment::<ProductId>("12x").is_err());
    }

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(MAX_JSON_DEPTH), "]".repeat(MAX_JSON_DEPTH));
        assert!(!nested_within(deep.as_bytes(), MAX_JSON_DEPTH), "one level past the limit");
        assert_eq!(json::<Purchase>(&Bytes::from(deep)).expect_err("too deep").code(), "JSON_TOO_DEEP");
        let shallow = format!("{{\"a\":{}{}}}", "[".repeat(MAX_JSON_DEPTH - 1), "]".repeat(MAX_JSON_DEPTH - 1));
        assert!(nested_within(shallow.as_bytes(), MAX_JSON_DEPTH));
        let quoted = format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(100), "{".repeat(100));
        assert!(nested_within(quoted.as_bytes(), 2), "brackets inside strings, escaped quotes included, do not count");
    }
}
