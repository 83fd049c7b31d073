//! Accounts and tokens: register, login and password changes (the `Accounts` service checks the passwords), HS256
//! JWTs with an expiry and the account's token version, and the filters that turn a bearer token into the caller —
//! or into a 401/403 problem. A token is checked against the in-memory account cache on every request: a token for
//! no account, or of a version the account has since raised, is refused at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::jwt::Hs256;
use super::limits::Refused;
use super::problem::{
    BadRequest, Conflict, Forbidden, LengthRequired, PayloadTooLarge, Problem, RequestTimeout, TooManyRequests,
    Unauthorized, Unavailable,
};
use super::AppState;
use crate::accounts::{check_ban, Blacklisted, Identity};
use crate::domain::{BanEnd, PlainPassword, Role, Timestamp, TokenVersion, UserId, Username};

/// Who is calling, as the token says and the account cache confirms, with any ban on them as it stood then.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user: UserId,
    pub role: Role,
    ban: Option<BanEnd>,
}

impl Caller {
    /// Refuses a banned caller (a ban that has ended lets them through).
    pub fn unbanned(&self) -> Result<(), Blacklisted> {
        check_ban(self.user, self.ban, Timestamp::now)
    }
}

/// Who issues the tokens this service accepts, and whom they are for: a token signed with the same secret for
/// another purpose (another service sharing it, say) is refused.
const ISSUER: &str = "seckill";
const AUDIENCE: &str = "seckill-api";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: Issuer,
    aud: Audience,
    sub: String,
    role: Role,
    ver: TokenVersion,
    iat: i64,
    /// Not before: never issued here, but honoured if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    exp: i64,
}

/// The `iss` claim, which must be `ISSUER`: checked as it is read, without allocating.
#[derive(Debug)]
struct Issuer;

impl Serialize for Issuer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(ISSUER)
    }
}

impl<'de> Deserialize<'de> for Issuer {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Expect;
        impl serde::de::Visitor<'_> for Expect {
            type Value = Issuer;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "the issuer {ISSUER:?}")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Issuer, E> {
                (value == ISSUER).then_some(Issuer).ok_or_else(|| E::custom("another issuer"))
            }
        }
        deserializer.deserialize_str(Expect)
    }
}

/// The `aud` claim, which must be `AUDIENCE` or a list that holds it (RFC 7519 §4.1.3).
#[derive(Debug)]
struct Audience;

impl Serialize for Audience {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(AUDIENCE)
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Expect;
        impl<'de> serde::de::Visitor<'de> for Expect {
            type Value = Audience;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "the audience {AUDIENCE:?}, or a list holding it")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Audience, E> {
                (value == AUDIENCE).then_some(Audience).ok_or_else(|| E::custom("another audience"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut list: A) -> Result<Audience, A::Error> {
                let mut ours = false;
                while let Some(audience) = list.next_element::<String>()? {
                    ours |= audience == AUDIENCE;
                }
                ours.then_some(Audience).ok_or_else(|| serde::de::Error::custom("another audience"))
            }
        }
        deserializer.deserialize_any(Expect)
    }
}

/// Signs and checks tokens.
pub struct Tokens {
    jwt: Hs256,
    ttl: Duration,
}

/// How far past its expiry a token is still taken, for clocks that disagree a little.
const LEEWAY_SECS: i64 = 5;

/// A signed token and how long it lives.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    /// An HS256 JWT: send it as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    #[schema(pattern = "^Bearer$")]
    pub token_type: &'static str,
    /// Seconds it is valid for.
    pub expires_in: u64,
}

impl Tokens {
    pub fn new(secret: &str, ttl: Duration) -> Self {
        Self { jwt: Hs256::new(secret.as_bytes()), ttl }
    }

    pub fn issue(&self, identity: Identity) -> Result<IssuedToken, Problem> {
        let now = Timestamp::now().unix_secs();
        let claims = Claims {
            iss: Issuer,
            aud: Audience,
            sub: identity.user.to_string(),
            role: identity.role,
            ver: identity.token_version,
            iat: now,
            nbf: None,
            exp: now + self.ttl.as_secs() as i64,
        };
        let access_token = self.jwt.sign(&claims).map_err(|err| Problem::backend(&err))?;
        Ok(IssuedToken { access_token, token_type: "Bearer", expires_in: self.ttl.as_secs() })
    }

    /// Who `token` was issued to, if it is signed here, by this issuer for this audience, and valid now: not
    /// expired, not issued in the future, not before its `nbf` (each give or take the leeway).
    fn verify(&self, token: &str) -> Option<Identity> {
        let claims: Claims = self.jwt.verify(token).ok()?;
        let now = Timestamp::now().unix_secs();
        let early = |at: i64| at > now + LEEWAY_SECS;
        if claims.exp + LEEWAY_SECS < now || early(claims.iat) || claims.nbf.is_some_and(early) {
            return None;
        }
        Some(Identity { user: claims.sub.parse().ok()?, role: claims.role, token_version: claims.ver })
    }
}

