//! Accounts and tokens: register and login (the `Accounts` service checks the passwords), HS256 JWTs with an
//! expiry, and the filters that turn a bearer token into the caller — or into a 401/403 problem.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::jwt::Hs256;
use super::problem::Problem;
use super::AppState;
use crate::domain::{PlainPassword, Role, Timestamp, UserId, Username};

/// Who is calling, as the token says.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub user: UserId,
    pub role: Role,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iat: i64,
    exp: i64,
}

/// Signs and checks tokens.
pub struct Tokens {
    jwt: Hs256,
    ttl: Duration,
}

/// How far past its expiry a token is still taken, for clocks that disagree a little.
const LEEWAY_SECS: i64 = 5;

/// A signed token and how long it lives.
#[derive(Debug, Serialize)]
pub struct IssuedToken {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

impl Tokens {
    pub fn new(secret: &str, ttl: Duration) -> Self {
        Self { jwt: Hs256::new(secret.as_bytes()), ttl }
    }

    pub fn issue(&self, user: UserId, role: Role) -> Result<IssuedToken, Problem> {
        let now = Timestamp::now().unix_secs();
        let claims = Claims { sub: user.to_string(), role, iat: now, exp: now + self.ttl.as_secs() as i64 };
        let access_token = self.jwt.sign(&claims).map_err(|err| Problem::backend(&err))?;
        Ok(IssuedToken { access_token, token_type: "Bearer", expires_in: self.ttl.as_secs() })
    }

    fn verify(&self, token: &str) -> Option<Caller> {
        let claims: Claims = self.jwt.verify(token).ok()?;
        if claims.exp + LEEWAY_SECS < Timestamp::now().unix_secs() {
            return None;
        }
        Some(Caller { user: claims.sub.parse().ok()?, role: claims.role })
    }
}

impl Tokens {
    /// The caller `token` names, or a 401 if it is invalid or expired.
    fn check(&self, token: &str) -> Result<Caller, Rejection> {
        self.verify(token.trim())
            .ok_or_else(|| warp::reject::custom(Problem::unauthorized("the token is invalid or expired")))
    }
}

/// The caller named by a valid `Authorization: Bearer` token, or a 401.
pub fn caller(tokens: Arc<Tokens>) -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization").and_then(move |header: Option<String>| {
        let tokens = Arc::clone(&tokens);
        async move {
            let header = header.ok_or_else(|| Problem::unauthorized("send Authorization: Bearer <token>"))?;
            tokens.check(header.strip_prefix("Bearer ").unwrap_or_default())
        }
    })
}

/// The caller of a WebSocket: `Authorization: Bearer <token>`, or for a browser (which cannot set headers on a
/// WebSocket) the subprotocols `seckill.bearer, <token>`; with whether the subprotocol carried it (the answer must
/// then name the subprotocol).
pub fn live_caller(tokens: Arc<Tokens>) -> impl Filter<Extract = ((Caller, bool),), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::header::optional::<String>("sec-websocket-protocol"))
        .and_then(move |header: Option<String>, protocols: Option<String>| {
            let tokens = Arc::clone(&tokens);
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
                Ok::<_, Rejection>((tokens.check(token)?, by_protocol))
            }
        })
}

/// Like `caller`, but only for admins (403 for anyone else).
pub fn admin(tokens: Arc<Tokens>) -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    caller(tokens).and_then(|caller: Caller| async move {
        if caller.role == Role::Admin {
            Ok(caller)
        } else {
            Err(warp::reject::custom(Problem::forbidden()))
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    username: Username,
    password: PlainPassword,
}

pub async fn register(
    state: Arc<AppState>,
    client: Option<IpAddr>,
    credentials: Credentials,
) -> Result<Response, Problem> {
    state.limits.check(client, None)?;
    let Credentials { username, password } = credentials;
    let user_id = state.accounts.register(username.clone(), password).await?;
    let body = serde_json::json!({ "user_id": user_id, "username": username });
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::CREATED).into_response())
}

pub async fn login(
    state: Arc<AppState>,
    client: Option<IpAddr>,
    credentials: Credentials,
) -> Result<Response, Problem> {
    state.limits.check(client, None)?;
    let Credentials { username, password } = credentials;
    let (user, role) = state.accounts.login(username, password).await?;
    Ok(warp::reply::json(&state.tokens.issue(user, role)?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new("a-test-secret-of-at-least-thirty-two-bytes", Duration::from_secs(60))
    }

    fn token_expiring_at(tokens: &Tokens, exp: i64) -> String {
        tokens.jwt.sign(&Claims { sub: "7".into(), role: Role::Customer, iat: exp - 60, exp }).unwrap()
    }

    #[test]
    fn an_issued_token_names_its_caller() {
        let tokens = tokens();
        let issued = tokens.issue(UserId::try_from(7).unwrap(), Role::Admin).unwrap();
        let caller = tokens.verify(&issued.access_token).unwrap();
        assert_eq!((caller.user, caller.role), (UserId::try_from(7).unwrap(), Role::Admin));
    }

    #[test]
    fn an_expired_token_is_refused_past_the_leeway() {
        let tokens = tokens();
        let now = Timestamp::now().unix_secs();
        assert!(tokens.verify(&token_expiring_at(&tokens, now - 1)).is_some(), "within the leeway");
        assert!(tokens.verify(&token_expiring_at(&tokens, now - LEEWAY_SECS - 2)).is_none());
        assert!(tokens
            .verify(&tokens.issue(UserId::try_from(7).unwrap(), Role::Customer).unwrap().access_token)
            .is_some());
    }
}
