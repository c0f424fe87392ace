//! 2. Any JSON object: accepted, or refused naming a field the client can fix.

use proptest::prelude::*;

use super::bodies::{Verdict, DTOS};
use super::check;
use super::json::object;

#[test]
fn json_objects_are_accepted_or_refused_naming_a_field_the_client_can_fix() {
    for dto in &DTOS {
        check(dto.name, 1_000, object(dto), |body| {
            match (dto.judge)(body.text.as_bytes()) {
                Verdict::Accepted => {}
                Verdict::Unparsed(e) => prop_assert!(
                    e.field == "body" || dto.has(&e.field) || body.keys.contains(&e.field),
                    "{}: parsing blamed {e:?}",
                    dto.name
                ),
                Verdict::Invalid(e) => {
                    prop_assert!(dto.has(&e.field), "{}: conversion blamed {e:?}", dto.name)
                }
            }
            Ok(())
        });
    }
}
