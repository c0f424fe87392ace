//! Validated value types. Wire DTOs convert into these once, at the edge; past that point a
//! coordinate is in range, a fare is positive whole cents and a phone number is well formed.

use std::fmt;

/// A refused input value, naming the field so the client can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// A WGS84 position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    pub lat: f64,
    pub lng: f64,
}

impl GeoPoint {
    /// Grid, in degrees, that [`GeoPoint::coarse`] snaps to: 0.002° is about 220 m of latitude.
    pub(crate) const COARSE_DEGREES: f64 = 0.002;

    /// Great-circle distance to `other`, km (haversine, on the mean Earth radius).
    pub(crate) fn distance_km(self, other: GeoPoint) -> f64 {
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlng = (other.lng - self.lng).to_radians();
        let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlng / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
    }

    /// This point snapped to a [`Self::COARSE_DEGREES`] grid: where a car is, as riders and
    /// drivers may see it, not where it is to the metre.
    pub(crate) fn coarse(self) -> Self {
        let snap = |x: f64| (x / Self::COARSE_DEGREES).round() * Self::COARSE_DEGREES;
        Self {
            lat: snap(self.lat).clamp(-90.0, 90.0),
            lng: snap(self.lng).clamp(-180.0, 180.0),
        }
    }

    /// `lat_field` / `lng_field` name the input fields in errors.
    pub fn new(lat: f64, lng: f64, lat_field: &str, lng_field: &str) -> Result<Self, FieldError> {
        if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
            return Err(FieldError::new(lat_field, "must be between -90 and 90"));
        }
        if !(lng.is_finite() && (-180.0..=180.0).contains(&lng)) {
            return Err(FieldError::new(lng_field, "must be between -180 and 180"));
        }
        Ok(Self { lat, lng })
    }

    /// The latitude and longitude ranges that hold every point within `radius_km` of this one:
    /// what a search must scan before it measures distances. Near a pole the circle covers every
    /// longitude; across the antimeridian its longitudes come in two ranges.
    pub(crate) fn search_box(self, radius_km: f64) -> SearchBox {
        // A hair wider than the circle (about a millimetre), so rounding never leaves a point on
        // its edge outside.
        let angle = (radius_km / EARTH_RADIUS_KM) * 1.000_001 + 1e-10;
        let span = angle.to_degrees();
        let (lat_min, lat_max) = ((self.lat - span).max(-90.0), (self.lat + span).min(90.0));
        let every_longitude = SearchBox {
            lat: (lat_min, lat_max),
            lng: [(-180.0, 180.0), EMPTY_RANGE],
        };
        if lat_min <= -90.0 || lat_max >= 90.0 {
            return every_longitude;
        }
        let ratio = angle.sin() / self.lat.to_radians().cos();
        if ratio >= 1.0 {
            return every_longitude;
        }
        let half = ratio.asin().to_degrees();
        let (lo, hi) = (self.lng - half, self.lng + half);
        let lng = if lo < -180.0 {
            [(lo + 360.0, 180.0), (-180.0, hi)]
        } else if hi > 180.0 {
            [(lo, 180.0), (-180.0, hi - 360.0)]
        } else {
            [(lo, hi), EMPTY_RANGE]
        };
        SearchBox {
            lat: (lat_min, lat_max),
            lng,
        }
    }
}

/// The mean Earth radius the SQL distance uses.
pub(crate) const EARTH_RADIUS_KM: f64 = 6371.0088;

/// A range no longitude falls in.
const EMPTY_RANGE: (f64, f64) = (1.0, 0.0);

/// Latitude range and up to two longitude ranges (inclusive; an unused one is empty, min > max)
/// that together hold a search circle. See [`GeoPoint::search_box`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SearchBox {
    pub lat: (f64, f64),
    pub lng: [(f64, f64); 2],
}

/// A positive amount of money in whole cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fare(i64);

impl Fare {
    /// The largest fare we accept (guards against unit mix-ups such as cents sent as dollars).
    pub(crate) const MAX_CENTS: i64 = 10_000_000;

    /// Smallest and largest amounts accepted, as the OpenAPI document states them.
    pub(crate) const MIN_AMOUNT: f64 = 0.01;
    pub(crate) const MAX_AMOUNT: f64 = Self::MAX_CENTS as f64 / 100.0;

    /// Accepts an amount from 0.01 to 100000, rounded to whole cents.
    pub fn from_amount(amount: f64, field: &str) -> Result<Self, FieldError> {
        if !(amount.is_finite() && (Self::MIN_AMOUNT..=Self::MAX_AMOUNT).contains(&amount)) {
            return Err(FieldError::new(field, "must be between 0.01 and 100000.00"));
        }
        Ok(Self((amount * 100.0).round() as i64))
    }

    pub(crate) const fn from_cents(cents: i64) -> Self {
        Self(cents)
    }

