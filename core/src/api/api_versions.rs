//! ApiVersions, as KIP-511 describes it: the served API table; a request at a version the
//! broker does not know still gets an answer, in the v0 format, with UNSUPPORTED_VERSION and
//! the table, so the client can pick a version; v3+ clients' software name and version are
//! checked and kept on the connection.

use super::Effects;
use crate::codec::KStr;
use crate::codec::generated::ResponseBody;
use crate::codec::generated::api_versions::{
    ApiVersion, ApiVersionsRequest, ApiVersionsResponse, FinalizedFeatureKey, SupportedFeatureKey,
};
use crate::codec::{ApiKey, ErrorCode};
use crate::request::Req;

use super::SERVED;

/// Whether `version` of ApiVersions can be read.
#[must_use]
pub fn version_supported(version: i16) -> bool {
    super::served(ApiKey::API_VERSIONS, version)
}

fn table() -> Vec<ApiVersion> {
    SERVED
        .iter()
        .map(|(key, min, max)| ApiVersion {
            api_key: key.0,
            min_version: *min,
            max_version: *max,
            ..Default::default()
        })
        .collect()
}

/// KIP-511's client software names and versions: `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn valid_software_field(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.';
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() && b.iter().all(inner),
        _ => false,
    }
}

/// Feature levels this broker supports and has finalized (KIP-584): `group.version` 1 says
/// the KIP-848 consumer protocol is on (KIP-848, KIP-1022); `transaction.version` 2 says
/// producers may use transaction version 2 (KIP-890 part 2: an epoch bump per transaction,
/// partitions and groups joining implicitly), which the Java client 4.x then does. Kafka
/// lists them alongside `metadata.version`, which a gateway without KRaft has no use for.
const FEATURES: &[(&str, i16, i16, i16)] = &[("group.version", 0, 1, 1), ("transaction.version", 0, 2, 2)];

/// The epoch of the finalized features: they never change.
const FEATURES_EPOCH: i64 = 1;

pub(crate) fn handle(fx: &mut Effects, req: Req, m: &ApiVersionsRequest) {
    let mut resp = ApiVersionsResponse {
        api_keys: table(),
        // Features whose lowest level is 0 are left out below v4, as Kafka does (KIP-1022:
        // older clients refuse a range starting at 0).
        supported_features: FEATURES
            .iter()
            .filter(|(_, min, _, _)| req.version >= 4 || *min > 0)
            .map(|(name, min, max, _)| SupportedFeatureKey {
                name: KStr::from_static(name),
                min_version: *min,
                max_version: *max,
                ..Default::default()
            })
            .collect(),
        finalized_features_epoch: FEATURES_EPOCH,
        finalized_features: FEATURES
            .iter()
            .map(|(name, _, _, level)| FinalizedFeatureKey {
                name: KStr::from_static(name),
                max_version_level: *level,
                min_version_level: *level,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    if req.version >= 3 {
        if valid_software_field(&m.client_software_name) && valid_software_field(&m.client_software_version) {
            let (name, version) = (m.client_software_name.clone(), m.client_software_version.clone());
            fx.client_software(req.conn, name, version);
        } else {
            resp.error_code = ErrorCode::INVALID_REQUEST.0;
        }
    }
    fx.respond(req, ResponseBody::ApiVersions(resp));
}

/// The answer to an ApiVersions request at a version the broker cannot read.
pub(crate) fn unsupported_version(fx: &mut Effects, req: Req) {
    let resp =
        ApiVersionsResponse { error_code: ErrorCode::UNSUPPORTED_VERSION.0, api_keys: table(), ..Default::default() };
    fx.respond(Req { version: 0, ..req }, ResponseBody::ApiVersions(resp));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_fields_follow_kip_511() {
        assert!(valid_software_field("apache-kafka-java"));
        assert!(valid_software_field("4.3.0"));
        assert!(!valid_software_field(""));
        assert!(!valid_software_field("-x"));
        assert!(!valid_software_field("a b"));
    }
}
