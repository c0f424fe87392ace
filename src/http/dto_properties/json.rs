//! Generators, second part: JSON values, field values as a client might write them, and objects
//! for a DTO; then the comparisons of what was read with what was sent.

use std::collections::HashSet;
use std::fmt;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;

use super::bodies::{quoted, Dto, Kind};
use super::strings::{email, name, phone, probe_char, vehicle_type};
use crate::domain::values::{Fare, FieldError};

/// A JSON value kept in parts, so numbers are written as a client might (`7.0`, `1e400`).
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Number(String),
    Text(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::Text(s) => out.push_str(&quoted(s)),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(members) => write_object(members, out),
        }
    }
}

fn write_object(members: &[(String, Json)], out: &mut String) {
    out.push('{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quoted(key));
        out.push(':');
        value.write(out);
    }
    out.push('}');
}

/// Numbers at the edges of the fields' ranges and of what f64 and i64 hold (`1e400` is out of
/// range for serde_json; 30 digits is beyond u64).
const EDGE_NUMBERS: &str = "0 -0 -0.0 1 7.0 7e0 7.5 0.01 0.005 100000 100000.01 90 -90.0 \
    90.0000000001 180 -180.5 1e308 -1e308 1.7976931348623157e308 5e-324 1e400 -1e400 1e-400 \
    9007199254740993 9223372036854775807 9223372036854775808 -9223372036854775809 \
    18446744073709551616 123456789012345678901234567890";

fn number_text() -> impl Strategy<Value = String> + Clone {
    let finite = any::<f64>().prop_filter("finite", |f| f.is_finite());
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| format!("{n}.0")),
        finite.clone().prop_map(|f| format!("{f:?}")),
        finite.prop_map(|f| format!("{f}")),
        select(EDGE_NUMBERS.split(' ').collect::<Vec<_>>()).prop_map(str::to_owned),
    ]
}

fn text_value() -> impl Strategy<Value = String> + Clone {
    let meaningful = select(
        &[
            "",
            " ",
            "online",
            "offline",
            "busy",
            "rider",
            "driver",
            "standard",
            "XL",
            "Ann",
            "+1 (212) 555-0100",
            "12",
            "a@b.co",
            "@b.co",
            "a@.co",
        ][..],
    );
    let short = vec(probe_char(), 0..16).prop_map(String::from_iter);
    prop_oneof![meaningful.prop_map(str::to_owned), short, any::<String>()]
}

/// An unknown key that serde's error message can carry whole (see
/// `an_unknown_key_is_named_as_sent` for the others).
fn unknown_key() -> impl Strategy<Value = String> + Clone {
    let listed = select(
        &[
            "id",
            "Name",
            "riderId",
            "RIDER_ID",
            "rider_id ",
            "lat\u{0}",
            "é",
            "\\",
            "\"",
            "extra",
        ][..],
    );
    prop_oneof![
        listed.prop_map(str::to_owned),
        "[a-z_]{1,12}",
        any::<String>()
    ]
    .prop_filter("named whole in serde's message", |key| {
        !key.is_empty() && !key.contains('`') && !key.contains(" at line ")
    })
}

fn json() -> impl Strategy<Value = Json> + Clone {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number_text().prop_map(Json::Number),
        text_value().prop_map(Json::Text),
    ];
    leaf.prop_recursive(4, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Json::Array),
            vec((unknown_key(), inner), 0..4).prop_map(Json::Object),
        ]
    })
}

