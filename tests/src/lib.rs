//! Shared test support for kelp: iteration over every (API, version) the codec supports and
//! seeded message generation. Later issues add the deterministic simulator and client models.

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

pub mod clients;
pub mod harness;
pub mod members;
pub mod raw;
pub mod seaweedfs;
pub mod server;
pub mod sim;
