//! Keeps writes in the connection's prepared-statement cache.
//!
//! diesel marks every `UPDATE` (and every `INSERT` with a `DEFAULT` value) as unsafe to cache,
//! because one Rust type can render different SQL: a changeset with `Option` fields leaves the
//! `None` ones out. diesel-async then prepares such a statement afresh on each execution: one
//! extra round trip, and a parse and plan in PostgreSQL, per write. Profiling the lifecycle load
//! put about half of PostgreSQL's CPU in exactly that parsing and planning.
//!
//! [`prepared`] wraps a statement so it is cached under its SQL text instead of its Rust type
//! (diesel's own fallback key, which also includes the bind types). Two renderings of one type are
//! two cache entries, so the concern behind the flag does not arise. The number of entries stays
//! small: each call site renders at most a handful of distinct texts.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::QueryResult;

/// A statement cached by its SQL text; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prepared<Q>(Q);

/// Caches `statement`'s prepared form on the connection, keyed by its SQL text.
pub(crate) fn prepared<Q>(statement: Q) -> Prepared<Q> {
    Prepared(statement)
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    // No type key: the cache falls back to the SQL text, which is what makes this safe.
    const HAS_STATIC_QUERY_ID: bool = false;
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::query_builder::QueryFragment;

    #[test]
    fn keys_by_sql_text_not_by_type() {
        use crate::storage::schema::drivers;
        use diesel::prelude::*;
        let update = diesel::update(drivers::table.find(1_i64)).set(drivers::status.eq("online"));
        assert_eq!(update.is_safe_to_cache_prepared(&Pg).ok(), Some(false));
        let wrapped = prepared(update);
        assert_eq!(wrapped.is_safe_to_cache_prepared(&Pg).ok(), Some(true));
        assert!(<Prepared<()> as QueryId>::query_id().is_none());
        let sql = diesel::debug_query::<Pg, _>(&wrapped).to_string();
        assert!(
            sql.starts_with("UPDATE \"drivers\" SET \"status\" = $1"),
            "{sql}"
        );
    }
}
