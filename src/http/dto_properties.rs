//! Property tests of request bodies at the edge: bytes through `extract::parse` into the wire
//! DTOs, then their `TryFrom` into domain values. They protect the contract of API.md and the
//! OpenAPI document: whatever a client sends is answered with a 400 naming a field it sent or
//! could send (or `body`), never a panic or a 500; every body the document calls valid is accepted
//! as sent; and the patterns it publishes for free text, phones, emails and vehicle types accept
//! exactly what the validators in `domain::values` accept.
//!
//! Runs are deterministic (fixed seed, no regression files); `PROPTEST_CASES` and
//! `PROPTEST_RNG_SEED` override the defaults below.

use std::collections::HashSet;
use std::fmt;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{
    contextualize_config, Config, RngAlgorithm, RngSeed, TestCaseError, TestRunner,
};
use regex::Regex;
use serde::de::DeserializeOwned;

use super::booking_actions::{AcceptBody, CancelBody, CompleteBody};
use super::bookings::CreateBooking;
use super::drivers::{CreateDriver, Location, StatusChange};
use super::extract::{self, parse};
use super::riders::CreateRider;
use crate::domain::values::{
    self, Fare, FieldError, GeoPoint, EMAIL_PATTERN, PHONE_PATTERN, TEXT_PATTERN,
    VEHICLE_TYPE_PATTERN,
};
use crate::storage::bookings::NewBooking;
use crate::storage::drivers::NewDriver;
use crate::storage::riders::NewRider;

/// Runs `property` on `cases` inputs from `strategy` and fails with the shrunk counterexample.
fn check<S: Strategy>(
    what: &str,
    cases: u32,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = contextualize_config(Config {
        cases,
        // XorShift: ChaCha, the default, is most of the run time in a debug build.
        rng_algorithm: RngAlgorithm::XorShift,
        rng_seed: RngSeed::Fixed(0xD70_5EED),
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(failure) = TestRunner::new(config).run(&strategy, property) {
        panic!("{what}: {failure}");
    }
}

// --- The request bodies ----------------------------------------------------------------------

/// What the edge made of a body.
#[derive(Debug)]
enum Verdict {
    /// Refused by `extract::parse`.
    Unparsed(FieldError),
    /// Parsed, then refused by the DTO's conversion into domain values.
    Invalid(FieldError),
    Accepted,
}

/// What a field holds, so generated bodies are mostly plausible and reach the conversion.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Id,
    Latitude,
    Longitude,
    Amount,
    Name,
    Phone,
    Email,
    VehicleType,
    Choice(&'static [&'static str]),
}

/// A request body type: the fields it has and how the edge judges a body of it.
struct Dto {
    name: &'static str,
    fields: &'static [(&'static str, Kind)],
    judge: fn(&[u8]) -> Verdict,
    /// A body the documentation calls valid, with every field present.
    sample: &'static str,
}

impl Dto {
    fn has(&self, field: &str) -> bool {
        self.fields.iter().any(|(name, _)| *name == field)
    }
}

fn parsed<T: DeserializeOwned>(body: &[u8]) -> Verdict {
    match parse::<T>(body) {
        Ok(_) => Verdict::Accepted,
        Err(e) => Verdict::Unparsed(e),
    }
}

fn converted<T: DeserializeOwned, D: TryFrom<T, Error = FieldError>>(body: &[u8]) -> Verdict {
    match parse::<T>(body).map(D::try_from) {
        Ok(Ok(_)) => Verdict::Accepted,
        Ok(Err(e)) => Verdict::Invalid(e),
        Err(e) => Verdict::Unparsed(e),
    }
}

