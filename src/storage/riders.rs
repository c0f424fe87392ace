//! Rider rows.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::models::Rider;
use super::prepared::prepared;
use crate::domain::ids::RiderId;

/// A validated new rider.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = super::schema::riders)]
pub(crate) struct NewRider {
    pub name: String,
    pub phone: String,
    pub email: Option<String>,
}

/// Inserts a rider; a duplicate phone is a unique violation on `riders_phone_key`.
pub async fn insert(conn: &mut AsyncPgConnection, rider: &NewRider) -> QueryResult<Rider> {
    use super::schema::riders::dsl::*;
    prepared(
        diesel::insert_into(riders)
            .values(rider)
            .returning(Rider::as_returning()),
    )
    .get_result(conn)
    .await
}

pub async fn find(conn: &mut AsyncPgConnection, rider_id: RiderId) -> QueryResult<Option<Rider>> {
    use super::schema::riders::dsl::*;
    riders
        .find(rider_id.0)
        .select(Rider::as_select())
        .first(conn)
        .await
        .optional()
}