    pub(crate) fn cents(self) -> i64 {
        self.0
    }

    pub(crate) fn as_amount(self) -> f64 {
        self.0 as f64 / 100.0
    }

    /// A driver's `actual_fare` for a ride estimated at `estimated`: at most `ratio` times the
    /// estimate. Above that, only an operator may set it.
    pub fn within(self, estimated: Fare, ratio: f64, field: &str) -> Result<(), FieldError> {
        // The epsilon keeps a ratio like 1.15 from losing a cent to binary fractions.
        let most = Fare((estimated.0 as f64 * ratio + 1e-6).floor() as i64);
        if self.0 <= most.0 {
            return Ok(());
        }
        Err(FieldError::new(
            field,
            format!(
                "may be at most {ratio} times the estimated fare ({:.2}), that is {:.2}; \
                 an operator may set more",
                estimated.as_amount(),
                most.as_amount()
            ),
        ))
    }
}

impl fmt::Display for Fare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// Free text: at most `max_chars` characters as sent, no control characters, not only
/// whitespace; stored trimmed. (The limits apply to the text as sent, so they are exactly what the
/// OpenAPI document says: `maxLength` and [`TEXT_PATTERN`].)
pub(crate) fn text(value: &str, field: &str, max_chars: usize) -> Result<String, FieldError> {
    optional_text(value, field, max_chars)?
        .ok_or_else(|| FieldError::new(field, "must not be empty"))
}

/// [`text`] where blank means "none": the same limits on what is sent, `None` if only whitespace.
pub(crate) fn optional_text(
    value: &str,
    field: &str,
    max_chars: usize,
) -> Result<Option<String>, FieldError> {
    if value.chars().count() > max_chars {
        return Err(FieldError::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    let trimmed = value.trim();
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

/// [`text`] as a regular expression: no control characters, and at least one that is not
/// whitespace.
#[cfg(test)]
pub(crate) const TEXT_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";

/// [`phone`] as a regular expression (its length limit is `maxLength` 32).
#[cfg(test)]
pub(crate) const PHONE_PATTERN: &str = r"^[+ ().-]*([0-9][+ ().-]*){3,}$";

/// [`email`] as a regular expression (its length limit is `maxLength` 320).
#[cfg(test)]
pub(crate) const EMAIL_PATTERN: &str = r"^[^@\s\u0000-\u001f\u007f-\u009f]+@[^.\s\u0000-\u001f\u007f-\u009f][^\s\u0000-\u001f\u007f-\u009f]*\.[^\s\u0000-\u001f\u007f-\u009f]*$";

/// [`vehicle_type`] as a regular expression.
#[cfg(test)]
pub(crate) const VEHICLE_TYPE_PATTERN: &str = r"^[a-z0-9_-]{1,32}$";

/// A person's contact details, validated: name, phone and optional email.
pub(crate) fn contact(
    name: &str,
    phone_number: &str,
    email_address: Option<&str>,
) -> Result<(String, String, Option<String>), FieldError> {
    Ok((
        text(name, "name", 200)?,
        phone(phone_number, "phone")?,
        email_address.map(|e| email(e, "email")).transpose()?,
    ))
}

/// A phone number: digits with optional `+`, spaces, dashes, dots and parentheses; 3 to 32 chars.
pub(crate) fn phone(value: &str, field: &str) -> Result<String, FieldError> {
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let allowed = value
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')'));
    if !allowed || digits < 3 || value.len() > 32 {
        return Err(FieldError::new(
            field,
            "must be a phone number (3 to 32 digits and + - . ( ) spaces)",
        ));
    }
    Ok(value.trim().to_owned())
}

/// A minimal shape check; real verification is a confirmation mail, not a regex.
pub(crate) fn email(value: &str, field: &str) -> Result<String, FieldError> {
    let well_formed = value.chars().count() <= 320
        && value.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !host.starts_with('.')
        })
        && !value.contains(|c: char| c.is_whitespace() || c.is_control());
    if !well_formed {
        return Err(FieldError::new(field, "must be an email address"));
    }
    Ok(value.to_owned())
}