/// A generated object body: its text, and the keys at its top level.
#[derive(Clone)]
pub(super) struct Object {
    pub(super) text: String,
    pub(super) keys: Vec<String>,
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A value for a field of `kind`: valid, or at an edge of its range.
fn plausible(kind: Kind) -> BoxedStrategy<Json> {
    fn written<T>((_, text): (T, String)) -> Json {
        Json::Number(text)
    }
    match kind {
        Kind::Id => id().prop_map(written).boxed(),
        Kind::Latitude => coordinate(90.0).prop_map(written).boxed(),
        Kind::Longitude => coordinate(180.0).prop_map(written).boxed(),
        Kind::Amount => fare().prop_map(written).boxed(),
        Kind::Name => name(200).prop_map(Json::Text).boxed(),
        Kind::Phone => phone().prop_map(Json::Text).boxed(),
        Kind::Email => email().prop_map(Json::Text).boxed(),
        Kind::VehicleType => vehicle_type().prop_map(Json::Text).boxed(),
        Kind::Choice(words) => select(words)
            .prop_map(|word| Json::Text(word.to_owned()))
            .boxed(),
    }
}

/// A value of the JSON type a field of `kind` takes, valid or not.
fn same_type(kind: Kind) -> BoxedStrategy<Json> {
    match kind {
        Kind::Id | Kind::Latitude | Kind::Longitude | Kind::Amount => {
            number_text().prop_map(Json::Number).boxed()
        }
        _ => text_value().prop_map(Json::Text).boxed(),
    }
}

/// An object for `dto`: most of its fields, each usually with a plausible value (valid or at
/// an edge), otherwise a wrong one of the same JSON type or anything; sometimes unknown keys
/// too; in any order; each key once (repeats are `a_repeated_key_is_blamed_on_that_key`'s).
pub(super) fn object(dto: &'static Dto) -> impl Strategy<Value = Object> {
    let known: Vec<_> = dto
        .fields
        .iter()
        .map(|&(field, kind)| {
            let value = prop_oneof![8 => plausible(kind), 1 => same_type(kind), 1 => json()];
            option::weighted(0.95, value)
                .prop_map(move |value| value.map(|value| (field.to_owned(), value)))
        })
        .collect();
    let unknown = prop_oneof![3 => Just(Vec::new()), 1 => vec((unknown_key(), json()), 1..3)];
    // Sorting by drawn ranks shuffles without `prop_flat_map`, which costs a lot per case.
    let ranks = vec(any::<u16>(), dto.fields.len() + 2);
    (known, unknown, ranks).prop_map(|(known, unknown, ranks)| {
        let mut members: Vec<_> = known.into_iter().flatten().chain(unknown).collect();
        let mut seen = HashSet::new();
        members.retain(|(key, _)| seen.insert(key.clone()));
        let mut ranked: Vec<_> = ranks.into_iter().zip(members).collect();
        ranked.sort_by_key(|(rank, _)| *rank);
        let members: Vec<_> = ranked.into_iter().map(|(_, member)| member).collect();
        let mut text = String::new();
        write_object(&members, &mut text);
        Object {
            text,
            keys: members.into_iter().map(|(key, _)| key).collect(),
        }
    })
}

/// Ids from here up must be written as integers: a whole float (`7.0`) is read exactly below it.
pub(super) const EXACT: i64 = 1 << 53;

/// A positive id and how it is written: as an integer, or (below 2^53) as a whole float.
pub(super) fn id() -> impl Strategy<Value = (i64, String)> {
    prop_oneof![
        Just(1),
        Just(EXACT),
        Just(i64::MAX),
        1..=1_000_000i64,
        1..=i64::MAX
    ]
    .prop_flat_map(|id| {
        let mut forms = vec![id.to_string()];
        if id < EXACT {
            forms.extend([format!("{id}.0"), format!("{id}e0"), format!("{id}.000")]);
        }
        (Just(id), select(forms))
    })
}

/// A coordinate within ±`limit`, bounds included, and how it is written.
pub(super) fn coordinate(limit: f64) -> impl Strategy<Value = (f64, String)> {
    prop_oneof![
        Just(-limit),
        Just(limit),
        Just(0.0),
        Just(-0.0),
        -limit..=limit
    ]
    .prop_flat_map(|x| (Just(x), select(vec![format!("{x:?}"), format!("{x}")])))
}

/// An amount from 0.01 to 100000: whole cents (bounds included) or any float in between.
pub(super) fn fare() -> impl Strategy<Value = (f64, String)> {
    let cents = prop_oneof![Just(1), Just(Fare::MAX_CENTS), 1..=Fare::MAX_CENTS];
    prop_oneof![
        cents.prop_map(|c| c as f64 / 100.0),
        Fare::MIN_AMOUNT..=Fare::MAX_AMOUNT
    ]
    .prop_flat_map(|x| (Just(x), select(vec![format!("{x:?}"), format!("{x}")])))
}

/// An optional field: absent, `null`, or `value`; as written, and as the server should read it.
pub(super) fn optional(
    value: impl Strategy<Value = String>,
) -> impl Strategy<Value = (Option<String>, Option<String>)> {
    prop_oneof![
        1 => Just((None, None)),
        1 => Just((Some("null".to_owned()), None)),
        2 => value.prop_map(|v| (Some(quoted(&v)), Some(v))),
    ]
}

/// A body of `members` (key, JSON text; `None` leaves the key out), in any order, with
/// whitespace around.
pub(super) fn layout(
    members: Vec<(&'static str, Option<String>)>,
) -> impl Strategy<Value = String> {
    let space = || select(&["", " ", "\n", "\t\r\n "][..]);
    let present: Vec<_> = members
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
        .collect();
    (Just(present).prop_shuffle(), space(), space()).prop_map(|(members, before, after)| {
        let members: Vec<String> = members
            .iter()
            .map(|(key, value)| format!("{}: {value}", quoted(key)))
            .collect();
        format!("{before}{{{}}}{after}", members.join(", "))
    })
}

/// The float next to positive `x`, `by` steps up or down.
pub(super) fn step(x: f64, by: i64) -> f64 {
    f64::from_bits(x.to_bits().saturating_add_signed(by))
}

/// Equal, or one step apart. serde_json's default number parser (no `float_roundtrip`) is not
/// always correctly rounded: `3.6050999685746796` reads as `3.60509996857468`.
pub(super) fn near(read: f64, sent: f64) -> bool {
    read == sent || (read.signum() == sent.signum() && read.to_bits().abs_diff(sent.to_bits()) <= 1)
}

pub(super) fn refused(e: &FieldError) -> TestCaseError {
    TestCaseError::fail(format!("refused: {e}"))
}