/// Every body DTO. Those without a `TryFrom` are validated inside their handler, from fields
/// this module cannot read, so only their parsing is judged here.
static DTOS: [Dto; 8] = [
    Dto {
        name: "CreateBooking",
        fields: &[
            ("rider_id", Kind::Id),
            ("pickup_lat", Kind::Latitude),
            ("pickup_lng", Kind::Longitude),
            ("dropoff_lat", Kind::Latitude),
            ("dropoff_lng", Kind::Longitude),
            ("estimated_fare", Kind::Amount),
            ("vehicle_type", Kind::VehicleType),
        ],
        judge: converted::<CreateBooking, NewBooking>,
        sample: r#"{"rider_id": 7, "pickup_lat": 40.7, "pickup_lng": -74.0, "dropoff_lat": 40.8, "dropoff_lng": -73.9, "estimated_fare": 15.5, "vehicle_type": "xl"}"#,
    },
    Dto {
        name: "CreateRider",
        fields: &[
            ("name", Kind::Name),
            ("phone", Kind::Phone),
            ("email", Kind::Email),
        ],
        judge: converted::<CreateRider, NewRider>,
        sample: r#"{"name": "Ann", "phone": "+1 (212) 555-0100", "email": "ann@example.com"}"#,
    },
    Dto {
        name: "CreateDriver",
        fields: &[
            ("name", Kind::Name),
            ("phone", Kind::Phone),
            ("email", Kind::Email),
            ("vehicle_type", Kind::VehicleType),
        ],
        judge: converted::<CreateDriver, NewDriver>,
        sample: r#"{"name": " Bo ", "phone": "212.555.0101", "email": null, "vehicle_type": "premium"}"#,
    },
    Dto {
        name: "Location",
        fields: &[("lat", Kind::Latitude), ("lng", Kind::Longitude)],
        judge: parsed::<Location>,
        sample: r#"{"lat": 90, "lng": -180.0}"#,
    },
    Dto {
        name: "StatusChange",
        fields: &[("status", Kind::Choice(&["online", "offline"]))],
        judge: parsed::<StatusChange>,
        sample: r#"{"status": "online"}"#,
    },
    Dto {
        name: "AcceptBody",
        fields: &[("driver_id", Kind::Id)],
        judge: parsed::<AcceptBody>,
        sample: r#"{"driver_id": 7.0}"#,
    },
    Dto {
        name: "CancelBody",
        fields: &[
            ("reason", Kind::Name),
            ("user_id", Kind::Id),
            ("user_type", Kind::Choice(&["rider", "driver"])),
        ],
        judge: parsed::<CancelBody>,
        sample: r#"{"reason": "late", "user_id": 3, "user_type": "rider"}"#,
    },
    Dto {
        name: "CompleteBody",
        fields: &[("driver_id", Kind::Id), ("actual_fare", Kind::Amount)],
        judge: parsed::<CompleteBody>,
        sample: r#"{"driver_id": 9, "actual_fare": 0.01}"#,
    },
];

fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

// --- Generators ------------------------------------------------------------------------------

/// A change to a sequence at a position drawn by `Index`.
#[derive(Debug, Clone, Copy)]
enum Edit<T> {
    Insert(T),
    Delete,
    Replace(T),
}

