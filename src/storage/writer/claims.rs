//! A batch's driver claims: which candidates are free, the plan that gives each assignment its
//! first free one in batch order, and the one statement that claims every planned pair.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::{Assigned, Assignment};
use crate::storage::bookings::{assigned_driver_columns, claim_assigned_drivers, AssignRow};
use crate::storage::prepared::prepared;

/// The free drivers among every candidate of a batch's assignments, read without a lock: the
/// plan of the claims. A driver taken after this read is skipped by [`CLAIMS_SQL`], which checks
/// it again under its lock.
const FREE_CANDIDATES_SQL: &str = "\
SELECT id, vehicle_type FROM drivers
WHERE id = ANY($1) AND status = 'online' AND current_booking_id IS NULL";

#[derive(QueryableByName)]
struct FreeDriver {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    vehicle_type: String,
}

/// Every planned (booking, driver) pair of the batch in one statement, as
/// `storage::bookings::assign` does one: a driver is claimed only if it is still online and free
/// on its latest version and no other transaction holds it locked (`SKIP LOCKED`: a batch never
/// waits on a driver, so batches cannot deadlock on drivers), a booking is assigned only while
/// pending under its token, and a driver is taken only for a booking so assigned, so a fenced
/// booking claims nobody and frees its planned driver at the end of the statement. The plan
/// gives each driver to one booking at most, and the partial unique index refuses a second
/// active booking for a driver in any case. The assigned bookings come back with their drivers
/// (`d_*` columns); a planned pair without a row failed its own condition only.
const CLAIMS_SQL: &str = concat!(
    "WITH i AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])
        AS i(id, token, driver, request_id, actor)
), pick AS (
    SELECT d.id FROM drivers d JOIN i ON d.id = i.driver
    WHERE d.status = 'online' AND d.current_booking_id IS NULL
    FOR NO KEY UPDATE OF d SKIP LOCKED
), b AS (
    UPDATE bookings SET status = 'assigned', driver_id = i.driver, assigned_at = $6,
                        updated_at = $6
    FROM i JOIN pick ON pick.id = i.driver
    WHERE bookings.id = i.id AND bookings.fencing_token = i.token AND bookings.status = 'pending'
    RETURNING bookings.*, i.request_id AS i_request, i.actor AS i_actor
), c AS (",
    claim_assigned_drivers!(),
    "), e AS (
    INSERT INTO booking_events
        (booking_id, from_status, to_status, driver_id, node_id, fencing_token, request_id, actor)
    SELECT id, 'pending', status, driver_id, $7, fencing_token, i_request, i_actor FROM b
)
SELECT b.*, ",
    assigned_driver_columns!(),
    "
FROM b JOIN c ON c.current_booking_id = b.id"
);

/// Of the given bookings, those still pending under their tokens: an assignment that claimed
/// nobody is fenced if its booking is not among them.
const STILL_PENDING_SQL: &str = "\
SELECT b.id FROM bookings b JOIN unnest($1::bigint[], $2::bigint[]) AS i(id, token)
    ON b.id = i.id AND b.fencing_token = i.token
WHERE b.status = 'pending'";

#[derive(QueryableByName)]
struct BookingIdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// How many times a batch plans its claims again after drivers it planned were taken meanwhile
/// (by another node, or by a waiting claim of this one): each pass has fewer drivers to plan
/// with, and an assignment still without a driver then searches again on its own.
const CLAIM_PASSES: usize = 3;

/// Claims drivers for `assigns`: reads which of their candidates are free, plans the pairs
/// greedily in batch order (see [`plan_claims`]), claims them in one statement, and plans again
/// without the drivers lost meanwhile. The outcomes by booking id.
pub(super) async fn assign_drivers(
    conn: &mut AsyncPgConnection,
    node_id: &str,
    assigns: &[&Assignment],
) -> diesel::QueryResult<HashMap<i64, Assigned>> {
    let mut outcomes = HashMap::with_capacity(assigns.len());
    if assigns.is_empty() {
        return Ok(outcomes);
    }
    let candidates: Vec<i64> = assigns
        .iter()
        .flat_map(|a| a.candidates.iter().map(|d| d.0))
        .collect();
    let mut free: HashMap<i64, String> =
        prepared(diesel::sql_query(FREE_CANDIDATES_SQL).bind::<Array<BigInt>, _>(candidates))
            .load::<FreeDriver>(conn)
            .await?
            .into_iter()
            .map(|d| (d.id, d.vehicle_type))
            .collect();
    let mut waiting: Vec<&Assignment> = assigns.to_vec();
    for _ in 0..CLAIM_PASSES {
        let plan: Vec<(&Assignment, i64)> = waiting
            .iter()
            .zip(plan_claims(&waiting, &free))
            .filter_map(|(a, driver)| driver.map(|d| (*a, d)))
            .collect();
        if plan.is_empty() {
            break;
        }
        let rows: Vec<AssignRow> = claim_pairs(conn, node_id, &plan).await?;
        for row in rows {
            let (booking, driver) = row.split();
            free.remove(&driver.id);
            outcomes.insert(
                booking.id,
                Assigned::Assigned(Box::new(booking), Box::new(driver)),
            );
        }
        let failed: Vec<(&Assignment, i64)> = plan
            .into_iter()
            .filter(|(a, _)| !outcomes.contains_key(&a.booking_id))
            .collect();
        if failed.is_empty() {
            break;
        }
        // A planned pair failed either its booking's condition (fenced: its driver may still be
        // free) or its driver's (taken or locked meanwhile: plan without it).
        let pending = still_pending(conn, failed.iter().map(|(a, _)| *a)).await?;
        for (assign, driver) in failed {
            if pending.contains(&assign.booking_id) {
                free.remove(&driver);
            } else {
                outcomes.insert(assign.booking_id, Assigned::Fenced);
            }
        }
        waiting.retain(|a| !outcomes.contains_key(&a.booking_id));
    }
    waiting.retain(|a| !outcomes.contains_key(&a.booking_id));
    if !waiting.is_empty() {
        let pending = still_pending(conn, waiting.iter().copied()).await?;
        for assign in waiting {
            let outcome = match pending.contains(&assign.booking_id) {
                true => Assigned::NoneFree,
                false => Assigned::Fenced,
            };
            outcomes.insert(assign.booking_id, outcome);
        }
    }
    Ok(outcomes)
}

