//! Rate limits, checked at the edge before any actor is touched: one bucket for the whole service, one per user and
//! one per client address (`governor`'s GCRA, lock-free for the global bucket), and for logins, whose every try
//! costs an argon2 check, tighter ones per address and per username (so guessing one account's password from many
//! addresses is as slow as from one). An admin reads and replaces them at
//! runtime (`/api/v1/admin/limits`); a replacement starts every bucket full.
//!
//! A keyed limiter remembers every key it has seen, so a flood of distinct addresses would grow it without bound:
//! a sweeper drops the keys whose bucket has refilled (`retain_recent`), and past `max_keys` the keys not yet known
//! share one bucket of the per-key size, so a flood of new addresses gets one client's share between them while the
//! clients already known keep theirs.

use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{NotUntil, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::domain::UserId;

/// One limit: `per_second` sustained, `burst` at once; `per_second` 0 turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub per_second: u32,
    pub burst: u32,
}

/// Every limit, as configured and as an admin reads and sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    pub global: Limit,
    pub user: Limit,
    pub ip: Limit,
    pub login_ip: Limit,
    pub login_user: Limit,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("{0}: a burst must be at least 1 when the limit is on")]
    NoBurst(&'static str),
}

/// Which bucket ran dry, and when the next request would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub scope: &'static str,
    pub retry_after: Duration,
}

type Direct = RateLimiter<NotKeyed, InMemoryState, DefaultClock, NoOpMiddleware<<DefaultClock as Clock>::Instant>>;
type Keyed<K> = RateLimiter<K, CappedStore<K>, DefaultClock, NoOpMiddleware<<DefaultClock as Clock>::Instant>>;

/// The limiters built from one `LimitSettings`.
struct Buckets {
    settings: LimitSettings,
    clock: DefaultClock,
    global: Option<Direct>,
    users: Option<Keyed<UserId>>,
    ips: Option<Keyed<IpAddr>>,
    login_ips: Option<Keyed<IpAddr>>,
    /// Keyed by a hash of the username (under a key of this process), so a flood of names costs no allocation.
    login_names: Option<Keyed<u64>>,
    names: RandomState,
}

pub struct RateLimits {
    buckets: ArcSwap<Buckets>,
    max_keys: usize,
}

impl RateLimits {
    pub fn new(settings: LimitSettings, max_keys: usize) -> Result<Self, LimitError> {
        let buckets = Buckets::new(settings, max_keys)?;
        Ok(Self { buckets: ArcSwap::from_pointee(buckets), max_keys })
    }

    pub fn settings(&self) -> LimitSettings {
        self.buckets.load().settings
    }

    /// Replaces every limit; every bucket starts full.
    pub fn replace(&self, settings: LimitSettings) -> Result<(), LimitError> {
        self.buckets.store(Arc::new(Buckets::new(settings, self.max_keys)?));
        Ok(())
    }

    /// Takes one request from the global bucket, `ip`'s and `user`'s (those given), or says which one is empty.
    /// The keyed buckets are asked first, so that one client's flood does not spend everyone's global budget.
    pub fn check(&self, ip: Option<IpAddr>, user: Option<UserId>) -> Result<(), Refused> {
        let buckets = self.buckets.load();
        let buckets: &Buckets = &buckets;
        let refused = |scope| move |not_until: NotUntil<_>| buckets.refused(scope, &not_until);
        if let (Some(limiter), Some(user)) = (&buckets.users, user) {
            limiter.check_key(&user).map_err(refused("user"))?;
        }
        if let (Some(limiter), Some(ip)) = (&buckets.ips, ip) {
            limiter.check_key(&ip).map_err(refused("ip"))?;
        }
        if let Some(limiter) = &buckets.global {
            limiter.check().map_err(refused("global"))?;
        }
        Ok(())
    }

    /// Takes one login try from `ip`'s and `username`'s login buckets, or says which one is empty.
    pub fn check_login(&self, ip: Option<IpAddr>, username: &str) -> Result<(), Refused> {
        let buckets = self.buckets.load();
        let buckets: &Buckets = &buckets;
        let refused = |scope| move |not_until: NotUntil<_>| buckets.refused(scope, &not_until);
        if let (Some(limiter), Some(ip)) = (&buckets.login_ips, ip) {
            limiter.check_key(&ip).map_err(refused("login_ip"))?;
        }
        if let Some(limiter) = &buckets.login_names {
            limiter.check_key(&buckets.names.hash_one(username)).map_err(refused("login_user"))?;
        }
        Ok(())
    }

