//! Shared test support for kelp: iteration over every (API, version) the codec supports, seeded
//! message generation, the scenario harness, the deterministic simulator, and what the
//! end-to-end tests need (the kelp binary, real clients, a SeaweedFS cluster, and [`skip`]).
//! docs/TESTING.md says which test goes where.

use kelp_core::codec::arbitrary::Gen;
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{ApiInfo, ApiKey, SUPPORTED_APIS};

/// Every (API, version) pair the codec supports.
pub fn all_api_versions() -> impl Iterator<Item = (&'static ApiInfo, i16)> {
    SUPPORTED_APIS.iter().flat_map(|a| (a.min_version..=a.max_version).map(move |v| (a, v)))
}

/// A random request body for `key` at `version`, from `seed`.
#[must_use]
pub fn random_request(key: ApiKey, version: i16, seed: u64) -> RequestBody {
    RequestBody::random(key, &mut Gen::new(seed), version).expect("every supported key has a generator")
}

/// A random response body for `key` at `version`, from `seed`.
#[must_use]
pub fn random_response(key: ApiKey, version: i16, seed: u64) -> ResponseBody {
    ResponseBody::random(key, &mut Gen::new(seed), version).expect("every supported key has a generator")
}

/// The environment variable that turns every end-to-end skip into a failure. `scripts/test.sh`
/// sets it, so a run of the whole suite cannot pass a test that did not run.
pub const REQUIRE_ENV: &str = "KELP_E2E_REQUIRE";

/// A test cannot run here because `why` (a Kafka client, `weed` or a network namespace is
/// missing). Prints `skipped: {why}`, and the caller then returns; with `KELP_E2E_REQUIRE` set
/// (to anything but `0`) it panics with the same message instead.
pub fn skip(why: &str) {
    let required = std::env::var_os(REQUIRE_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    assert!(!required, "skipped: {why} ({REQUIRE_ENV} is set: a test that cannot run fails)");
    println!("skipped: {why}");
}

pub mod acls;
pub mod clients;
pub mod harness;
pub mod members;
pub mod raw;
pub mod registry;
pub mod seaweedfs;
pub mod server;
pub mod sim;
pub mod tls;
