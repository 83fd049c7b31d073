//! Why a purchase that needs a seckill token was refused for its token. The token proves its holder passed every
//! check of the sale (login, switch, blacklist, rate, stock) a moment before, inside the window; each refusal has
//! its own stable code so a client knows whether to fetch a new token or give up.

/// What was wrong with the token a purchase came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PassRefusal {
    #[error("this sale needs a seckill token: POST /api/v1/products/{{id}}/token first")]
    Missing,
    #[error("the seckill token is not one this service issued")]
    Forged,
    #[error("the seckill token has expired; fetch a new one")]
    Expired,
    #[error("the seckill token has been used already")]
    Reused,
    #[error("the seckill token was issued to someone else, or for another product")]
    NotYours,
}

impl PassRefusal {
    pub fn code(self) -> &'static str {
        match self {
            PassRefusal::Missing => "SECKILL_TOKEN_REQUIRED",
            PassRefusal::Forged => "SECKILL_TOKEN_INVALID",
            PassRefusal::Expired => "SECKILL_TOKEN_EXPIRED",
            PassRefusal::Reused => "SECKILL_TOKEN_USED",
            PassRefusal::NotYours => "SECKILL_TOKEN_NOT_YOURS",
        }
    }
}