/// A vehicle class such as `standard`, `premium` or `xl`: lowercase letters, digits, `_`, `-`.
pub(crate) fn vehicle_type(value: &str, field: &str) -> Result<String, FieldError> {
    let ok = !value.is_empty()
        && value.len() <= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        return Err(FieldError::new(
            field,
            "must be 1 to 32 lowercase letters, digits, '_' or '-'",
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coarse_point_is_on_the_grid_and_near_the_point() {
        for (lat, lng) in [
            (40.712_834, -74.006_015),
            (89.9999, 179.9999),
            (-33.9, 18.42),
        ] {
            let coarse = GeoPoint { lat, lng }.coarse();
            for (exact, snapped) in [(lat, coarse.lat), (lng, coarse.lng)] {
                assert!((exact - snapped).abs() <= GeoPoint::COARSE_DEGREES / 2.0 + 1e-9);
                let steps = snapped / GeoPoint::COARSE_DEGREES;
                assert!((steps - steps.round()).abs() < 1e-6, "{snapped}");
            }
        }
    }

    #[test]
    fn an_actual_fare_may_reach_the_ratio_times_the_estimate_and_no_more() {
        let estimate = Fare::from_cents(2550);
        assert!(Fare::from_cents(7650)
            .within(estimate, 3.0, "actual_fare")
            .is_ok());
        let above = Fare::from_cents(7651).within(estimate, 3.0, "actual_fare");
        assert_eq!(above.map_err(|e| e.field), Err("actual_fare".to_owned()));
        assert!(Fare::from_cents(1)
            .within(estimate, 3.0, "actual_fare")
            .is_ok());
    }

    #[test]
    fn coordinates_out_of_range_name_their_field() {
        assert!(GeoPoint::new(40.7, -74.0, "lat", "lng").is_ok());
        assert_eq!(
            GeoPoint::new(91.0, 0.0, "pickup_lat", "pickup_lng").map_err(|e| e.field),
            Err("pickup_lat".into())
        );
        assert_eq!(
            GeoPoint::new(0.0, -181.0, "lat", "lng").map_err(|e| e.field),
            Err("lng".into())
        );
    }

    /// The point `km` away from `from` along `bearing` (degrees), on the sphere the SQL uses.
    fn travel(from: GeoPoint, km: f64, bearing: f64) -> (f64, f64) {
        let (lat, lng, b) = (
            from.lat.to_radians(),
            from.lng.to_radians(),
            bearing.to_radians(),
        );
        let d = km / EARTH_RADIUS_KM;
        let lat2 = (lat.sin() * d.cos() + lat.cos() * d.sin() * b.cos()).asin();
        let lng2 = lng + (b.sin() * d.sin() * lat.cos()).atan2(d.cos() - lat.sin() * lat2.sin());
        let lng2 = (lng2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
        (lat2.to_degrees(), lng2)
    }

    fn contains(area: SearchBox, (lat, lng): (f64, f64)) -> bool {
        let within = |(lo, hi): (f64, f64), x: f64| lo <= x && x <= hi;
        within(area.lat, lat) && area.lng.iter().any(|range| within(*range, lng))
    }

    #[test]
    fn search_boxes_hold_the_whole_circle_at_poles_and_across_the_antimeridian() {
        let centres = [
            (40.7128, -74.006),
            (0.0, 180.0),
            (0.0, -180.0),
            (10.0, 179.99),
            (-10.0, -179.99),
            (89.0, 59.0),
            (-89.0, 59.045722),
            (90.0, 0.0),
            (-90.0, 180.0),
            (85.06, -180.0),
            (-84.9, 179.9),
            (60.0, 0.0),
        ];
        for (lat, lng) in centres {
            let at = GeoPoint::new(lat, lng, "lat", "lng").unwrap();
            for radius in [0.001, 1.0, 5.0, 100.0] {
                let area = at.search_box(radius);
                for step in 0..72 {
                    for fraction in [0.5, 0.999, 1.0] {
                        let point = travel(at, radius * fraction, f64::from(step) * 5.0);
                        assert!(
                            contains(area, point),
                            "{point:?} at {radius} km of ({lat}, {lng}) is outside {area:?}"
                        );
                    }
                }
                let far = travel(at, radius * 3.0 + 1.0, 45.0);
                if lat.abs() < 80.0 {
                    assert!(!contains(area, far), "{far:?} is inside {area:?}");
                }
            }
        }
    }

    #[test]
    fn fares_must_be_positive_cents() {
        assert_eq!(Fare::from_amount(15.5, "f").map(Fare::cents), Ok(1550));
        assert_eq!(
            Fare::from_amount(16.25, "f").map(|f| f.to_string()),
            Ok("16.25".into())
        );
        for bad in [0.0, -1.0, 0.001, f64::INFINITY, 1e9] {
            assert!(Fare::from_amount(bad, "f").is_err(), "{bad}");
        }
    }

    #[test]
    fn text_fields_are_trimmed_and_bounded() {
        assert_eq!(text("  Ann ", "name", 10), Ok("Ann".into()));
        assert!(text("   ", "name", 10).is_err());
        assert!(text("a\u{0}b", "name", 10).is_err());
        assert!(email("a\u{0}@b.co", "email").is_err());
        assert!(phone("+1 (212) 555-0100", "phone").is_ok());
        assert!(phone("call me", "phone").is_err());
        assert!(email("a@b.co", "email").is_ok());
        assert!(email("nope", "email").is_err());
        assert!(vehicle_type("xl", "vehicle_type").is_ok());
        assert!(vehicle_type("XL!", "vehicle_type").is_err());
    }
}
