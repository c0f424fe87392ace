//! 4. Published patterns: they accept exactly what the validators in `domain::values` accept.

use proptest::prelude::*;
use regex::Regex;

use super::check;
use super::strings::probe_string;
use crate::domain::values::{
    self, EMAIL_PATTERN, PHONE_PATTERN, TEXT_PATTERN, VEHICLE_TYPE_PATTERN,
};

#[test]
fn published_patterns_accept_exactly_what_the_validators_accept() {
    let text = Regex::new(TEXT_PATTERN).unwrap();
    let phone = Regex::new(PHONE_PATTERN).unwrap();
    let email = Regex::new(EMAIL_PATTERN).unwrap();
    let vehicle_type = Regex::new(VEHICLE_TYPE_PATTERN).unwrap();
    check("patterns", 2_000, probe_string(), |s| {
        // `maxLength` counts characters. `phone` and `vehicle_type` measure bytes, which is the
        // same for every string their patterns match.
        let chars = s.chars().count();
        prop_assert_eq!(
            values::text(&s, "f", 200).is_ok(),
            text.is_match(&s) && chars <= 200,
            "text"
        );
        prop_assert_eq!(
            values::phone(&s, "f").is_ok(),
            phone.is_match(&s) && chars <= 32,
            "phone"
        );
        prop_assert_eq!(
            values::email(&s, "f").is_ok(),
            email.is_match(&s) && chars <= 320,
            "email"
        );
        prop_assert_eq!(
            values::vehicle_type(&s, "f").is_ok(),
            vehicle_type.is_match(&s),
            "vehicle_type"
        );
        Ok(())
    });
}

/// The patterns' `\s` and control ranges are `char::is_whitespace` and `char::is_control` (the
/// validators' tests) for every character, not only the ones the strings above happen to hold.
#[test]
fn pattern_classes_are_the_validators_classes_for_every_char() {
    let every: String = (0..=u32::from(char::MAX))
        .filter_map(char::from_u32)
        .collect();
    let matching = |class: &str| -> String {
        let class = Regex::new(class).unwrap();
        class.find_iter(&every).map(|m| m.as_str()).collect()
    };
    let holding = |std: fn(char) -> bool| -> String { every.chars().filter(|&c| std(c)).collect() };
    assert_eq!(matching(r"\s"), holding(char::is_whitespace));
    let controls = r"[\u0000-\u001f\u007f-\u009f]";
    assert_eq!(matching(controls), holding(char::is_control));
}