/// The caller `token` names, or a 401 if it is invalid, expired, names no account or has been revoked.
fn check(state: &AppState, token: &str) -> Result<Caller, Rejection> {
    let identity = state
        .tokens
        .verify(token.trim())
        .ok_or_else(|| warp::reject::custom(Problem::unauthorized("the token is invalid or expired")))?;
    let ban = state
        .accounts
        .cache()
        .recognise(identity.user, identity.role, identity.token_version)
        .map_err(|refusal| warp::reject::custom(Problem::unauthorized(refusal.to_string())))?;
    Ok(Caller { user: identity.user, role: identity.role, ban })
}

/// The caller named by a valid `Authorization: Bearer` token, or a 401.
pub fn caller(state: Arc<AppState>) -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization").and_then(move |header: Option<String>| {
        let state = Arc::clone(&state);
        async move {
            let header = header.ok_or_else(|| Problem::unauthorized("send Authorization: Bearer <token>"))?;
            check(&state, header.strip_prefix("Bearer ").unwrap_or_default())
        }
    })
}

/// The caller of a WebSocket: `Authorization: Bearer <token>`, or for a browser (which cannot set headers on a
/// WebSocket) the subprotocols `seckill.bearer, <token>`; with whether the subprotocol carried it (the answer must
/// then name the subprotocol).
pub fn live_caller(state: Arc<AppState>) -> impl Filter<Extract = ((Caller, bool),), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::header::optional::<String>("sec-websocket-protocol"))
        .and_then(move |header: Option<String>, protocols: Option<String>| {
            let state = Arc::clone(&state);
            async move {
                let from_header =
                    header.as_deref().and_then(|header| header.strip_prefix("Bearer ")).map(|t| (t, false));
                let from_protocol = protocols.as_deref().and_then(|protocols| {
                    let mut offered = protocols.split(',').map(str::trim);
                    (offered.next() == Some(super::live::BEARER_PROTOCOL)).then(|| offered.next()).flatten()
                });
                let (token, by_protocol) =
                    from_header.or(from_protocol.map(|token| (token, true))).ok_or_else(|| {
                        Problem::unauthorized(
                            "send Authorization: Bearer <token>, or the subprotocols seckill.bearer, <token>",
                        )
                    })?;
                Ok::<_, Rejection>((check(&state, token)?, by_protocol))
            }
        })
}

/// Like `caller`, but only for admins (403 for anyone else).
pub fn admin(state: Arc<AppState>) -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    caller(state).and_then(|caller: Caller| async move {
        if caller.role == Role::Admin {
            Ok(caller)
        } else {
            Err(warp::reject::custom(Problem::forbidden()))
        }
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    username: Username,
    password: PlainPassword,
}

/// `POST /api/v1/auth/password`: the new password's body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: PlainPassword,
    new_password: PlainPassword,
}

/// Refuses a banned caller or client address, then one past its rate limits: before a purchase reaches an actor,
/// and before a login's password is hashed.
pub(super) fn admit(state: &AppState, caller: Option<&Caller>, client: Option<IpAddr>) -> Result<(), Problem> {
    let refusals = &state.metrics.refusals;
    let banned = |ban: Blacklisted| {
        refusals.blacklisted(ban.subject.kind());
        ban
    };
    if let Some(caller) = caller {
        caller.unbanned().map_err(banned)?;
    }
    if let Some(ip) = client {
        state.accounts.cache().admit_ip(ip, Timestamp::now).map_err(banned)?;
    }
    Ok(state.limits.check(client, caller.map(|caller| caller.user)).map_err(|refused| rate_limited(state, refused))?)
}

fn rate_limited(state: &AppState, refused: Refused) -> Refused {
    state.metrics.refusals.rate_limited(refused.scope);
    refused
}

/// A new customer account.
#[derive(Serialize, ToSchema)]
struct Registered {
    user_id: UserId,
    username: Username,
}

/// Registers a customer account. Refusals: 403 `BLACKLISTED` (the address); 409 `USERNAME_TAKEN`; 429
/// `RATE_LIMITED`; 503 `LOGIN_BUSY` when the password hashing threads are full.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth",
    request_body = Credentials,
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 411, response = LengthRequired),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ))]
pub async fn register(
    state: Arc<AppState>,
    client: Option<IpAddr>,
    credentials: Credentials,
) -> Result<Response, Problem> {
    admit(&state, None, client)?;
    let Credentials { username, password } = credentials;
    let user_id = state.accounts.register(username.clone(), password).await?;
    let body = Registered { user_id, username };
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::CREATED).into_response())
}

