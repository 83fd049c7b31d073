//! Who may do what. Passwords are hashed with argon2id and never printed: `PlainPassword` has no `Display` and a
//! redacting `Debug`, so a stray `tracing` field cannot leak one.

use std::fmt;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

use super::{schema, ParseError};

/// A login name: 3 to 64 characters of `A-Z a-z 0-9 _ . -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = ParseError;

    fn try_from(text: String) -> Result<Self, ParseError> {
        let allowed = text.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if (3..=64).contains(&text.len()) && allowed {
            Ok(Self(text))
        } else {
            Err(ParseError::new("username", "must be 3 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-'"))
        }
    }
}

impl utoipa::PartialSchema for Username {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        schema::text(
            Some("^[A-Za-z0-9_.-]+$"),
            3,
            64,
            "A login name: 3 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-'.",
        )
    }
}

impl utoipa::ToSchema for Username {}

impl From<Username> for String {
    fn from(name: Username) -> String {
        name.0
    }
}

/// A password as typed: 8 to 256 characters.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct PlainPassword(String);

impl TryFrom<String> for PlainPassword {
    type Error = ParseError;

    fn try_from(text: String) -> Result<Self, ParseError> {
        if (8..=256).contains(&text.chars().count()) {
            Ok(Self(text))
        } else {
            Err(ParseError::new("password", "must be 8 to 256 characters"))
        }
    }
}

impl utoipa::PartialSchema for PlainPassword {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        schema::text(None, 8, 256, "A password as typed: 8 to 256 characters.")
    }
}

impl utoipa::ToSchema for PlainPassword {}

impl fmt::Debug for PlainPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlainPassword(<redacted>)")
    }
}

/// An argon2id hash in PHC string form. Hashing costs tens of milliseconds of CPU on purpose: call it from
/// `spawn_blocking`, never on an async worker.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn of(password: &PlainPassword) -> Self {
        let salt = SaltString::generate(&mut OsRng);
        let phc = Argon2::default()
            .hash_password(password.0.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .unwrap_or_default();
        Self(phc)
    }

    pub fn from_stored(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn verify(&self, password: &PlainPassword) -> bool {
        argon2::PasswordHash::new(&self.0)
            .map(|parsed| Argon2::default().verify_password(password.0.as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "customer" => Some(Role::Customer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let right = PlainPassword::try_from("correct horse".to_owned()).unwrap();
        let wrong = PlainPassword::try_from("battery staple".to_owned()).unwrap();
        let hash = PasswordHash::of(&right);
        assert!(hash.verify(&right));
        assert!(!hash.verify(&wrong));
        assert!(!PasswordHash::from_stored("garbage".into()).verify(&right));
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let password = PlainPassword::try_from("hunter22-secret".to_owned()).unwrap();
        assert!(!format!("{password:?}").contains("hunter22"));
        assert!(!format!("{:?}", PasswordHash::of(&password)).contains("argon2"));
    }

    #[test]
    fn usernames_are_checked() {
        assert!(Username::try_from("ab".to_owned()).is_err());
        assert!(Username::try_from("robert'); drop".to_owned()).is_err());
        assert!(Username::try_from("alice_01".to_owned()).is_ok());
    }
}
