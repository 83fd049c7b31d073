//! Seckill tokens ("passes"): short-lived, signed, bound to one user and one product, and good for one purchase.
//! A sale that requires one lets only buyers who asked for a pass inside the window, after every other check, reach
//! its shards; a script that skips the step, replays a pass or borrows someone else's is refused by its code.
//!
//! A pass is `base64url(user ‖ product ‖ expiry ‖ nonce) . base64url(HMAC-SHA256)` under a key drawn at start, so a
//! restart invalidates every pass (they live seconds; buyers ask again), and the set of spent nonces, which only
//! needs to outlive the passes, can live in memory: a pass is spent before its purchase is asked, so two purchases
//! racing with one pass cannot both pass. Spent nonces are forgotten once their pass has expired.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use papaya::HashMap;
use rand::RngCore;
use ring::hmac;
use rustc_hash::FxBuildHasher;

use crate::domain::{PassRefusal, ProductId, Timestamp, UserId};

/// user, product, expiry (Unix ms), nonce.
const BODY_LEN: usize = 8 + 8 + 8 + 16;
const TAG_LEN: usize = 32;

pub struct Passes {
    key: hmac::Key,
    ttl: Duration,
    /// Nonces of spent passes, with their expiry (Unix ms).
    spent: HashMap<u128, i64, FxBuildHasher>,
}

/// A pass as issued.
pub struct IssuedPass {
    pub token: String,
    pub expires_at: Timestamp,
}

impl Passes {
    pub fn new(ttl: Duration) -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let spent = HashMap::builder().hasher(FxBuildHasher).build();
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, &secret), ttl, spent }
    }

    pub fn issue(&self, user: UserId, product: ProductId, now: Timestamp) -> IssuedPass {
        let expires_at = now.plus(self.ttl);
        let mut body = [0u8; BODY_LEN];
        body[..8].copy_from_slice(&user.get().to_be_bytes());
        body[8..16].copy_from_slice(&product.get().to_be_bytes());
        body[16..24].copy_from_slice(&expires_at.millis().to_be_bytes());
        rand::rng().fill_bytes(&mut body[24..]);
        let mut token = URL_SAFE_NO_PAD.encode(body);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(hmac::sign(&self.key, &body).as_ref(), &mut token);
        IssuedPass { token, expires_at }
    }

    /// Spends `token` for `user`'s purchase of `product` at `now`, or says what is wrong with it.
    pub fn redeem(
        &self,
        token: Option<&str>,
        user: UserId,
        product: ProductId,
        now: Timestamp,
    ) -> Result<(), PassRefusal> {
        let token = token.ok_or(PassRefusal::Missing)?;
        let (body_text, tag_text) = token.trim().split_once('.').ok_or(PassRefusal::Forged)?;
        let mut body = [0u8; BODY_LEN];
        let mut tag = [0u8; TAG_LEN];
        let decoded = URL_SAFE_NO_PAD.decode_slice(body_text, &mut body).map_err(|_| PassRefusal::Forged)?;
        let tag_len = URL_SAFE_NO_PAD.decode_slice(tag_text, &mut tag).map_err(|_| PassRefusal::Forged)?;
        if decoded != BODY_LEN {
            return Err(PassRefusal::Forged);
        }
        hmac::verify(&self.key, &body, &tag[..tag_len]).map_err(|_| PassRefusal::Forged)?;
        let field = |at: usize| i64::from_be_bytes(body[at..at + 8].try_into().unwrap_or_default());
        if field(0) != user.get() || field(8) != product.get() {
            return Err(PassRefusal::NotYours);
        }
        let expires_at = field(16);
        if now.millis() >= expires_at {
            return Err(PassRefusal::Expired);
        }
        let nonce = u128::from_be_bytes(body[24..].try_into().unwrap_or_default());
        match self.spent.pin().try_insert(nonce, expires_at) {
            Ok(_) => Ok(()),
            Err(_) => Err(PassRefusal::Reused),
        }
    }

    /// Forgets the nonces of passes that have expired by `now` (they are refused as expired from then on).
    pub fn sweep(&self, now: Timestamp) {
        self.spent.pin().retain(|_, expires_at| *expires_at > now.millis());
    }

    /// Nonces remembered.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.spent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(user: i64, product: i64) -> (UserId, ProductId) {
        (UserId::try_from(user).unwrap(), ProductId::try_from(product).unwrap())
    }

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_millis(millis)
    }

    #[test]
    fn a_pass_buys_once_for_its_holder_and_product_before_it_expires() {
        let passes = Passes::new(Duration::from_secs(30));
        let (user, product) = ids(7, 3);
        let pass = passes.issue(user, product, at(1_000));
        assert_eq!(pass.expires_at, at(31_000));
        let (other_user, other_product) = ids(8, 4);
        assert_eq!(passes.redeem(Some(&pass.token), other_user, product, at(2_000)), Err(PassRefusal::NotYours));
        assert_eq!(passes.redeem(Some(&pass.token), user, other_product, at(2_000)), Err(PassRefusal::NotYours));
        assert_eq!(passes.redeem(Some(&pass.token), user, product, at(31_000)), Err(PassRefusal::Expired));
        assert_eq!(passes.redeem(Some(&pass.token), user, product, at(2_000)), Ok(()));
        assert_eq!(passes.redeem(Some(&pass.token), user, product, at(2_001)), Err(PassRefusal::Reused));
        assert_eq!(passes.redeem(None, user, product, at(2_000)), Err(PassRefusal::Missing));
    }

    #[test]
    fn a_changed_or_foreign_pass_is_forged() {
        let passes = Passes::new(Duration::from_secs(30));
        let (user, product) = ids(7, 3);
        let pass = passes.issue(user, product, at(1_000));
        let elsewhere = Passes::new(Duration::from_secs(30)).issue(user, product, at(1_000));
        let (body, tag) = pass.token.split_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(body).unwrap();
        raw[23] ^= 1;
        let longer = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&raw));
        for forged in
            [elsewhere.token.as_str(), &longer, "", ".", "abc", &format!("{body}."), &format!("{body}.{tag}A")]
        {
            assert_eq!(passes.redeem(Some(forged), user, product, at(2_000)), Err(PassRefusal::Forged), "{forged:?}");
        }
        assert_eq!(passes.redeem(Some(&pass.token), user, product, at(2_000)), Ok(()), "forgeries spent nothing");
    }

    #[test]
    fn spent_nonces_are_forgotten_once_their_pass_has_expired() {
        let passes = Passes::new(Duration::from_secs(30));
        let (user, product) = ids(7, 3);
        for n in 0..100 {
            let pass = passes.issue(user, product, at(n));
            passes.redeem(Some(&pass.token), user, product, at(n + 1)).unwrap();
        }
        assert_eq!(passes.remembered(), 100);
        passes.sweep(at(30_050));
        assert_eq!(passes.remembered(), 49, "those that expired by 30,050 ms are gone");
        passes.sweep(at(31_000));
        assert_eq!(passes.remembered(), 0);
    }
}
