//! The `users` table: accounts, their argon2 hashes, roles and token versions.

use std::collections::HashMap;

use diesel::prelude::*;

use super::db::{per_backend, AnyConnection, Database, DbError};
use super::schema::users;
use crate::domain::{PasswordHash, Role, Timestamp, TokenVersion, UserId, Username};

/// An account as stored. A missing hash means the account cannot log in (accounts made for load tests).
#[derive(Debug, Clone)]
pub struct Account {
    pub id: UserId,
    pub role: Role,
    pub password_hash: Option<PasswordHash>,
    pub token_version: TokenVersion,
}

/// What the purchase path needs to know of an account, for the in-memory copy of every account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountStanding {
    pub id: UserId,
    pub role: Role,
    pub token_version: TokenVersion,
}

type AccountRow = (i64, String, Option<String>, i64);

impl Database {
    /// Creates an account; a taken name is `DbError::is_unique_violation`.
    pub async fn create_account(&self, name: Username, hash: PasswordHash, role: Role) -> Result<UserId, DbError> {
        self.write(move |conn| {
            diesel::insert_into(users::table)
                .values((
                    users::username.eq(name.as_str()),
                    users::password_hash.eq(Some(hash.as_str())),
                    users::role.eq(role.as_str()),
                    users::created_at.eq(Timestamp::now().millis()),
                ))
                .execute(conn)?;
            let id: i64 = users::table.filter(users::username.eq(name.as_str())).select(users::id).first(conn)?;
            user_id(id)
        })
        .await
    }

    pub async fn account(&self, name: Username) -> Result<Option<Account>, DbError> {
        self.run(move |conn| {
            let row = users::table
                .filter(users::username.eq(name.as_str()))
                .select((users::id, users::role, users::password_hash, users::token_version))
                .first::<AccountRow>(conn)
                .optional()?;
            row.map(account).transpose()
        })
        .await
    }

    pub async fn account_by_id(&self, id: UserId) -> Result<Option<Account>, DbError> {
        self.run(move |conn| {
            let row = users::table
                .find(id.get())
                .select((users::id, users::role, users::password_hash, users::token_version))
                .first::<AccountRow>(conn)
                .optional()?;
            row.map(account).transpose()
        })
        .await
    }

    /// Every account's standing, for the cache the purchase path checks tokens against.
    pub async fn standings(&self) -> Result<Vec<AccountStanding>, DbError> {
        self.run(move |conn| {
            let rows: Vec<(i64, String, i64)> =
                users::table.select((users::id, users::role, users::token_version)).load(conn)?;
            rows.into_iter()
                .map(|(id, role, version)| {
                    Ok(AccountStanding {
                        id: user_id(id)?,
                        role: role_of(id, &role)?,
                        token_version: version_of(id, version)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Replaces `id`'s password and raises its token version, so that every token issued before stops working;
    /// the new version, or `None` if there is no such account.
    pub async fn set_password(&self, id: UserId, hash: PasswordHash) -> Result<Option<TokenVersion>, DbError> {
        self.write(move |conn| {
            let updated = diesel::update(users::table.find(id.get()))
                .set((users::password_hash.eq(Some(hash.as_str())), users::token_version.eq(users::token_version + 1)))
                .execute(conn)?;
            current_version(conn, id, updated)
        })
        .await
    }

    /// Raises `id`'s token version; the new version, or `None` if there is no such account.
    pub async fn revoke_tokens(&self, id: UserId) -> Result<Option<TokenVersion>, DbError> {
        self.write(move |conn| {
            let updated = diesel::update(users::table.find(id.get()))
                .set(users::token_version.eq(users::token_version + 1))
                .execute(conn)?;
            current_version(conn, id, updated)
        })
        .await
    }

    /// Creates customer accounts `{prefix}-1` … `{prefix}-{count}` that cannot log in, in one transaction, and
    /// returns their ids in that order. For load tests, which must not spend their time in argon2.
    pub async fn create_accounts(&self, prefix: Username, count: usize) -> Result<Vec<UserId>, DbError> {
        let names: Vec<String> = (1..=count).map(|n| format!("{}-{n}", prefix.as_str())).collect();
        self.write(move |conn| {
            let now = Timestamp::now().millis();
            per_backend!(conn, conn => conn.transaction(|conn| {
                for chunk in names.chunks(1_000) {
                    let rows: Vec<_> = chunk
                        .iter()
                        .map(|name| {
                            (users::username.eq(name), users::role.eq(Role::Customer.as_str()), users::created_at.eq(now))
                        })
                        .collect();
                    diesel::insert_into(users::table).values(rows).execute(conn)?;
                }
                let mut ids = HashMap::with_capacity(names.len());
                for chunk in names.chunks(1_000) {
                    let found: Vec<(String, i64)> = users::table
                        .filter(users::username.eq_any(chunk))
                        .select((users::username, users::id))
                        .load(conn)?;
                    ids.extend(found);
                }
                diesel::QueryResult::Ok(ids)
            }))
            .map_err(DbError::from)
            .and_then(|ids| names.iter().map(|name| user_id(ids.get(name).copied().unwrap_or(0))).collect())
        })
        .await
    }
}

fn account((id, role, hash, version): AccountRow) -> Result<Account, DbError> {
    Ok(Account {
        id: user_id(id)?,
        role: role_of(id, &role)?,
        password_hash: hash.map(PasswordHash::from_stored),
        token_version: version_of(id, version)?,
    })
}

fn current_version(conn: &mut AnyConnection, id: UserId, updated: usize) -> Result<Option<TokenVersion>, DbError> {
    if updated == 0 {
        return Ok(None);
    }
    let version: i64 = users::table.find(id.get()).select(users::token_version).first(conn)?;
    version_of(id.get(), version).map(Some)
}

fn role_of(id: i64, role: &str) -> Result<Role, DbError> {
    Role::parse(role).ok_or_else(|| DbError::Corrupt(format!("users row {id}: bad role")))
}

fn version_of(id: i64, version: i64) -> Result<TokenVersion, DbError> {
    TokenVersion::try_from(version).map_err(|_| DbError::Corrupt(format!("users row {id}: bad token version")))
}

fn user_id(id: i64) -> Result<UserId, DbError> {
    UserId::try_from(id).map_err(|_| DbError::Corrupt(format!("users row {id}: bad id")))
}
