//! Authentication through the broker, in virtual time: SASL listeners serve nothing but
//! ApiVersions and the SASL requests until a client authenticates; SCRAM-SHA-256/512 and PLAIN
//! against credentials managed with AlterUserScramCredentials and kept across restarts;
//! failures answered and the connection closed; the v0 handshake's bare tokens.
//!
//! The client side of SCRAM is `kelp_tests::tls::ScramClient`, written from RFC 5802 with the
//! `hmac`/`sha2`/`pbkdf2` crates, not with kelp's own code, so it checks kelp's server against
//! the RFC.

use bytes::Bytes;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::alter_user_scram_credentials::{
    AlterUserScramCredentialsRequest, ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kelp_core::codec::generated::api_versions::ApiVersionsRequest;
use kelp_core::codec::generated::describe_user_scram_credentials::{DescribeUserScramCredentialsRequest, UserName};
use kelp_core::codec::generated::metadata::MetadataRequest;
use kelp_core::codec::generated::sasl_authenticate::SaslAuthenticateRequest;
use kelp_core::codec::generated::sasl_handshake::SaslHandshakeRequest;
use kelp_core::codec::{ApiKey, ErrorCode, KStr};
use kelp_core::config::{Listener, SecurityProtocol};
use kelp_core::io::{CloseReason, Origin};
use kelp_core::{Config, ConnId};
use kelp_tests::expect_body;
use kelp_tests::harness::{Harness, test_config};
use kelp_tests::tls::{ScramClient, ScramHash as H};

const PLAIN_LISTENER: u16 = 0;
const SASL_LISTENER: u16 = 1;

fn config() -> Config {
    let mut c = test_config();
    c.sasl_mechanisms = kelp_core::security::Mechanism::ALL.to_vec();
    c.listeners = vec![
        Listener::plaintext("127.0.0.1", 9092),
        Listener {
            name: KStr::from("SECURE"),
            protocol: SecurityProtocol::SaslPlaintext,
            host: KStr::from("secure.example"),
            port: 9093,
        },
    ];
    c
}

fn via(listener: u16) -> Origin {
    Origin { listener, tls_subject: None }
}

/// An upsertion as the Java Admin client sends it: salted client-side.
fn upsert(user: &str, h: H, password: &str, iterations: i32) -> ScramCredentialUpsertion {
    let salt = format!("salt-of-{user}").into_bytes();
    let rounds = iterations.try_into().unwrap_or(4096);
    ScramCredentialUpsertion {
        name: KStr::from(user),
        mechanism: h.wire(),
        iterations,
        salted_password: Bytes::from(h.salted_password(password.as_bytes(), &salt, rounds)),
        salt: Bytes::from(salt),
        ..Default::default()
    }
}

fn alter(
    h: &mut Harness,
    c: ConnId,
    upsertions: Vec<ScramCredentialUpsertion>,
    deletions: Vec<ScramCredentialDeletion>,
) -> Vec<(String, i16)> {
    let req = AlterUserScramCredentialsRequest { upsertions, deletions, ..Default::default() };
    let r = expect_body!(h.call(c, RequestBody::AlterUserScramCredentials(req), 0), AlterUserScramCredentials);
    r.results.iter().map(|x| (x.user.to_string(), x.error_code)).collect()
}

fn handshake(h: &mut Harness, c: ConnId, mechanism: &str, version: i16) -> (i16, Vec<String>) {
    let req = SaslHandshakeRequest { mechanism: KStr::from(mechanism) };
    let r = expect_body!(h.call(c, RequestBody::SaslHandshake(req), version), SaslHandshake);
    (r.error_code, r.mechanisms.iter().map(ToString::to_string).collect())
}

/// One SaslAuthenticate; (error code, message, token).
fn authenticate(h: &mut Harness, c: ConnId, token: &[u8], version: i16) -> (i16, Option<String>, Vec<u8>) {
    let req = SaslAuthenticateRequest { auth_bytes: Bytes::copy_from_slice(token), ..Default::default() };
    let r = expect_body!(h.call(c, RequestBody::SaslAuthenticate(req), version), SaslAuthenticate);
    (r.error_code, r.error_message.map(|m| m.to_string()), r.auth_bytes.to_vec())
}

/// A whole SCRAM exchange over SaslAuthenticate; whether it succeeded (the server's signature
/// checked when it did).
fn scram_login(h: &mut Harness, c: ConnId, hash: H, user: &str, password: &str, version: i16) -> bool {
    assert_eq!(handshake(h, c, hash.mechanism(), 1).0, 0);
    let mut client = ScramClient::new(hash, user, password);
    let (err, msg, first) = authenticate(h, c, &client.client_first(), version);
    if err != 0 {
        // An unknown user is refused as a wrong password is: nothing tells them apart.
        assert_eq!(err, ErrorCode::SASL_AUTHENTICATION_FAILED.0);
        assert_eq!(
            msg.as_deref(),
            Some(
                format!(
                    "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                    hash.mechanism()
                )
                .as_str()
            )
        );
        return false;
    }
    // The server adds a nonce of its own (the client checks that it extends its own).
    let text = String::from_utf8_lossy(&first);
    let nonce = text.split(',').find_map(|a| a.strip_prefix("r=")).unwrap_or_default();
    assert!(nonce.starts_with(client.nonce()) && nonce.len() > client.nonce().len() + 6, "server nonce added: {nonce}");
    let last = client.client_final(&first).unwrap_or_else(|e| panic!("server-first: {e}"));
    let (err, msg, server_final) = authenticate(h, c, &last, version);
    if err != 0 {
        assert_eq!(err, ErrorCode::SASL_AUTHENTICATION_FAILED.0);
        assert!(msg.unwrap().contains(hash.mechanism()));
        return false;
    }
    client
        .check_server_final(&server_final)
        .unwrap_or_else(|e| panic!("the server proves it knows the credential: {e}"));
    true
}

fn metadata(h: &mut Harness, c: ConnId) -> (String, i32) {
    let r = expect_body!(h.call(c, RequestBody::Metadata(MetadataRequest::default()), 12), Metadata);
    (r.brokers[0].host.to_string(), r.brokers[0].port)
}

#[test]
fn scram_users_authenticate_on_the_sasl_listener_and_are_told_its_address() {
    let mut h = Harness::new(config());
    let admin = h.connect_via(via(PLAIN_LISTENER));
    let results = alter(
        &mut h,
        admin,
        vec![upsert("alice", H::Sha512, "wonder", 4096), upsert("b,o=b", H::Sha256, "pw", 8192)],
        vec![],
    );
    assert_eq!(results, [("alice".to_string(), 0), ("b,o=b".to_string(), 0)]);
    for (hash, user, password) in [(H::Sha512, "alice", "wonder"), (H::Sha256, "b,o=b", "pw")] {
        for version in 0..=2 {
            let c = h.connect_via(via(SASL_LISTENER));
            let v = expect_body!(h.call(c, RequestBody::ApiVersions(ApiVersionsRequest::default()), 3), ApiVersions);
            assert!(v.api_keys.iter().any(|k| k.api_key == ApiKey::SASL_AUTHENTICATE.0 && k.max_version == 2));
            assert!(scram_login(&mut h, c, hash, user, password, version), "{user} v{version}");
            assert_eq!(metadata(&mut h, c), ("secure.example".to_string(), 9093));
            // Once through, the SASL requests are refused as Kafka refuses them.
            assert_eq!(handshake(&mut h, c, "PLAIN", 1).0, ErrorCode::ILLEGAL_SASL_STATE.0);
            assert_eq!(authenticate(&mut h, c, b"x", version).0, ErrorCode::ILLEGAL_SASL_STATE.0);
            assert_eq!(metadata(&mut h, c).1, 9093);
        }
    }
    // The plaintext listener is told its own address.
    assert_eq!(metadata(&mut h, admin), ("127.0.0.1".to_string(), 9092));
    // PLAIN checks the password against the same credentials.
    let c = h.connect_via(via(SASL_LISTENER));
    assert_eq!(handshake(&mut h, c, "PLAIN", 1).0, 0);
    assert_eq!(authenticate(&mut h, c, b"\0alice\0wonder", 2).0, 0);
    assert_eq!(metadata(&mut h, c).1, 9093);
    let mut metrics = String::new();
    h.broker.write_metrics(&mut metrics);
    assert!(metrics.contains("kelp_sasl_authentications_total{result=\"succeeded\"} 7\n"), "{metrics}");
}

#[test]
fn a_wrong_password_is_answered_then_the_connection_closes() {
    let mut h = Harness::new(config());
    let admin = h.connect_via(via(PLAIN_LISTENER));
    alter(&mut h, admin, vec![upsert("alice", H::Sha512, "wonder", 4096)], vec![]);
    // Wrong password, unknown user, and a user without a credential for the mechanism.
    for (hash, user, password) in
        [(H::Sha512, "alice", "Wonder"), (H::Sha512, "mallory", "x"), (H::Sha256, "alice", "wonder")]
    {
        let c = h.connect_via(via(SASL_LISTENER));
        assert!(!scram_login(&mut h, c, hash, user, password, 2));
        assert!(matches!(h.close_reason(c), Some(CloseReason::Authentication(_))), "{user}");
    }
    let c = h.connect_via(via(SASL_LISTENER));
    handshake(&mut h, c, "PLAIN", 1);
    let (err, msg, _) = authenticate(&mut h, c, b"\0alice\0nope", 1);
    assert_eq!(err, ErrorCode::SASL_AUTHENTICATION_FAILED.0);
    let msg = msg.unwrap();
    assert!(msg.contains("PLAIN") && !msg.contains("nope"), "the password is not echoed: {msg}");
    assert!(matches!(h.close_reason(c), Some(CloseReason::Authentication(_))));
    // An unknown mechanism lists the enabled ones, then closes.
    let c = h.connect_via(via(SASL_LISTENER));
    let (err, mechanisms) = handshake(&mut h, c, "GSSAPI", 1);
    assert_eq!(err, ErrorCode::UNSUPPORTED_SASL_MECHANISM.0);
    assert_eq!(mechanisms, ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]);
    assert!(h.close_reason(c).is_some());
    let mut metrics = String::new();
    h.broker.write_metrics(&mut metrics);
    assert!(metrics.contains("kelp_sasl_authentications_total{result=\"failed\"} 5\n"), "{metrics}");
    assert!(metrics.contains("kelp_sasl_authentications_total{result=\"succeeded\"} 0\n"));
}