/// For each assignment in order, its first candidate that is free, of its vehicle class if it
/// asks for one, and not planned for an earlier assignment: the batch's claims are as greedy in
/// batch order as one claim after another would be, and no driver is planned twice.
fn plan_claims(assigns: &[&Assignment], free: &HashMap<i64, String>) -> Vec<Option<i64>> {
    let mut planned = HashSet::with_capacity(assigns.len());
    assigns
        .iter()
        .map(|assign| {
            let fits = |driver: &i64| {
                free.get(driver).is_some_and(|class| {
                    assign
                        .vehicle_type
                        .as_deref()
                        .is_none_or(|wanted| wanted == class)
                }) && !planned.contains(driver)
            };
            let pick = assign.candidates.iter().map(|d| d.0).find(fits);
            if let Some(driver) = pick {
                planned.insert(driver);
            }
            pick
        })
        .collect()
}

/// The planned pairs through [`CLAIMS_SQL`]: the rows of those assigned.
async fn claim_pairs(
    conn: &mut AsyncPgConnection,
    node_id: &str,
    plan: &[(&Assignment, i64)],
) -> diesel::QueryResult<Vec<AssignRow>> {
    prepared(
        diesel::sql_query(CLAIMS_SQL)
            .bind::<Array<BigInt>, _>(plan.iter().map(|(a, _)| a.booking_id).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(plan.iter().map(|(a, _)| a.token).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(plan.iter().map(|(_, d)| *d).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(
                plan.iter()
                    .map(|(a, _)| a.request_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(
                plan.iter()
                    .map(|(a, _)| a.actor.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind::<Timestamptz, _>(Utc::now())
            .bind::<Text, _>(node_id),
    )
    .load(conn)
    .await
}

/// The ids among `assigns`' bookings still pending under their tokens.
async fn still_pending<'a>(
    conn: &mut AsyncPgConnection,
    assigns: impl Iterator<Item = &'a Assignment>,
) -> diesel::QueryResult<HashSet<i64>> {
    let (ids, tokens): (Vec<i64>, Vec<i64>) = assigns.map(|a| (a.booking_id, a.token)).unzip();
    let rows: Vec<BookingIdRow> = prepared(
        diesel::sql_query(STILL_PENDING_SQL)
            .bind::<Array<BigInt>, _>(ids)
            .bind::<Array<BigInt>, _>(tokens),
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|row| row.id).collect())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::domain::ids::DriverId;

    fn assignment(booking_id: i64, candidates: &[i64], vehicle_type: Option<&str>) -> Assignment {
        Assignment {
            booking_id,
            token: 1,
            candidates: candidates.iter().map(|&d| DriverId(d)).collect(),
            vehicle_type: vehicle_type.map(str::to_owned),
            request_id: format!("req-{booking_id}"),
            actor: None,
            deadline: Instant::now(),
            answer: None,
        }
    }

    fn free(drivers: &[(i64, &str)]) -> HashMap<i64, String> {
        drivers
            .iter()
            .map(|&(id, class)| (id, class.to_owned()))
            .collect()
    }

    #[test]
    fn plan_is_greedy_in_batch_order_and_never_plans_a_driver_twice() {
        let first = assignment(1, &[10, 11], None);
        let second = assignment(2, &[10, 11, 12], None);
        let third = assignment(3, &[10, 11], None);
        let plan = plan_claims(
            &[&first, &second, &third],
            &free(&[(10, "standard"), (11, "standard"), (12, "standard")]),
        );
        assert_eq!(plan, vec![Some(10), Some(11), None]);
    }

    #[test]
    fn plan_skips_drivers_not_free_and_of_another_class() {
        let premium = assignment(1, &[10, 11, 12], Some("premium"));
        let any = assignment(2, &[10, 11, 12], None);
        let plan = plan_claims(
            &[&premium, &any],
            &free(&[(11, "standard"), (12, "premium")]),
        );
        assert_eq!(plan, vec![Some(12), Some(11)]);
    }

    #[test]
    fn plan_keeps_each_assignments_own_order_of_preference() {
        let near_first = assignment(1, &[12, 11, 10], None);
        let plan = plan_claims(&[&near_first], &free(&[(10, "standard"), (11, "standard")]));
        assert_eq!(plan, vec![Some(11)]);
    }
}
