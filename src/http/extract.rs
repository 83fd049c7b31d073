//! Turning raw request parts into domain types, with the client told exactly which part was wrong.

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::problem::Problem;

/// Parses a JSON object body; the message names the field and the rule it broke. Anything but an object is
/// refused before serde sees it, since serde would happily fill a struct from an array.
pub fn json<T: DeserializeOwned>(body: &Bytes) -> Result<T, Problem> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(Problem::invalid("body: must be a JSON object"));
    }
    serde_json::from_slice(body).map_err(|err| Problem::invalid(format!("body: {err}")))
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
}
