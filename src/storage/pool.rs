//! The PostgreSQL pool, the storage error type and the embedded migrations.
//! Every failure to reach the database becomes [`StoreError::Unavailable`], which the API answers
//! with 503 + Retry-After; only real query failures stay [`StoreError::Query`].

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::Connection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub(crate) type PgPool = Pool<AsyncPgConnection>;
pub(crate) type PooledConn = Object<AsyncPgConnection>;

pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("database query failed")]
    Query(#[source] DieselError),
}

impl From<DieselError> for StoreError {
    fn from(error: DieselError) -> Self {
        match &error {
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )
            | DieselError::BrokenTransactionManager => Self::Unavailable(error.into()),
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
                if is_outage(info.message()) =>
            {
                Self::Unavailable(error.into())
            }
            _ => Self::Query(error),
        }
    }
}

/// True for the server's own words when it is going away or cannot take the query: SQLSTATE
/// classes 57P0x (shutdown, crash, starting up), 57014 for `statement_timeout` (a statement
/// that waited too long, on a lock say, is retried later like an outage) and 53300 (too many
/// connections), which
/// diesel-async reports only as `Unknown` with the message. A server stopped with `pg_ctl stop`
/// ends every session with "terminating connection due to administrator command".
/// The texts are PostgreSQL's English ones (`lc_messages = C`, the default of `initdb
/// --no-locale` and of `make run`'s cluster); a server answering in another language would
/// turn these into 500s, logged in full.
fn is_outage(message: &str) -> bool {
    message.starts_with("terminating connection due to")
        || message.starts_with("canceling statement due to statement timeout")
        || message.starts_with("the database system is")
        || message.starts_with("sorry, too many clients")
}

impl From<PoolError> for StoreError {
    fn from(error: PoolError) -> Self {
        Self::Unavailable(anyhow::anyhow!("{error}"))
    }
}

/// A connection from the pool, or `Unavailable` once `database.acquire_timeout_ms` passes.
pub async fn conn(pool: &PgPool) -> Result<PooledConn, StoreError> {
    Ok(pool.get().await?)
}

/// Applies pending migrations on a fresh connection; returns how many ran.
///
/// Runs on its own OS thread: the blocking migration harness drives the async connection on a
/// private runtime there, which is safe whether or not the caller is inside actix's runtime.
pub fn run_migrations(database_url: &str) -> anyhow::Result<usize> {
    let url = database_url.to_owned();
    std::thread::spawn(move || -> anyhow::Result<usize> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(|e| anyhow::anyhow!("connecting to PostgreSQL: {e}"))?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("running migrations: {e}"))?;
        Ok(applied.len())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the migration thread panicked"))?
}

/// True when `error` is a unique-constraint violation on `constraint`.
pub(crate) fn is_unique_violation(error: &DieselError, constraint: &str) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some(constraint)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_said(message: &str) -> StoreError {
        StoreError::from(DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new(message.to_owned()),
        ))
    }

    #[test]
    fn a_server_going_away_is_an_outage_and_a_bad_query_is_a_bug() {
        for outage in [
            "terminating connection due to administrator command",
            "the database system is shutting down",
            "the database system is starting up",
            "sorry, too many clients already",
            "canceling statement due to statement timeout",
        ] {
            assert!(
                matches!(server_said(outage), StoreError::Unavailable(_)),
                "{outage}"
            );
        }
        assert!(matches!(
            server_said("syntax error at or near \"SELEC\""),
            StoreError::Query(_)
        ));
    }
}