#[test]
fn nothing_but_api_versions_and_sasl_is_served_before_authentication() {
    let mut h = Harness::new(config());
    let c = h.connect_via(via(SASL_LISTENER));
    h.send(c, &RequestBody::Metadata(MetadataRequest::default()), 12);
    assert_eq!(h.close_reason(c), Some(CloseReason::Unauthenticated { key: ApiKey::METADATA.0 }));
    // SaslAuthenticate before a handshake.
    let c = h.connect_via(via(SASL_LISTENER));
    h.send(c, &RequestBody::SaslAuthenticate(SaslAuthenticateRequest::default()), 1);
    assert!(matches!(h.close_reason(c), Some(CloseReason::Authentication(_))));
    // A frame over 512 KiB before authentication closes the connection at its size prefix.
    let c = h.connect_via(via(SASL_LISTENER));
    h.send_raw(c, &(512 * 1024 + 1_i32).to_be_bytes());
    assert!(matches!(h.close_reason(c), Some(CloseReason::FrameTooLarge { .. })));
    // A connection on the plaintext listener is served without any of it.
    let c = h.connect_via(via(PLAIN_LISTENER));
    assert_eq!(metadata(&mut h, c).1, 9092);
}

#[test]
fn the_v0_handshake_carries_bare_tokens() {
    let mut h = Harness::new(config());
    let admin = h.connect_via(via(PLAIN_LISTENER));
    alter(&mut h, admin, vec![upsert("alice", H::Sha256, "wonder", 4096)], vec![]);
    let c = h.connect_via(via(SASL_LISTENER));
    assert_eq!(handshake(&mut h, c, "PLAIN", 0).0, 0);
    let token = b"\0alice\0wonder";
    let mut frame = (token.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(token);
    h.send_raw(c, &frame);
    assert_eq!(h.recv_bare(c).as_deref(), Some(&b""[..]), "PLAIN's empty answer, size-prefixed");
    assert_eq!(metadata(&mut h, c).1, 9093);
    // A wrong bare token closes without an answer.
    let c = h.connect_via(via(SASL_LISTENER));
    handshake(&mut h, c, "PLAIN", 0);
    let mut frame = 12_i32.to_be_bytes().to_vec();
    frame.extend_from_slice(b"\0alice\0wrong");
    h.send_raw(c, &frame);
    assert!(matches!(h.close_reason(c), Some(CloseReason::Authentication(_))));
    assert_eq!(h.recv_bare(c), None);
}

#[test]
fn credentials_are_described_altered_deleted_and_survive_a_restart() {
    let mut h = Harness::new(config());
    let admin = h.connect_via(via(PLAIN_LISTENER));
    alter(
        &mut h,
        admin,
        vec![
            upsert("alice", H::Sha512, "a", 4096),
            upsert("alice", H::Sha256, "a", 5000),
            upsert("bob", H::Sha256, "b", 4096),
        ],
        vec![],
    );
    let describe = |h: &mut Harness, users: Option<Vec<&str>>| {
        let req = DescribeUserScramCredentialsRequest {
            users: users
                .map(|u| u.into_iter().map(|n| UserName { name: KStr::from(n), ..Default::default() }).collect()),
            ..Default::default()
        };
        let r = expect_body!(
            h.call(admin, RequestBody::DescribeUserScramCredentials(req), 0),
            DescribeUserScramCredentials
        );
        r.results
            .iter()
            .map(|x| {
                let infos: Vec<(i8, i32)> = x.credential_infos.iter().map(|i| (i.mechanism, i.iterations)).collect();
                (x.user.to_string(), x.error_code, infos)
            })
            .collect::<Vec<_>>()
    };
    let all = vec![("alice".to_string(), 0, vec![(1, 5000), (2, 4096)]), ("bob".to_string(), 0, vec![(1, 4096)])];
    assert_eq!(describe(&mut h, None), all);
    assert_eq!(describe(&mut h, Some(vec![])), all);
    assert_eq!(
        describe(&mut h, Some(vec!["bob", "carol", "bob"])),
        [
            ("bob".to_string(), ErrorCode::DUPLICATE_RESOURCE.0, vec![]),
            ("carol".to_string(), ErrorCode::RESOURCE_NOT_FOUND.0, vec![])
        ]
    );
    // Refusals, each for its user only.
    let del =
        |name: &str, mechanism: i8| ScramCredentialDeletion { name: KStr::from(name), mechanism, ..Default::default() };
    let mut bad_salt = upsert("erin", H::Sha256, "e", 4096);
    bad_salt.salt = Bytes::new();
    let mut short = upsert("fred", H::Sha256, "f", 4096);
    short.salted_password = Bytes::from_static(b"short");
    let mut unknown = upsert("gina", H::Sha256, "g", 4096);
    unknown.mechanism = 3;
    let results = alter(
        &mut h,
        admin,
        vec![
            upsert("carol", H::Sha256, "c", 4095),
            upsert("dave", H::Sha512, "d", 16385),
            bad_salt,
            short,
            unknown,
            upsert("", H::Sha256, "x", 4096),
            upsert("bob", H::Sha512, "b2", 4096),
        ],
        vec![del("alice", 1), del("bob", 2), del("zed", 1)],
    );
    assert_eq!(
        results,
        [
            ("alice".to_string(), 0),
            ("bob".to_string(), ErrorCode::DUPLICATE_RESOURCE.0),
            ("zed".to_string(), ErrorCode::RESOURCE_NOT_FOUND.0),
            ("carol".to_string(), ErrorCode::UNACCEPTABLE_CREDENTIAL.0),
            ("dave".to_string(), ErrorCode::UNACCEPTABLE_CREDENTIAL.0),
            ("erin".to_string(), ErrorCode::UNACCEPTABLE_CREDENTIAL.0),
            ("fred".to_string(), ErrorCode::UNACCEPTABLE_CREDENTIAL.0),
            ("gina".to_string(), ErrorCode::UNSUPPORTED_SASL_MECHANISM.0),
            (String::new(), ErrorCode::UNACCEPTABLE_CREDENTIAL.0),
        ]
    );
    let dup = alter(&mut h, admin, vec![upsert("bob", H::Sha256, "b3", 4096)], vec![del("bob", 1)]);
    assert_eq!(dup, [("bob".to_string(), ErrorCode::DUPLICATE_RESOURCE.0)]);
    let after = vec![("alice".to_string(), 0, vec![(2, 4096)]), ("bob".to_string(), 0, vec![(1, 4096)])];
    assert_eq!(describe(&mut h, None), after, "only alice's SHA-256 credential went");
    // A restart recovers them from the store, and they still authenticate.
    let mut h = h.restart(config());
    let admin2 = h.connect_via(via(PLAIN_LISTENER));
    assert_eq!(admin2, admin, "connection ids start over");
    assert_eq!(describe(&mut h, None), after);
    let c = h.connect_via(via(SASL_LISTENER));
    assert!(scram_login(&mut h, c, H::Sha256, "bob", "b", 2));
    let c = h.connect_via(via(SASL_LISTENER));
    assert!(!scram_login(&mut h, c, H::Sha256, "alice", "a", 2), "deleted");
}

#[test]
fn a_tls_client_certificate_names_the_principal_without_sasl() {
    let mut c = config();
    c.listeners[1].protocol = SecurityProtocol::Ssl;
    let mut h = Harness::new(c);
    let conn = h.connect_via(Origin { listener: SASL_LISTENER, tls_subject: Some(KStr::from("CN=alice,O=kelp")) });
    assert_eq!(metadata(&mut h, conn), ("secure.example".to_string(), 9093));
}

#[test]
fn a_credential_that_could_not_be_stored_does_not_take_effect() {
    let mut h = Harness::new(config());
    let admin = h.connect_via(via(PLAIN_LISTENER));
    alter(&mut h, admin, vec![upsert("alice", H::Sha512, "old", 4096)], vec![]);
    h.auto_storage = false;
    let req = AlterUserScramCredentialsRequest {
        upsertions: vec![upsert("alice", H::Sha512, "new", 4096)],
        ..Default::default()
    };
    h.send(admin, &RequestBody::AlterUserScramCredentials(req), 0);
    assert!(h.fail_one_storage(kelp_core::io::StorageError::Unavailable));
    h.auto_storage = true;
    h.drive();
    let (_, r) = h.recv(admin, ApiKey::ALTER_USER_SCRAM_CREDENTIALS, 0).expect("answered");
    let r = expect_body!(r, AlterUserScramCredentials);
    assert_ne!(r.results[0].error_code, 0, "the failure is reported");
    let c = h.connect_via(via(SASL_LISTENER));
    assert!(scram_login(&mut h, c, H::Sha512, "alice", "old", 2), "the old password still works");
    let c = h.connect_via(via(SASL_LISTENER));
    assert!(!scram_login(&mut h, c, H::Sha512, "alice", "new", 2));
}
