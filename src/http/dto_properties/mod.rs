//! Property tests of request bodies at the edge: bytes through `extract::parse` into the wire
//! DTOs, then their `TryFrom` into domain values. They protect the contract of API.md and the
//! OpenAPI document: whatever a client sends is answered with a 400 naming a field it sent or
//! could send (or `body`), never a panic or a 500; every body the document calls valid is accepted
//! as sent; and the patterns it publishes for free text, phones, emails and vehicle types accept
//! exactly what the validators in `domain::values` accept.
//!
//! Runs are deterministic (fixed seed, no regression files); `PROPTEST_CASES` and
//! `PROPTEST_RNG_SEED` override the defaults below.
//!
//! One file per section: the bodies under test ([`bodies`]), the generators ([`strings`],
//! [`json`]), then the properties: [`any_bytes`], [`any_object`], [`documented`], [`patterns`]
//! and the known deviations ([`deviations`]).

mod any_bytes;
mod any_object;
mod bodies;
mod deviations;
mod documented;
mod json;
mod patterns;
mod strings;

use proptest::prelude::*;
use proptest::test_runner::{
    contextualize_config, Config, RngAlgorithm, RngSeed, TestCaseError, TestRunner,
};

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
