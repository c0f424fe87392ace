//! Generators, first part: edits of byte and character sequences, characters where the
//! validators draw their lines, and the strings (names, phones, emails) built from them.

use std::fmt;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};

use super::bodies::DTOS;

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
pub(super) struct Bytes(pub(super) Vec<u8>);

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
pub(super) fn any_body() -> impl Strategy<Value = Bytes> {
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

pub(super) fn probe_char() -> impl Strategy<Value = char> + Clone {
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
pub(super) fn name(max: usize) -> impl Strategy<Value = String> + Clone {
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
pub(super) fn phone() -> impl Strategy<Value = String> + Clone {
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
pub(super) fn email() -> impl Strategy<Value = String> + Clone {
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

pub(super) fn vehicle_type() -> impl Strategy<Value = String> + Clone {
    "[a-z0-9_-]{1,32}"
}

/// Strings for comparing validators with patterns: random ones of lengths around the limits
/// (32, 200, 320), and valid ones with a few characters changed, then perhaps padded to just
/// under, at or just over a limit.
pub(super) fn probe_string() -> impl Strategy<Value = String> + Clone {
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
