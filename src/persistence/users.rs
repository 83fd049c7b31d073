//! The `users` table: accounts, their argon2 hashes and roles.

use std::collections::HashMap;

use diesel::prelude::*;

use super::db::{per_backend, Database, DbError};
use super::schema::users;
use crate::domain::{PasswordHash, Role, Timestamp, UserId, Username};

/// An account as stored. A missing hash means the account cannot log in (accounts made for load tests).
#[derive(Debug, Clone)]
pub struct Account {
    pub id: UserId,
    pub role: Role,
    pub password_hash: Option<PasswordHash>,
}

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
                .select((users::id, users::role, users::password_hash))
                .first::<(i64, String, Option<String>)>(conn)
                .optional()?;
            row.map(|(id, role, hash)| {
                Ok(Account {
                    id: user_id(id)?,
                    role: Role::parse(&role).ok_or_else(|| DbError::Corrupt(format!("users row {id}: bad role")))?,
                    password_hash: hash.map(PasswordHash::from_stored),
                })
            })
            .transpose()
        })
        .await
    }

    /// Makes sure the configured admin exists with this password, creating or updating it.
    pub async fn ensure_admin(&self, name: Username, hash: PasswordHash) -> Result<UserId, DbError> {
        self.write(move |conn| {
            let updated = diesel::update(users::table.filter(users::username.eq(name.as_str())))
                .set((users::password_hash.eq(Some(hash.as_str())), users::role.eq(Role::Admin.as_str())))
                .execute(conn)?;
            if updated == 0 {
                diesel::insert_into(users::table)
                    .values((
                        users::username.eq(name.as_str()),
                        users::password_hash.eq(Some(hash.as_str())),
                        users::role.eq(Role::Admin.as_str()),
                        users::created_at.eq(Timestamp::now().millis()),
                    ))
                    .execute(conn)?;
            }
            let id: i64 = users::table.filter(users::username.eq(name.as_str())).select(users::id).first(conn)?;
            user_id(id)
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

fn user_id(id: i64) -> Result<UserId, DbError> {
    UserId::try_from(id).map_err(|_| DbError::Corrupt(format!("users row {id}: bad id")))
}