/// Logs in: a token for the account. A wrong name or password is the same 401. Refusals: 403 `BLACKLISTED`; 429
/// `RATE_LIMITED` (`scope` `login_ip` or `login_user` too); 503 `LOGIN_BUSY`.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "Logged in", body = IssuedToken),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 411, response = LengthRequired),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ))]
pub async fn login(
    state: Arc<AppState>,
    client: Option<IpAddr>,
    credentials: Credentials,
) -> Result<Response, Problem> {
    admit(&state, None, client)?;
    let Credentials { username, password } = credentials;
    state.limits.check_login(client, username.as_str()).map_err(|refused| rate_limited(&state, refused))?;
    let identity = state.accounts.login(username, password).await?;
    Ok(warp::reply::json(&state.tokens.issue(identity)?).into_response())
}

/// Changes the caller's password, which revokes every token issued before; answers with a new token. 401 if
/// `current_password` is wrong, and nothing changes.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth",
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed; every earlier token of the account is revoked", body = IssuedToken),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 411, response = LengthRequired),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn change_password(
    state: Arc<AppState>,
    caller: Caller,
    client: Option<IpAddr>,
    change: PasswordChange,
) -> Result<Response, Problem> {
    state.limits.check(client, Some(caller.user))?;
    let PasswordChange { current_password, new_password } = change;
    let identity = state.accounts.change_password(caller.user, current_password, new_password).await?;
    Ok(warp::reply::json(&state.tokens.issue(identity)?).into_response())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tokens() -> Tokens {
        Tokens::new("a-test-secret-of-at-least-thirty-two-bytes", Duration::from_secs(60))
    }

    fn identity(role: Role) -> Identity {
        Identity { user: UserId::try_from(7).unwrap(), role, token_version: TokenVersion::default().next() }
    }

    fn token_expiring_at(tokens: &Tokens, exp: i64) -> String {
        signed(tokens, json!({"iat": exp - 60, "exp": exp}))
    }

    /// A token signed with `tokens`' key: a valid customer token's claims, with `changes` over them (null removes).
    fn signed(tokens: &Tokens, changes: serde_json::Value) -> String {
        let now = Timestamp::now().unix_secs();
        let mut claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "7", "role": "customer", "ver": 0, "iat": now, "exp": now + 60,
        });
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        tokens.jwt.sign(&claims).unwrap()
    }

    #[test]
    fn only_tokens_of_this_issuer_for_this_audience_valid_now_are_taken() {
        let tokens = tokens();
        let now = Timestamp::now().unix_secs();
        assert!(tokens.verify(&signed(&tokens, json!({}))).is_some(), "the baseline is valid");
        assert!(tokens.verify(&signed(&tokens, json!({"aud": ["other", AUDIENCE]}))).is_some(), "a list with ours");
        assert!(tokens.verify(&signed(&tokens, json!({"nbf": now}))).is_some(), "valid from now");
        assert!(tokens.verify(&signed(&tokens, json!({"iat": now + LEEWAY_SECS}))).is_some(), "within the leeway");
        for (changes, why) in [
            (json!({"iss": "someone-else"}), "another issuer"),
            (json!({"iss": null}), "no issuer"),
            (json!({"aud": "another-api"}), "another audience"),
            (json!({"aud": ["other"]}), "a list without ours"),
            (json!({"aud": null}), "no audience"),
            (json!({"exp": null}), "no expiry"),
            (json!({"iat": null}), "no issue time"),
            (json!({"iat": now + LEEWAY_SECS + 60}), "issued in the future"),
            (json!({"nbf": now + LEEWAY_SECS + 60}), "not valid yet"),
        ] {
            assert!(tokens.verify(&signed(&tokens, changes)).is_none(), "{why}");
        }
    }

    #[test]
    fn an_issued_token_names_its_caller_and_version() {
        let tokens = tokens();
        let issued = tokens.issue(identity(Role::Admin)).unwrap();
        assert_eq!(tokens.verify(&issued.access_token), Some(identity(Role::Admin)));
    }

    #[test]
    fn an_expired_token_is_refused_past_the_leeway() {
        let tokens = tokens();
        let now = Timestamp::now().unix_secs();
        assert!(tokens.verify(&token_expiring_at(&tokens, now - 1)).is_some(), "within the leeway");
        assert!(tokens.verify(&token_expiring_at(&tokens, now - LEEWAY_SECS - 2)).is_none());
        assert!(tokens.verify(&tokens.issue(identity(Role::Customer)).unwrap().access_token).is_some());
    }
}