    /// Drops the keys whose bucket is full again (run every `limits.sweep_ms`).
    pub fn sweep(&self) {
        self.buckets.load().sweep();
    }
}

impl Buckets {
    fn new(settings: LimitSettings, max_keys: usize) -> Result<Self, LimitError> {
        let clock = DefaultClock::default();
        let global =
            quota("global", settings.global)?.map(|quota| RateLimiter::direct_with_clock(quota, clock.clone()));
        let users = quota("user", settings.user)?.map(|quota| keyed(quota, max_keys, &clock));
        let ips = quota("ip", settings.ip)?.map(|quota| keyed(quota, max_keys, &clock));
        let login_ips = quota("login_ip", settings.login_ip)?.map(|quota| keyed(quota, max_keys, &clock));
        let login_names = quota("login_user", settings.login_user)?.map(|quota| keyed(quota, max_keys, &clock));
        Ok(Self { settings, global, users, ips, login_ips, login_names, names: RandomState::new(), clock })
    }

    fn refused(&self, scope: &'static str, not_until: &NotUntil<<DefaultClock as Clock>::Instant>) -> Refused {
        Refused { scope, retry_after: not_until.wait_time_from(self.clock.now()) }
    }

    fn sweep(&self) {
        if let Some(users) = &self.users {
            users.retain_recent();
        }
        if let Some(ips) = &self.ips {
            ips.retain_recent();
        }
        if let Some(ips) = &self.login_ips {
            ips.retain_recent();
        }
        if let Some(names) = &self.login_names {
            names.retain_recent();
        }
    }
}

fn keyed<K: Hash + Eq + Clone>(quota: Quota, max_keys: usize, clock: &DefaultClock) -> Keyed<K> {
    RateLimiter::new(quota, CappedStore::new(max_keys), clock.clone())
}

fn quota(scope: &'static str, limit: Limit) -> Result<Option<Quota>, LimitError> {
    let Some(per_second) = NonZeroU32::new(limit.per_second) else { return Ok(None) };
    let burst = NonZeroU32::new(limit.burst).ok_or(LimitError::NoBurst(scope))?;
    Ok(Some(Quota::per_second(per_second).allow_burst(burst)))
}

/// A keyed store that remembers at most `max_keys` keys (give or take a sweep); keys beyond share `overflow`.
struct CappedStore<K: Hash + Eq> {
    keys: DashMap<K, InMemoryState>,
    /// Keys held, counted as they are added and recounted at each sweep (so that a new key costs no walk of the map).
    held: AtomicUsize,
    max_keys: usize,
    overflow: InMemoryState,
}

impl<K: Hash + Eq + Clone> CappedStore<K> {
    fn new(max_keys: usize) -> Self {
        Self { keys: DashMap::new(), held: AtomicUsize::new(0), max_keys, overflow: InMemoryState::default() }
    }
}

