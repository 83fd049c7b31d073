//! Accounts: register, log in, change a password, revoke tokens, ban and unban, bootstrap the configured admin, and
//! mint the password-less accounts load tests use.
//!
//! It exists so that the HTTP layer asks for accounts the way it asks the `Engine` for sales, and never touches the
//! database itself: `http` → `accounts` → `persistence` → `domain`. The rules live here, beside each other: argon2
//! runs on a bounded pool of its own, never where purchases run; a login for a name that does not exist costs as
//! much as one that does (it checks a decoy hash); every write that changes who may be served (a new account, a new
//! password, a revocation, a ban) goes to the database and then to the in-memory `AccountCache` every request is
//! checked against; and bulk accounts come in bounded batches.

mod cache;
mod hashing;

use rand::distr::{Alphanumeric, SampleString};

pub use cache::{check_ban, AccountCache, Blacklisted, Unrecognised};
pub use hashing::{HashError, HashPool};

use crate::domain::{
    Ban, BanSubject, ParseError, PasswordHash, PlainPassword, Role, Timestamp, TokenVersion, UserId, Username,
};
use crate::persistence::{AccountStanding, Database, DbError};

/// Most accounts one `create_bulk` call makes.
pub const MAX_BULK_ACCOUNTS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("that username is taken")]
    UsernameTaken,
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("no such account")]
    NoAccount,
    #[error("count must be from 1 to {max}")]
    InvalidCount { max: usize },
    #[error("prefix: the names it makes must be usernames too: {0}")]
    InvalidPrefix(ParseError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Hashing(#[from] HashError),
    #[error(transparent)]
    Blacklisted(#[from] Blacklisted),
    #[error("the account {0:?} exists and is not an admin; name another admin in admin.username")]
    NotAdmin(String),
}

/// Who logged in, and the token version to issue their token with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub user: UserId,
    pub role: Role,
    pub token_version: TokenVersion,
}

/// The accounts service: the users table behind it, its copy in memory, the hashing pool, and the hash that logins
/// for unknown names are checked against.
pub struct Accounts {
    db: Database,
    cache: AccountCache,
    hashing: HashPool,
    /// A hash of a throwaway password, checked on logins for unknown names so they take as long as real ones.
    decoy_hash: PasswordHash,
}

impl Accounts {
    /// Creates the admin account `admin` with `password` if there is none, loads every account and ban, and prepares
    /// the login decoy. An admin that exists keeps its password whatever `password` says (a start that changed it
    /// would change it silently, behind the back of whoever changed it last); a customer of that name stops the
    /// start.
    pub async fn bootstrap(
        db: Database,
        hashing: HashPool,
        admin: Username,
        password: PlainPassword,
    ) -> Result<Self, AccountsError> {
        let decoy = PlainPassword::try_from(Alphanumeric.sample_string(&mut rand::rng(), 32))
            .expect("32 alphanumerics are a valid password");
        let decoy_hash = hashing.run(move || PasswordHash::of(&decoy)).await?;
        match db.account(admin.clone()).await? {
            None => {
                let hash = hashing.run(move || PasswordHash::of(&password)).await?;
                db.create_account(admin, hash, Role::Admin).await?;
            }
            Some(account) if account.role != Role::Admin => {
                return Err(AccountsError::NotAdmin(admin.as_str().to_owned()))
            }
            Some(_) => {
                tracing::info!(admin = admin.as_str(), "the admin account exists; its password is left as it is")
            }
        }
        let cache = AccountCache::new(db.standings().await?, db.bans(Timestamp::now()).await?);
        Ok(Self { db, cache, hashing, decoy_hash })
    }

    /// What every authenticated request is checked against.
    pub fn cache(&self) -> &AccountCache {
        &self.cache
    }

    /// Creates a customer account that logs in with `password`.
    pub async fn register(&self, username: Username, password: PlainPassword) -> Result<UserId, AccountsError> {
        let hash = self.hashing.run(move || PasswordHash::of(&password)).await?;
        let id = self.db.create_account(username, hash, Role::Customer).await.map_err(taken_or_failed)?;
        self.cache.remember([AccountStanding { id, role: Role::Customer, token_version: TokenVersion::default() }]);
        Ok(id)
    }

    /// Who logs in with these credentials. Unknown names, accounts that cannot log in and wrong passwords are all
    /// `InvalidCredentials`, after the same argon2 check: the answer's timing does not tell which names exist. A
    /// banned account that gives its right password is `Blacklisted`.
    pub async fn login(&self, username: Username, password: PlainPassword) -> Result<Identity, AccountsError> {
        let place = self.hashing.admit()?;
        let account = self.db.account(username).await?;
        let (stored, identity) = match account {
            Some(account) => (
                account.password_hash,
                Some(Identity { user: account.id, role: account.role, token_version: account.token_version }),
            ),
            None => (None, None),
        };
        let stored = stored.unwrap_or_else(|| self.decoy_hash.clone());
        let matches = self.hashing.run_in(place, move || stored.verify(&password)).await?;
        match identity {
            Some(identity) if matches => {
                let ban = self
                    .cache
                    .recognise(identity.user, identity.role, identity.token_version)
                    .map_err(|_| AccountsError::InvalidCredentials)?;
                check_ban(identity.user, ban, Timestamp::now)?;
                Ok(identity)
            }
            _ => Err(AccountsError::InvalidCredentials),
        }
    }

    /// Replaces `user`'s password if `current` is right, revoking every token issued before; the new identity.
    pub async fn change_password(
        &self,
        user: UserId,
        current: PlainPassword,
        new: PlainPassword,
    ) -> Result<Identity, AccountsError> {
        let place = self.hashing.admit()?;
        let account = self.db.account_by_id(user).await?.ok_or(AccountsError::NoAccount)?;
        let stored = account.password_hash.unwrap_or_else(|| self.decoy_hash.clone());
        let verified =
            self.hashing.run_in(place, move || stored.verify(&current).then(|| PasswordHash::of(&new))).await?;
        let hash = verified.ok_or(AccountsError::InvalidCredentials)?;
        let token_version = self.db.set_password(user, hash).await?.ok_or(AccountsError::NoAccount)?;
        self.cache.remember([AccountStanding { id: user, role: account.role, token_version }]);
        Ok(Identity { user, role: account.role, token_version })
    }

    /// Makes every token issued to `user` so far stop working; the version tokens must carry from now on.
    pub async fn revoke_tokens(&self, user: UserId) -> Result<TokenVersion, AccountsError> {
        let version = self.db.revoke_tokens(user).await?.ok_or(AccountsError::NoAccount)?;
        self.cache.revoke(user, version);
        Ok(version)
    }

    /// Adds `ban` (or replaces the one on its subject); a user ban needs an existing account.
    pub async fn ban(&self, ban: Ban) -> Result<(), AccountsError> {
        if let BanSubject::User(user) = ban.subject {
            if !self.cache.exists(user) {
                return Err(AccountsError::NoAccount);
            }
        }
        let (subject, end) = (ban.subject, ban.end);
        self.db.ban(ban).await?;
        self.cache.ban(subject, end);
        Ok(())
    }

    /// Lifts the ban on `subject`; whether there was one.
    pub async fn unban(&self, subject: BanSubject) -> Result<bool, AccountsError> {
        let removed = self.db.unban(subject).await?;
        self.cache.unban(subject);
        Ok(removed)
    }

    /// Every ban in force.
    pub async fn bans(&self) -> Result<Vec<Ban>, AccountsError> {
        Ok(self.db.bans(Timestamp::now()).await?)
    }

    /// Creates customer accounts `{prefix}-1` … `{prefix}-{count}` that cannot log in, and returns their ids in that
    /// order. For load tests, which must measure purchases, not argon2. `count` is 1 to `MAX_BULK_ACCOUNTS`.
    pub async fn create_bulk(&self, prefix: Username, count: usize) -> Result<Vec<UserId>, AccountsError> {
        if !(1..=MAX_BULK_ACCOUNTS).contains(&count) {
            return Err(AccountsError::InvalidCount { max: MAX_BULK_ACCOUNTS });
        }
        Username::try_from(format!("{}-{count}", prefix.as_str())).map_err(AccountsError::InvalidPrefix)?;
        let ids = self.db.create_accounts(prefix, count).await.map_err(taken_or_failed)?;
        let fresh = TokenVersion::default();
        self.cache.remember(ids.iter().map(|&id| AccountStanding { id, role: Role::Customer, token_version: fresh }));
        Ok(ids)
    }
}

fn taken_or_failed(err: DbError) -> AccountsError {
    if err.is_unique_violation() {
        AccountsError::UsernameTaken
    } else {
        AccountsError::Database(err)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn name(text: &str) -> Username {
        Username::try_from(text.to_owned()).unwrap()
    }

    fn password(text: &str) -> PlainPassword {
        PlainPassword::try_from(text.to_owned()).unwrap()
    }

    /// A migrated SQLite file of the test's own; keep the directory alive as long as the database.
    fn database() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("accounts.db").display());
        let db = Database::connect(&url, 2, Duration::from_secs(5)).unwrap();
        db.migrate().unwrap();
        (dir, db)
    }

    fn pool() -> HashPool {
        HashPool::new(1, 16).unwrap()
    }

    async fn accounts() -> (tempfile::TempDir, Accounts) {
        let (dir, db) = database();
        let accounts = Accounts::bootstrap(db, pool(), name("admin"), password("admin-password")).await.unwrap();
        (dir, accounts)
    }

    #[tokio::test]
    async fn a_registered_customer_logs_in_with_their_password_only() {
        let (_dir, accounts) = accounts().await;
        let alice = accounts.register(name("alice"), password("correct horse")).await.unwrap();
        let logged_in = accounts.login(name("alice"), password("correct horse")).await.unwrap();
        assert_eq!((logged_in.user, logged_in.role), (alice, Role::Customer));
        let wrong = accounts.login(name("alice"), password("battery staple")).await;
        assert!(matches!(wrong, Err(AccountsError::InvalidCredentials)), "{wrong:?}");
    }

    #[tokio::test]
    async fn an_unknown_name_is_invalid_credentials() {
        let (_dir, accounts) = accounts().await;
        let unknown = accounts.login(name("nobody"), password("correct horse")).await;
        assert!(matches!(unknown, Err(AccountsError::InvalidCredentials)), "{unknown:?}");
    }

    #[tokio::test]
    async fn a_taken_name_is_refused() {
        let (_dir, accounts) = accounts().await;
        accounts.register(name("alice"), password("correct horse")).await.unwrap();
        let again = accounts.register(name("alice"), password("other password")).await;
        assert!(matches!(again, Err(AccountsError::UsernameTaken)), "{again:?}");
        let admin = accounts.register(name("admin"), password("other password")).await;
        assert!(matches!(admin, Err(AccountsError::UsernameTaken)), "{admin:?}");
        let still = accounts.login(name("alice"), password("correct horse")).await;
        assert!(still.is_ok(), "the first account is untouched: {still:?}");
    }

    #[tokio::test]
    async fn bulk_accounts_are_bounded_cannot_log_in_and_take_their_prefix() {
        let (_dir, accounts) = accounts().await;
        for count in [0, MAX_BULK_ACCOUNTS + 1] {
            let refused = accounts.create_bulk(name("load"), count).await;
            assert!(
                matches!(refused, Err(AccountsError::InvalidCount { max: MAX_BULK_ACCOUNTS })),
                "{count}: {refused:?}"
            );
        }
        let ids = accounts.create_bulk(name("load"), 3).await.unwrap();
        assert_eq!(ids.len(), 3);
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids in name order: {ids:?}");
        let no_password = accounts.login(name("load-1"), password("any password")).await;
        assert!(matches!(no_password, Err(AccountsError::InvalidCredentials)), "{no_password:?}");
        let again = accounts.create_bulk(name("load"), 2).await;
        assert!(matches!(again, Err(AccountsError::UsernameTaken)), "{again:?}");
        let long = name(&"p".repeat(60));
        let too_long = accounts.create_bulk(long.clone(), 1_000).await;
        assert!(matches!(too_long, Err(AccountsError::InvalidPrefix(_))), "p…p-1000 is 65 characters");
        assert_eq!(accounts.create_bulk(long, 999).await.unwrap().len(), 999, "p…p-999 is 64");
    }

    #[tokio::test]
    async fn bootstrap_makes_the_admin_once_and_never_resets_its_password() {
        let (_dir, db) = database();
        let first = Accounts::bootstrap(db.clone(), pool(), name("admin"), password("first-password")).await.unwrap();
        let admin = first.login(name("admin"), password("first-password")).await.unwrap();
        assert_eq!(admin.role, Role::Admin);

        let second = Accounts::bootstrap(db.clone(), pool(), name("admin"), password("second-password")).await.unwrap();
        let again = second.login(name("admin"), password("first-password")).await.unwrap();
        assert_eq!(again, admin, "the admin keeps its password and its tokens");
        assert_eq!(second.cache().recognise(admin.user, Role::Admin, admin.token_version), Ok(None));
        let other = second.login(name("admin"), password("second-password")).await;
        assert!(matches!(other, Err(AccountsError::InvalidCredentials)), "{other:?}");

        second.register(name("root"), password("customer-pass")).await.unwrap();
        let customer = Accounts::bootstrap(db, pool(), name("root"), password("any-password")).await;
        assert!(matches!(customer, Err(AccountsError::NotAdmin(_))), "a customer is never made admin at start");
    }

    #[tokio::test]
    async fn a_password_change_needs_the_current_password_and_revokes_earlier_tokens() {
        let (_dir, accounts) = accounts().await;
        let alice = accounts.register(name("alice"), password("correct horse")).await.unwrap();
        let before = accounts.login(name("alice"), password("correct horse")).await.unwrap();
        let wrong = accounts.change_password(alice, password("not my password"), password("new horse 1")).await;
        assert!(matches!(wrong, Err(AccountsError::InvalidCredentials)), "{wrong:?}");
        assert_eq!(accounts.cache().recognise(alice, Role::Customer, before.token_version), Ok(None));

        let after = accounts.change_password(alice, password("correct horse"), password("new horse 1")).await.unwrap();
        assert!(after.token_version > before.token_version);
        let stale = accounts.cache().recognise(alice, Role::Customer, before.token_version);
        assert_eq!(stale, Err(Unrecognised::Revoked));
        assert_eq!(accounts.login(name("alice"), password("new horse 1")).await.unwrap(), after);
        let old = accounts.login(name("alice"), password("correct horse")).await;
        assert!(matches!(old, Err(AccountsError::InvalidCredentials)), "{old:?}");
    }

    #[tokio::test]
    async fn revoking_raises_the_version_of_an_existing_account_only() {
        let (_dir, accounts) = accounts().await;
        let alice = accounts.register(name("alice"), password("correct horse")).await.unwrap();
        let version = accounts.revoke_tokens(alice).await.unwrap();
        assert_eq!(
            accounts.cache().recognise(alice, Role::Customer, TokenVersion::default()),
            Err(Unrecognised::Revoked)
        );
        assert_eq!(accounts.login(name("alice"), password("correct horse")).await.unwrap().token_version, version);
        let nobody = accounts.revoke_tokens(UserId::try_from(999_999).unwrap()).await;
        assert!(matches!(nobody, Err(AccountsError::NoAccount)), "{nobody:?}");
    }

    #[tokio::test]
    async fn a_ban_stops_a_login_until_lifted_and_is_reloaded_at_start() {
        let (_dir, db) = database();
        let accounts =
            Accounts::bootstrap(db.clone(), pool(), name("admin"), password("admin-password")).await.unwrap();
        let alice = accounts.register(name("alice"), password("correct horse")).await.unwrap();
        let ban = Ban {
            subject: BanSubject::User(alice),
            end: crate::domain::BanEnd::Never,
            reason: None,
            created_at: Timestamp::now(),
        };
        accounts.ban(ban.clone()).await.unwrap();
        let banned = accounts.login(name("alice"), password("correct horse")).await;
        assert!(matches!(banned, Err(AccountsError::Blacklisted(_))), "{banned:?}");
        let wrong = accounts.login(name("alice"), password("wrong horse")).await;
        assert!(matches!(wrong, Err(AccountsError::InvalidCredentials)), "a ban tells nothing without the password");

        let restarted = Accounts::bootstrap(db, pool(), name("admin"), password("admin-password")).await.unwrap();
        assert_eq!(restarted.bans().await.unwrap(), vec![ban.clone()]);
        let banned = restarted.login(name("alice"), password("correct horse")).await;
        assert!(matches!(banned, Err(AccountsError::Blacklisted(_))), "{banned:?}");
        assert!(restarted.unban(ban.subject).await.unwrap());
        assert!(restarted.login(name("alice"), password("correct horse")).await.is_ok());
        assert!(!restarted.unban(ban.subject).await.unwrap(), "nothing left to lift");

        let nobody = Ban { subject: BanSubject::User(UserId::try_from(999_999).unwrap()), ..ban };
        assert!(matches!(restarted.ban(nobody).await, Err(AccountsError::NoAccount)));
    }
}
