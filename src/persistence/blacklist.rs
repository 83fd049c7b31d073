//! The `blacklist` table: who may not buy or be issued tokens, and until when. The service keeps a copy of it in
//! memory for the purchase path; this is what that copy is loaded from and written through.

use diesel::prelude::*;
use diesel::upsert::excluded;

use super::db::{per_backend, Database, DbError};
use super::schema::blacklist;
use crate::domain::{Ban, BanEnd, BanReason, BanSubject, Timestamp};

type BanRow = (String, String, Option<i64>, Option<String>, i64);

impl Database {
    /// Adds `ban`, or replaces the one on the same subject.
    pub async fn ban(&self, ban: Ban) -> Result<(), DbError> {
        self.write(move |conn| {
            let row = (
                blacklist::kind.eq(ban.subject.kind()),
                blacklist::subject.eq(ban.subject.subject()),
                blacklist::until.eq(ban.end.until().map(Timestamp::millis)),
                blacklist::reason.eq(ban.reason.map(String::from)),
                blacklist::created_at.eq(ban.created_at.millis()),
            );
            per_backend!(conn, conn => diesel::insert_into(blacklist::table)
                .values(row)
                .on_conflict((blacklist::kind, blacklist::subject))
                .do_update()
                .set((
                    blacklist::until.eq(excluded(blacklist::until)),
                    blacklist::reason.eq(excluded(blacklist::reason)),
                    blacklist::created_at.eq(excluded(blacklist::created_at)),
                ))
                .execute(conn))?;
            Ok(())
        })
        .await
    }

    /// Removes the ban on `subject`; whether there was one.
    pub async fn unban(&self, subject: BanSubject) -> Result<bool, DbError> {
        self.write(move |conn| {
            let removed = diesel::delete(
                blacklist::table
                    .filter(blacklist::kind.eq(subject.kind()))
                    .filter(blacklist::subject.eq(subject.subject())),
            )
            .execute(conn)?;
            Ok(removed > 0)
        })
        .await
    }

    /// Every ban that still holds at `now`; those that have ended are deleted.
    pub async fn bans(&self, now: Timestamp) -> Result<Vec<Ban>, DbError> {
        self.write(move |conn| {
            diesel::delete(blacklist::table.filter(blacklist::until.le(now.millis()))).execute(conn)?;
            let rows: Vec<BanRow> = blacklist::table
                .select((
                    blacklist::kind,
                    blacklist::subject,
                    blacklist::until,
                    blacklist::reason,
                    blacklist::created_at,
                ))
                .order((blacklist::kind, blacklist::subject))
                .load(conn)?;
            rows.into_iter().map(ban).collect()
        })
        .await
    }
}

fn ban((kind, subject, until, reason, created_at): BanRow) -> Result<Ban, DbError> {
    let corrupt = |what: &str| DbError::Corrupt(format!("blacklist row {kind} {subject}: {what}"));
    Ok(Ban {
        subject: BanSubject::parse(&kind, &subject).map_err(|_| corrupt("bad subject"))?,
        end: until.map_or(BanEnd::Never, |until| BanEnd::At(Timestamp::from_millis(until))),
        reason: reason.map(BanReason::try_from).transpose().map_err(|_| corrupt("bad reason"))?,
        created_at: Timestamp::from_millis(created_at),
    })
}
