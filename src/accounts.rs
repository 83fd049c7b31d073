//! Accounts: register, log in, bootstrap the configured admin, and mint the password-less accounts load tests use.
//!
//! It exists so that the HTTP layer asks for accounts the way it asks the `Engine` for sales, and never touches the
//! database itself: `http` → `accounts` → `persistence` → `domain`. The rules live here, beside each other: argon2
//! runs on blocking threads only, a login for a name that does not exist costs as much as one that does (it checks a
//! decoy hash), and bulk accounts come in bounded batches.

use rand::distr::{Alphanumeric, SampleString};

use crate::domain::{PasswordHash, PlainPassword, Role, UserId, Username};
use crate::persistence::{Database, DbError};

/// Most accounts one `create_bulk` call makes.
pub const MAX_BULK_ACCOUNTS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("that username is taken")]
    UsernameTaken,
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("count must be from 1 to {max}")]
    InvalidCount { max: usize },
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("password hashing failed: {0}")]
    Hashing(#[from] tokio::task::JoinError),
}

/// The accounts service: the users table behind it, and the hash that logins for unknown names are checked against.
pub struct Accounts {
    db: Database,
    /// A hash of a throwaway password, checked on logins for unknown names so they take as long as real ones.
    decoy_hash: PasswordHash,
}

impl Accounts {
    /// Makes sure `admin` exists, is an admin, and logs in with `password` (created, or its password and role reset),
    /// and prepares the login decoy.
    pub async fn bootstrap(db: Database, admin: Username, password: PlainPassword) -> Result<Self, AccountsError> {
        let decoy = PlainPassword::try_from(Alphanumeric.sample_string(&mut rand::rng(), 32))
            .expect("32 alphanumerics are a valid password");
        let (hash, decoy_hash) =
            tokio::task::spawn_blocking(move || (PasswordHash::of(&password), PasswordHash::of(&decoy))).await?;
        db.ensure_admin(admin, hash).await?;
        Ok(Self { db, decoy_hash })
    }

    /// Creates a customer account that logs in with `password`.
    pub async fn register(&self, username: Username, password: PlainPassword) -> Result<UserId, AccountsError> {
        let hash = tokio::task::spawn_blocking(move || PasswordHash::of(&password)).await?;
        self.db.create_account(username, hash, Role::Customer).await.map_err(taken_or_failed)
    }

    /// Who logs in with these credentials. Unknown names, accounts that cannot log in and wrong passwords are all
    /// `InvalidCredentials`, after the same argon2 check: the answer's timing does not tell which names exist.
    pub async fn login(&self, username: Username, password: PlainPassword) -> Result<(UserId, Role), AccountsError> {
        let account = self.db.account(username).await?;
        let (stored, identity) = match account {
            Some(account) => (account.password_hash, Some((account.id, account.role))),
            None => (None, None),
        };
        let stored = stored.unwrap_or_else(|| self.decoy_hash.clone());
        let matches = tokio::task::spawn_blocking(move || stored.verify(&password)).await?;
        match identity {
            Some(identity) if matches => Ok(identity),
            _ => Err(AccountsError::InvalidCredentials),
        }
    }

    /// Creates customer accounts `{prefix}-1` … `{prefix}-{count}` that cannot log in, and returns their ids in that
    /// order. For load tests, which must measure purchases, not argon2. `count` is 1 to `MAX_BULK_ACCOUNTS`.
    pub async fn create_bulk(&self, prefix: Username, count: usize) -> Result<Vec<UserId>, AccountsError> {
        if !(1..=MAX_BULK_ACCOUNTS).contains(&count) {
            return Err(AccountsError::InvalidCount { max: MAX_BULK_ACCOUNTS });
        }
        self.db.create_accounts(prefix, count).await.map_err(taken_or_failed)
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

    async fn accounts() -> (tempfile::TempDir, Accounts) {
        let (dir, db) = database();
        let accounts = Accounts::bootstrap(db, name("admin"), password("admin-password")).await.unwrap();
        (dir, accounts)
    }

    #[tokio::test]
    async fn a_registered_customer_logs_in_with_their_password_only() {
        let (_dir, accounts) = accounts().await;
        let alice = accounts.register(name("alice"), password("correct horse")).await.unwrap();
        let logged_in = accounts.login(name("alice"), password("correct horse")).await.unwrap();
        assert_eq!(logged_in, (alice, Role::Customer));
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
    }

    #[tokio::test]
    async fn bootstrap_makes_the_admin_and_resets_its_password() {
        let (_dir, db) = database();
        let first = Accounts::bootstrap(db.clone(), name("admin"), password("first-password")).await.unwrap();
        let (admin, role) = first.login(name("admin"), password("first-password")).await.unwrap();
        assert_eq!(role, Role::Admin);

        let second = Accounts::bootstrap(db, name("admin"), password("second-password")).await.unwrap();
        assert_eq!(second.login(name("admin"), password("second-password")).await.unwrap(), (admin, Role::Admin));
        let old = second.login(name("admin"), password("first-password")).await;
        assert!(matches!(old, Err(AccountsError::InvalidCredentials)), "{old:?}");
    }
}