fn edits<T: Copy + fmt::Debug>(
    item: impl Strategy<Value = T> + Clone,
    count: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<(Index, Edit<T>)>> {
    let edit = prop_oneof![
        item.clone().prop_map(Edit::Insert),
        Just(Edit::Delete),
        item.prop_map(Edit::Replace),
    ];
    vec((any::<Index>(), edit), count)
}

fn apply<T: Copy>(items: &mut Vec<T>, edits: Vec<(Index, Edit<T>)>) {
    for (at, edit) in edits {
        let i = at.index(items.len() + 1);
        match edit {
            Edit::Insert(item) => items.insert(i, item),
            Edit::Delete if i < items.len() => {
                items.remove(i);
            }
            Edit::Replace(item) if i < items.len() => items[i] = item,
            Edit::Delete | Edit::Replace(_) => {}
        }
    }
}

/// Bytes, shown as an escaped string in a counterexample.
#[derive(Clone)]
struct Bytes(Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

fn json_byte() -> impl Strategy<Value = u8> + Clone {
    prop_oneof![
        3 => select(&br#"{}[]",:\ 0123456789.-+eEtrufalsn"#[..]),
        1 => any::<u8>(),
    ]
}

/// Random bytes, random bytes after `{`, and valid bodies with a few bytes changed.
fn any_body() -> impl Strategy<Value = Bytes> {
    let sample = select(DTOS.iter().map(|dto| dto.sample).collect::<Vec<_>>());
    prop_oneof![
        1 => vec(any::<u8>(), 0..64).prop_map(Bytes),
        1 => vec(json_byte(), 0..64).prop_map(|tail| Bytes([&b"{"[..], &tail].concat())),
        4 => (sample, edits(json_byte(), 1..5)).prop_map(|(sample, edits)| {
            let mut bytes = sample.as_bytes().to_vec();
            apply(&mut bytes, edits);
            Bytes(bytes)
        }),
    ]
}

/// Characters where the validators and patterns draw their lines: ASCII and Unicode whitespace
/// (and U+FEFF, U+180E, U+200B, which are not), controls (C0, DEL, C1), the email and phone
/// punctuation, digits (ASCII and not), letters of both cases.
const INTERESTING: &[char] = &[
    ' ', '\t', '\n', '\r', '\u{b}', '\u{c}', '\u{0}', '\u{1f}', '\u{7f}', '\u{85}', '\u{9f}',
    '\u{a0}', '\u{1680}', '\u{180e}', '\u{2000}', '\u{200a}', '\u{200b}', '\u{2028}', '\u{2029}',
    '\u{202f}', '\u{205f}', '\u{3000}', '\u{feff}', '@', '.', '+', '(', ')', '-', '_', '0', '5',
    '9', '\u{663}', '\u{ff11}', 'a', 'z', 'A', 'Z', 'é', '`',
];

/// Whitespace that is not a control character.
const SPACES: &[char] = &[
    ' ', '\u{a0}', '\u{1680}', '\u{2000}', '\u{2007}', '\u{200a}', '\u{2028}', '\u{2029}',
    '\u{202f}', '\u{205f}', '\u{3000}',
];

fn probe_char() -> impl Strategy<Value = char> + Clone {
    prop_oneof![6 => select(INTERESTING), 1 => any::<char>()]
}

/// Neither whitespace nor a control character.
fn solid_char() -> impl Strategy<Value = char> + Clone {
    prop_oneof![
        3 => prop::char::range('a', 'z'),
        1 => any::<char>().prop_filter("solid", |c| !c.is_whitespace() && !c.is_control()),
    ]
}

/// `length` items: a short random run of `item`, repeated. Hundreds of characters, which is
/// where the limits are, then cost a few draws instead of hundreds (debug builds are slow).
fn repeated<T: Clone + fmt::Debug>(
    item: impl Strategy<Value = T> + Clone,
    length: impl Strategy<Value = usize> + Clone,
) -> impl Strategy<Value = Vec<T>> + Clone {
    (vec(item, 1..8), length).prop_map(|(run, n)| run.into_iter().cycle().take(n).collect())
}

/// Free text as `values::text` accepts it: 1 to `max` characters, no controls, not only
/// whitespace.
fn name(max: usize) -> impl Strategy<Value = String> + Clone {
    let text_char = prop_oneof![2 => solid_char(), 1 => select(SPACES)];
    let length = prop_oneof![3 => 0..8usize, 1 => 0..max, 1 => max - 8..max];
    (repeated(text_char, length), solid_char(), any::<Index>()).prop_map(
        |(mut chars, solid, at)| {
            chars.insert(at.index(chars.len() + 1), solid);
            chars.into_iter().collect()
        },
    )
}

/// 3 to 32 characters of the phone alphabet, at least three of them digits.
fn phone() -> impl Strategy<Value = String> + Clone {
    let phone_char = prop_oneof![
        3 => prop::char::range('0', '9'),
        1 => select(&['+', ' ', '(', ')', '.', '-'][..]),
    ];
    vec(phone_char, 3..=32)
        .prop_filter("at least three digits", |chars| {
            chars.iter().filter(|c| c.is_ascii_digit()).count() >= 3
        })
        .prop_map(String::from_iter)
}

/// `user@host.tld` with no whitespace or controls, up to 320 characters.
fn email() -> impl Strategy<Value = String> + Clone {
    let text = |length: std::ops::RangeInclusive<usize>, not: char| {
        let item = solid_char().prop_filter("excluded", move |c| *c != not);
        repeated(item, length).prop_map(String::from_iter)
    };
    (
        prop_oneof![text(1..=20, '@'), text(250..=290, '@')],
        solid_char().prop_filter("not a dot", |c| *c != '.'),
        text(0..=16, '\u{0}'),
        text(0..=8, '\u{0}'),
    )
        .prop_map(|(user, first, host, tld)| format!("{user}@{first}{host}.{tld}"))
        .prop_filter("at most 320 characters", |e| e.chars().count() <= 320)
}

fn vehicle_type() -> impl Strategy<Value = String> + Clone {
    "[a-z0-9_-]{1,32}"
}

/// Strings for comparing validators with patterns: random ones of lengths around the limits
/// (32, 200, 320), and valid ones with a few characters changed, then perhaps padded to just
/// under, at or just over a limit.
fn probe_string() -> impl Strategy<Value = String> + Clone {
    let short = prop_oneof![0..6usize, 28..36usize].prop_flat_map(|n| vec(probe_char(), n));
    let long = repeated(probe_char(), prop_oneof![196..204usize, 316..324usize]);
    let random = prop_oneof![2 => short, 1 => long].prop_map(String::from_iter);
    let valid = prop_oneof![name(200), phone(), email(), vehicle_type()];
    let pad = (
        select(&[31usize, 32, 33, 199, 200, 201, 319, 320, 321][..]),
        select(&['a', '0', ' ', '.', 'é', '\u{3000}'][..]),
    );
    let near_valid =
        (valid, edits(probe_char(), 0..3), option::of(pad)).prop_map(|(valid, edits, pad)| {
            let mut chars: Vec<char> = valid.chars().collect();
            apply(&mut chars, edits);
            if let Some((length, fill)) = pad {
                chars.resize(chars.len().max(length), fill);
            }
            String::from_iter(chars)
        });
    prop_oneof![1 => random, 2 => near_valid]
}

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
struct Object {
    text: String,
    keys: Vec<String>,
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
fn object(dto: &'static Dto) -> impl Strategy<Value = Object> {
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
const EXACT: i64 = 1 << 53;

/// A positive id and how it is written: as an integer, or (below 2^53) as a whole float.
fn id() -> impl Strategy<Value = (i64, String)> {
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
fn coordinate(limit: f64) -> impl Strategy<Value = (f64, String)> {
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
fn fare() -> impl Strategy<Value = (f64, String)> {
    let cents = prop_oneof![Just(1), Just(Fare::MAX_CENTS), 1..=Fare::MAX_CENTS];
    prop_oneof![
        cents.prop_map(|c| c as f64 / 100.0),
        Fare::MIN_AMOUNT..=Fare::MAX_AMOUNT
    ]
    .prop_flat_map(|x| (Just(x), select(vec![format!("{x:?}"), format!("{x}")])))
}

/// An optional field: absent, `null`, or `value`; as written, and as the server should read it.
fn optional(
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
fn layout(members: Vec<(&'static str, Option<String>)>) -> impl Strategy<Value = String> {
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
fn step(x: f64, by: i64) -> f64 {
    f64::from_bits(x.to_bits().saturating_add_signed(by))
}

/// Equal, or one step apart. serde_json's default number parser (no `float_roundtrip`) is not
/// always correctly rounded: `3.6050999685746796` reads as `3.60509996857468`.
fn near(read: f64, sent: f64) -> bool {
    read == sent || (read.signum() == sent.signum() && read.to_bits().abs_diff(sent.to_bits()) <= 1)
}

fn refused(e: &FieldError) -> TestCaseError {
    TestCaseError::fail(format!("refused: {e}"))
}

// --- 1. Any bytes ----------------------------------------------------------------------------

#[test]
fn every_sample_body_is_accepted() {
    for dto in &DTOS {
        let verdict = (dto.judge)(dto.sample.as_bytes());
        assert!(
            matches!(verdict, Verdict::Accepted),
            "{}: {verdict:?}",
            dto.name
        );
    }
}

/// The problem `extract::parse` states for an unknown key.
const UNKNOWN: &str = "is not a field of this request";

/// Every DTO judges `body` without panicking, and a refusal names a field. An unknown key is
/// named as sent, which for the key `""` is no name at all (`{"":1}`, found here): that
/// deviation is pinned by `an_unknown_key_is_named_as_sent`, so this property lets it pass.
fn names_a_field(body: &[u8]) -> Result<(), TestCaseError> {
    for dto in &DTOS {
        if let Verdict::Unparsed(e) | Verdict::Invalid(e) = (dto.judge)(body) {
            let known_deviation = e.field.is_empty() && e.problem == UNKNOWN;
            prop_assert!(
                !e.field.is_empty() || known_deviation,
                "{} blamed no field: {e:?}",
                dto.name
            );
        }
    }
    Ok(())
}

#[test]
fn arbitrary_bytes_never_panic_and_every_refusal_names_a_field() {
    check("bytes", 2_000, any_body(), |body| names_a_field(&body.0));
}

#[test]
fn arbitrary_text_never_panics_and_every_refusal_names_a_field() {
    let text = prop_oneof![
        any::<String>(),
        any::<String>().prop_map(|s| format!("{{{s}")),
        "\\{[ -~]{0,40}",
    ];
    check("text", 2_000, text, |text| names_a_field(text.as_bytes()));
}

// --- 2. Any JSON object ----------------------------------------------------------------------

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

// --- 3. Documented bodies --------------------------------------------------------------------

#[test]
fn documented_bookings_are_accepted_as_sent() {
    let booking = (
        id(),
        (coordinate(90.0), coordinate(180.0)),
        (coordinate(90.0), coordinate(180.0)),
        fare(),
        optional(vehicle_type()),
    );
    let case = booking.prop_flat_map(|(id, pickup, dropoff, fare, vehicle)| {
        let body = layout(vec![
            ("rider_id", Some(id.1)),
            ("pickup_lat", Some(pickup.0 .1)),
            ("pickup_lng", Some(pickup.1 .1)),
            ("dropoff_lat", Some(dropoff.0 .1)),
            ("dropoff_lng", Some(dropoff.1 .1)),
            ("estimated_fare", Some(fare.1)),
            ("vehicle_type", vehicle.0),
        ]);
        let sent = (
            id.0,
            (pickup.0 .0, pickup.1 .0),
            (dropoff.0 .0, dropoff.1 .0),
            fare.0,
            vehicle.1,
        );
        (Just(sent), body)
    });
    check("CreateBooking", 2_000, case, |(sent, body)| {
        let (rider_id, pickup, dropoff, fare, vehicle_type) = sent;
        let new = parse::<CreateBooking>(body.as_bytes())
            .and_then(NewBooking::try_from)
            .map_err(|e| refused(&e))?;
        prop_assert_eq!(new.rider_id.0, rider_id);
        prop_assert!(near(new.pickup.lat, pickup.0) && near(new.pickup.lng, pickup.1));
        prop_assert!(near(new.dropoff.lat, dropoff.0) && near(new.dropoff.lng, dropoff.1));
        let cents =
            [fare, step(fare, -1), step(fare, 1)].map(|amount| Fare::from_amount(amount, "").ok());
        prop_assert!(
            cents.contains(&Some(new.estimated_fare)),
            "{fare} read as {}",
            new.estimated_fare
        );
        prop_assert_eq!(new.vehicle_type, vehicle_type);
        Ok(())
    });
}

#[test]
fn documented_riders_and_drivers_are_accepted_trimmed() {
    let person = (
        name(200),
        phone(),
        optional(email()),
        optional(vehicle_type()),
    );
    let case = person.prop_flat_map(|(name, phone, email, vehicle)| {
        let contact = vec![
            ("name", Some(quoted(&name))),
            ("phone", Some(quoted(&phone))),
            ("email", email.0),
        ];
        let mut driver = contact.clone();
        driver.push(("vehicle_type", vehicle.0));
        let sent = (name, phone, email.1, vehicle.1);
        (Just(sent), layout(contact), layout(driver))
    });
    check(
        "CreateRider/CreateDriver",
        2_000,
        case,
        |((name, phone, email, vehicle_type), rider, driver)| {
            let rider = parse::<CreateRider>(rider.as_bytes())
                .and_then(NewRider::try_from)
                .map_err(|e| refused(&e))?;
            prop_assert_eq!(rider.name.as_str(), name.trim());
            prop_assert_eq!(rider.phone.as_str(), phone.trim());
            prop_assert_eq!(&rider.email, &email);
            let driver = parse::<CreateDriver>(driver.as_bytes())
                .and_then(NewDriver::try_from)
                .map_err(|e| refused(&e))?;
            prop_assert_eq!(driver.name.as_str(), name.trim());
            prop_assert_eq!(driver.phone.as_str(), phone.trim());
            prop_assert_eq!(&driver.email, &email);
            let vehicle_type = vehicle_type.as_deref().unwrap_or("standard");
            prop_assert_eq!(driver.vehicle_type.as_str(), vehicle_type);
            Ok(())
        },
    );
}

/// The handlers of these bodies validate fields this module cannot read; what is checked is
/// that they parse, and that the validators the handler then runs accept the values sent.
#[test]
fn documented_location_status_and_action_bodies_are_accepted() {
    let reason = prop_oneof![
        1 => Just((None, None)),
        1 => Just((Some("null".to_owned()), None)),
        1 => select(&["", " ", "  \u{3000}"][..]).prop_map(|blank| (Some(quoted(blank)), None)),
        3 => name(500).prop_map(|text| (Some(quoted(&text)), Some(text))),
    ];
    let values = (
        (coordinate(90.0), coordinate(180.0)),
        select(&["online", "offline"][..]),
        id(),
        (reason, id(), select(&["rider", "driver"][..])),
        (id(), fare()),
    );
    let case = values.prop_flat_map(|(at, status, accept, cancel, complete)| {
        let (reason, user_id, user_type) = cancel;
        let bodies = (
            layout(vec![("lat", Some(at.0 .1)), ("lng", Some(at.1 .1))]),
            layout(vec![("status", Some(quoted(status)))]),
            layout(vec![("driver_id", Some(accept.1))]),
            layout(vec![
                ("reason", reason.0),
                ("user_id", Some(user_id.1)),
                ("user_type", Some(quoted(user_type))),
            ]),
            layout(vec![
                ("driver_id", Some(complete.0 .1)),
                ("actual_fare", Some(complete.1 .1)),
            ]),
        );
        let sent = (
            (at.0 .0, at.1 .0),
            accept.0,
            (reason.1, user_id.0),
            (complete.0 .0, complete.1 .0),
        );
        (Just(sent), bodies)
    });
    check("actions", 2_000, case, |(sent, bodies)| {
        let (at, accept_id, (reason, user_id), (complete_id, fare)) = sent;
        let (location, status, accept, cancel, complete) = bodies;
        parse::<Location>(location.as_bytes()).map_err(|e| refused(&e))?;
        GeoPoint::new(at.0, at.1, "lat", "lng")?;
        parse::<StatusChange>(status.as_bytes()).map_err(|e| refused(&e))?;
        parse::<AcceptBody>(accept.as_bytes()).map_err(|e| refused(&e))?;
        extract::body_id(accept_id, "driver_id")?;
        parse::<CancelBody>(cancel.as_bytes()).map_err(|e| refused(&e))?;
        extract::body_id(user_id, "user_id")?;
        if let Some(reason) = reason {
            values::text(&reason, "reason", 500)?;
        }
        parse::<CompleteBody>(complete.as_bytes()).map_err(|e| refused(&e))?;
        extract::body_id(complete_id, "driver_id")?;
        Fare::from_amount(fare, "actual_fare")?;
        Ok(())
    });
}

// --- 4. Published patterns -------------------------------------------------------------------

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

// --- Known deviations ------------------------------------------------------------------------

#[test]
fn nothing_may_follow_the_object() {
    let tail = "[!-~][ -~]{0,8}";
    check("trailing bytes", 500, (0..DTOS.len(), tail), |(i, tail)| {
        let dto = &DTOS[i];
        let body = format!("{}{tail}", dto.sample);
        match (dto.judge)(body.as_bytes()) {
            Verdict::Unparsed(e) if e.field == "body" => Ok(()),
            verdict => Err(TestCaseError::fail(format!("{}: {verdict:?}", dto.name))),
        }
    });
}

#[test]
fn a_repeated_key_is_blamed_on_that_key() {
    let case = (0..DTOS.len(), any::<Index>());
    check("repeated key", 500, case, |(i, field)| {
        let dto = &DTOS[i];
        let (key, _) = dto.fields[field.index(dto.fields.len())];
        let sample: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(dto.sample).unwrap();
        let open = dto.sample.trim_end_matches('}');
        let body = format!("{open}, {}: {}}}", quoted(key), sample[key]);
        match (dto.judge)(body.as_bytes()) {
            Verdict::Unparsed(e) if e.field == key => Ok(()),
            verdict => Err(TestCaseError::fail(format!("{body}: {verdict:?}"))),
        }
    });
}

#[test]
fn an_unknown_key_is_named_as_sent() {
    let key = prop_oneof!["[a-z`]{0,4}", "[a-z]{0,2} at line [0-9]", any::<String>()];
    check("unknown key", 500, (0..DTOS.len(), key), |(i, key)| {
        let dto = &DTOS[i];
        prop_assume!(!dto.has(&key));
        let body = format!("{{{}: 1, {}", quoted(&key), &dto.sample[1..]);
        match (dto.judge)(body.as_bytes()) {
            Verdict::Unparsed(e) if e.field == key => Ok(()),
            verdict => Err(TestCaseError::fail(format!("{body}: {verdict:?}"))),
        }
    });
}

#[test]
fn ids_written_as_whole_floats_are_read_exactly_or_refused() {
    // Above 2^53 the JSON parser rounds a float before anyone sees it: such ids must be integers.
    let id = prop_oneof![
        Just(EXACT + 1),
        Just(i64::MAX),
        EXACT + 1..=i64::MAX,
        1..=EXACT
    ];
    check("whole-float id", 500, id, |id| {
        let body = DTOS[0]
            .sample
            .replace("\"rider_id\": 7", &format!("\"rider_id\": {id}.0"));
        match parse::<CreateBooking>(body.as_bytes()).and_then(NewBooking::try_from) {
            Ok(new) => prop_assert_eq!(new.rider_id.0, id),
            Err(e) => {
                prop_assert!(id >= EXACT, "{id}.0 refused: {e}");
                prop_assert_eq!(e.field, "rider_id");
            }
        }
        Ok(())
    });
}