impl<K: Hash + Eq + Clone> StateStore for CappedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(state) = self.keys.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        if self.held.load(Ordering::Relaxed) >= self.max_keys {
            return self.overflow.measure_and_replace(&NotKeyed::NonKey, f);
        }
        match self.keys.entry(key.clone()) {
            Entry::Occupied(state) => state.get().measure_and_replace(&NotKeyed::NonKey, f),
            Entry::Vacant(slot) => {
                self.held.fetch_add(1, Ordering::Relaxed);
                slot.insert(InMemoryState::default()).measure_and_replace(&NotKeyed::NonKey, f)
            }
        }
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for CappedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.keys.retain_recent(drop_below);
        self.keys.shrink_to_fit();
        self.held.store(self.keys.len(), Ordering::Relaxed);
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const OFF: Limit = Limit { per_second: 0, burst: 0 };

    fn limits(global: Limit, user: Limit, ip: Limit, max_keys: usize) -> RateLimits {
        RateLimits::new(LimitSettings { global, user, ip, login_ip: OFF, login_user: OFF }, max_keys).unwrap()
    }

    /// Addresses remembered.
    fn addresses(limits: &RateLimits) -> usize {
        limits.buckets.load().ips.as_ref().map_or(0, Keyed::len)
    }

    fn ip(n: u32) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::from(n)))
    }

    fn user(n: i64) -> Option<UserId> {
        Some(UserId::try_from(n).unwrap())
    }

    #[test]
    fn a_user_past_their_burst_is_refused_with_a_wait_and_others_are_not() {
        let limits = limits(OFF, Limit { per_second: 1, burst: 3 }, OFF, 100);
        for _ in 0..3 {
            assert_eq!(limits.check(ip(1), user(1)), Ok(()));
        }
        let refused = limits.check(ip(1), user(1)).unwrap_err();
        assert_eq!(refused.scope, "user");
        assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(1));
        assert_eq!(limits.check(ip(1), user(2)), Ok(()), "another user has a bucket of their own");
    }

    #[test]
    fn the_global_and_address_buckets_refuse_in_their_own_name_and_a_replacement_refills() {
        let limits = limits(Limit { per_second: 1, burst: 2 }, OFF, Limit { per_second: 1, burst: 1 }, 100);
        assert_eq!(limits.check(ip(1), None), Ok(()));
        assert_eq!(limits.check(ip(1), None).unwrap_err().scope, "ip");
        assert_eq!(limits.check(ip(2), None), Ok(()));
        assert_eq!(limits.check(ip(3), None).unwrap_err().scope, "global");
        let open = LimitSettings { global: OFF, user: OFF, ip: OFF, login_ip: OFF, login_user: OFF };
        limits.replace(open).unwrap();
        assert_eq!(limits.settings(), open);
        assert!((0..1_000).all(|_| limits.check(ip(1), user(1)).is_ok()), "every limit off");
    }

    #[test]
    fn a_limit_that_is_on_needs_a_burst() {
        let settings = LimitSettings {
            global: OFF,
            user: Limit { per_second: 5, burst: 0 },
            ip: OFF,
            login_ip: OFF,
            login_user: OFF,
        };
        assert_eq!(RateLimits::new(settings, 10).err(), Some(LimitError::NoBurst("user")));
    }

    #[test]
    fn a_flood_of_distinct_addresses_is_held_to_the_cap_and_swept_away() {
        let limits = limits(OFF, OFF, Limit { per_second: 1, burst: 1 }, 10_000);
        let passed = (0..100_000).filter(|n| limits.check(ip(*n), None).is_ok()).count();
        assert_eq!(addresses(&limits), 10_000, "no more keys than the cap");
        assert!(passed < 11_000, "the addresses past the cap shared one bucket: {passed} passed");
        assert_eq!(limits.check(ip(5), None).unwrap_err().scope, "ip", "a known address keeps its own bucket");
        std::thread::sleep(Duration::from_millis(2_050)); // governor forgets a key two refills after its last use
        limits.buckets.load().sweep();
        assert_eq!(addresses(&limits), 0, "every bucket refilled, every key dropped");
        assert_eq!(limits.check(ip(200_000), None), Ok(()), "a new address has a bucket of its own again");
        assert_eq!(addresses(&limits), 1);
    }

    #[test]
    fn logins_are_limited_per_address_and_per_username() {
        let one = Limit { per_second: 1, burst: 2 };
        let settings = LimitSettings { global: OFF, user: OFF, ip: OFF, login_ip: one, login_user: one };
        let limits = RateLimits::new(settings, 100).unwrap();
        assert!(limits.check_login(ip(1), "alice").is_ok());
        assert!(limits.check_login(ip(2), "alice").is_ok());
        let refused = limits.check_login(ip(3), "alice").unwrap_err();
        assert_eq!(refused.scope, "login_user", "a third address guessing alice's password");
        assert!(limits.check_login(ip(1), "bob").is_ok());
        assert_eq!(limits.check_login(ip(1), "carol").unwrap_err().scope, "login_ip", "address 1's third login");
        assert!(limits.check(ip(1), user(1)).is_ok(), "logins take nothing from the other buckets");
    }
}
