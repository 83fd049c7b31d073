//! HS256 JSON Web Tokens, signed and checked with an HMAC key prepared once. Every purchase carries a token, so
//! checking one is on the hot path: the general JWT library used before derived the HMAC key from the secret again
//! for each token and parsed the claims twice, 8% of the server's CPU under a flash crowd. Only HS256 is issued and
//! only HS256 is accepted; the header's `alg` is checked, never used to choose how to verify. The header this
//! service issues is recognised in its encoded form, so only other issuers' headers are decoded and parsed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The header of every token issued, `{"alg":"HS256","typ":"JWT"}`.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Bytes in an HMAC-SHA256 tag. A longer signature segment does not fit, and is malformed.
const SIGNATURE_LEN: usize = 32;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not three base64url segments of JSON")]
    Malformed,
    #[error("signature does not match")]
    Signature,
    #[error("algorithm is not HS256")]
    Algorithm,
    #[error("the header names critical extensions, and none is understood here")]
    Critical,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    /// Extensions the token says must be understood (RFC 7515 §4.1.11): this service understands none.
    crit: Option<serde_json::Value>,
}

/// Signs and verifies HS256 tokens with one secret.
pub struct Hs256 {
    key: hmac::Key,
    /// `HEADER`, base64url-encoded as it leads every token issued here.
    encoded_header: String,
}

impl Hs256 {
    pub fn new(secret: &[u8]) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret), encoded_header: URL_SAFE_NO_PAD.encode(HEADER) }
    }

    pub fn sign(&self, claims: &impl Serialize) -> Result<String, serde_json::Error> {
        let mut token = self.encoded_header.clone();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims)?, &mut token);
        let tag = hmac::sign(&self.key, token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
        Ok(token)
    }

    /// The claims of `token`, if this key signed it with HS256. The signature is checked (in constant time) before
    /// anything of the token is parsed; what the claims say, such as their expiry, is the caller's to judge.
    pub fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<C, TokenError> {
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header, claims) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        let mut tag = [0u8; SIGNATURE_LEN];
        let tag_len = URL_SAFE_NO_PAD.decode_slice(signature, &mut tag).map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.key, signed.as_bytes(), &tag[..tag_len]).map_err(|_| TokenError::Signature)?;
        if header != self.encoded_header {
            let header: Header = json_segment(header)?;
            if header.alg != "HS256" {
                return Err(TokenError::Algorithm);
            }
            if header.crit.is_some() {
                return Err(TokenError::Critical);
            }
        }
        json_segment(claims)
    }
}

fn json_segment<T: DeserializeOwned>(segment: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};

    use super::*;

    const SECRET: &[u8] = b"a-test-secret-of-at-least-thirty-two-bytes";

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Claims {
        sub: String,
        exp: i64,
    }

    fn claims() -> Claims {
        Claims { sub: "42".into(), exp: 4_000_000_000 }
    }

    /// A token with `header` and `claims` as given, signed with `secret`.
    fn forge(header: &str, claims: &str, secret: &[u8]) -> String {
        let signed = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    #[test]
    fn a_signed_token_verifies_to_its_claims() {
        let jwt = Hs256::new(SECRET);
        let token = jwt.sign(&claims()).unwrap();
        assert_eq!(jwt.verify::<Claims>(&token), Ok(claims()));
    }

    #[test]
    fn tokens_agree_with_an_independent_implementation() {
        let theirs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(Hs256::new(SECRET).verify::<Claims>(&theirs), Ok(claims()));

        let ours = Hs256::new(SECRET).sign(&claims()).unwrap();
        let decoded = jsonwebtoken::decode::<Claims>(
            &ours,
            &DecodingKey::from_secret(SECRET),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap();
        assert_eq!(decoded.claims, claims());
    }

    #[test]
    fn another_key_or_a_changed_token_is_refused() {
        let token = Hs256::new(SECRET).sign(&claims()).unwrap();
        assert_eq!(Hs256::new(b"another-secret").verify::<Claims>(&token), Err(TokenError::Signature));

        let (header, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let raised = URL_SAFE_NO_PAD.encode(r#"{"sub":"1","exp":4000000000}"#);
        let tampered = format!("{header}.{raised}.{signature}");
        assert_eq!(Hs256::new(SECRET).verify::<Claims>(&tampered), Err(TokenError::Signature));
    }

    #[test]
    fn only_hs256_is_accepted_even_when_the_signature_matches() {
        let body = r#"{"sub":"42","exp":4000000000}"#;
        for header in [r#"{"alg":"none"}"#, r#"{"alg":"HS512","typ":"JWT"}"#, r#"{"typ":"JWT"}"#] {
            let token = forge(header, body, SECRET);
            let expected = if header.contains("alg") { TokenError::Algorithm } else { TokenError::Malformed };
            assert_eq!(Hs256::new(SECRET).verify::<Claims>(&token), Err(expected), "{header}");
        }
        assert_eq!(Hs256::new(SECRET).verify::<Claims>(&forge(HEADER, body, SECRET)), Ok(claims()));
    }

    #[test]
    fn a_critical_extension_is_refused_even_when_the_signature_matches() {
        let body = r#"{"sub":"42","exp":4000000000}"#;
        for header in [r#"{"alg":"HS256","crit":["exp"]}"#, r#"{"alg":"HS256","crit":[]}"#] {
            assert_eq!(Hs256::new(SECRET).verify::<Claims>(&forge(header, body, SECRET)), Err(TokenError::Critical));
        }
        let plain = forge(r#"{"typ":"JWT","alg":"HS256"}"#, body, SECRET);
        assert_eq!(Hs256::new(SECRET).verify::<Claims>(&plain), Ok(claims()), "another issuer's header is fine");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let jwt = Hs256::new(SECRET);
        let token = jwt.sign(&claims()).unwrap();
        let unsigned = token.rsplit_once('.').unwrap().0;
        for bad in ["", ".", "..", "a.b", "not a token", unsigned, &format!("x.{token}"), &format!("{token}=")] {
            assert!(jwt.verify::<Claims>(bad).is_err(), "{bad:?} was accepted");
        }
        let not_json = forge(HEADER, "not json", SECRET);
        assert_eq!(jwt.verify::<Claims>(&not_json), Err(TokenError::Malformed));
        let missing_claim = forge(HEADER, r#"{"sub":"42"}"#, SECRET);
        assert_eq!(jwt.verify::<Claims>(&missing_claim), Err(TokenError::Malformed));
    }
}
