//! TLS and SASL end to end: the real `kelp` binary with two listeners, real Kafka clients over
//! the secure one, and hostile connections written here.
//!
//! Every test starts its own `kelp serve` (memory store) with `--listeners` naming a PLAINTEXT
//! listener, used by the harness for setup (SCRAM users by AlterUserScramCredentials, kcat's
//! topic), and a listener called SECURE mapped to SASL_SSL, SSL or SASL_PLAINTEXT by
//! `--listener-security-protocol-map`. Certificates come from a throwaway CA made per test
//! (`kelp_tests::tls::Pki`): a server certificate for `localhost` and 127.0.0.1, client
//! certificates `CN=<client>,O=kelp`.
//!
//! - `sasl_ssl_scram_512_<client>`: the client's produce-verify mode (produce, read back, compare)
//!   over SASL_SSL with SCRAM-SHA-512 as a user made first; `ssl_client_cert_<client>`: the same
//!   over SSL with a client certificate and `--ssl-client-auth required`. The clients are
//!   confluent-kafka, kafka-python 2.3 and 3.0, kafkajs, the Java client and kcat; they take the
//!   same security flags (`--security-protocol`, `--sasl-*`, `--ssl-*`, see
//!   `tests/e2e/clients/e2e_common.py`). `sasl_ssl_plain_kcat`: kcat over SASL_SSL with PLAIN.
//! - `java_admin_scram_users`: the Java Admin client (over SASL_SSL, as a SCRAM-SHA-256 user)
//!   creates, describes and deletes SCRAM credentials; the credential it made then works for a
//!   SCRAM-SHA-512 login and the one it deleted does not.
//! - ACLs (`--authorizer acl`; `User:ANONYMOUS`, the PLAINTEXT listener's principal, is a
//!   super user there so that the harness can make users, topics and bindings):
//!   `java_admin_manages_acls`: the Java Admin client, as the super user `User:admin` over
//!   SASL_SSL, creates LITERAL, PREFIXED, group and DENY bindings, describes them with ANY,
//!   principal, permission, LITERAL and MATCH filters, deletes some by a filter and has invalid
//!   ones refused with InvalidRequestException, checking exactly what comes back each time;
//!   `User:alice` may not describe them. `acls_decide_what_a_scram_client_may_do_<client>`:
//!   alice's produce is refused with a topic authorization error without bindings and with
//!   only DESCRIBE and READ, and her produce-verify passes once she may WRITE.
//!   `ssl_client_cert_principal_is_authorized_by_its_subject`: bindings for
//!   `User:CN=alice,OU=e2e,O=kelp` (the subject as Java prints it) let that certificate's
//!   clients produce-verify and refuse a certificate of another subject.
//! - Hostile input, from raw sockets and a rustls client: wrong passwords and unknown users
//!   (SASL_AUTHENTICATION_FAILED with a message, then the connection closes), requests before
//!   authentication, bytes that are not a TLS ClientHello, handshakes that stop halfway or
//!   continue with garbage, an oversized SaslAuthenticate, malformed SCRAM messages, clients
//!   without a trusted certificate, and a client that authenticates one byte at a time while a
//!   real client produces and consumes. After each, kelp must still serve a normal client, be
//!   running, and have logged no panic.
//!
//! Nothing is timed: waits are bounded only so that a hung server fails the test. Passwords never
//! appear in the output. The clients come from `scripts/install-clients.sh` (a missing one skips
//! its test, or fails it under `KELP_E2E_REQUIRE=1`), and kelp is not built here: run
//! `cargo build -p kelp` first (`tests/e2e_clients.rs` says where the binary is looked for).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use kelp_core::codec::generated::describe_acls::{DescribeAclsRequest, DescribeAclsResponse};
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::security::acl::{Operation, PatternType, Permission, ResourceType};
use kelp_tests::acls::allow;
use kelp_tests::clients::{
    Client, Json, KelpListeners, Outcome, Scratch, clients_src, confluent, create_acls, create_topic, installed, java,
    kafka_python, kafkajs, kcat, run_client, serial, tail, upsert_scram_user,
};
use kelp_tests::tls::{
    Identity, KafkaConn, Pki, SaslFailure, ScramClient, ScramHash, Trickle, api_versions_request, authenticate,
    connect_tls, handshake, is_metadata_with_brokers, login_plain, login_scram, metadata_request, tcp, tls_over,
};
use rustls::ClientConnection;

/// How long a client may take, in seconds; the harness allows 30 s more before it kills it.
const CLIENT_TIMEOUT_S: u64 = 90;
/// Records per produce-verify run: enough for several batches, little enough to stay quick.
const COUNT: &str = "200";
/// The SCRAM user the clients log in as, and its password (never printed).
const USER: &str = "alice";
const PASSWORD: &str = "alice-secret-8d1f";
/// The password of `admin`, the super user of the ACL tests (never printed either).
const ADMIN_PASSWORD: &str = "admin-secret-3c9a";
/// SASL_AUTHENTICATION_FAILED.
const SASL_AUTHENTICATION_FAILED: i16 = 58;
/// UNSUPPORTED_SASL_MECHANISM.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// The largest frame kelp reads before authentication (core's `sasl::MAX_RECEIVE`).
const MAX_UNAUTHENTICATED_FRAME: usize = 512 * 1024;

// ---- the server ----------------------------------------------------------------------------

/// A kelp with a PLAINTEXT listener and a SECURE one, its certificates and its scratch
/// directory. Fields drop in order: the server first, then the files it read.
struct Secure {
    kelp: KelpListeners,
    pki: Pki,
    protocol: &'static str,
    scratch: Scratch,
}

impl Secure {
    /// kelp with SECURE mapped to `protocol` (SASL_SSL, SSL or SASL_PLAINTEXT); `client_auth`
    /// is `--ssl-client-auth` for the TLS protocols.
    fn start(name: &str, protocol: &'static str, client_auth: &str) -> Self {
        Self::start_with(name, protocol, client_auth, &[])
    }

    /// [`Secure::start`] with `extra` arguments after the others (`--authorizer acl ...`).
    fn start_with(name: &str, protocol: &'static str, client_auth: &str, extra: &[String]) -> Self {
        let scratch = Scratch::new(name);
        let pki = Pki::new(&scratch.path("pki"), name);
        let data = scratch.path("data");
        let kelp = KelpListeners::start(2, |addrs| {
            let listeners = format!("PLAINTEXT://{},SECURE://{}", addrs[0], addrs[1]);
            let mut args: Vec<String> = [
                "--storage",
                "memory",
                "--admin-listen",
                "off",
                "--schema-registry-listen",
                "off",
                "--listeners",
                &listeners,
                "--advertised-listeners",
                &listeners,
                "--listener-security-protocol-map",
                &format!("PLAINTEXT:PLAINTEXT,SECURE:{protocol}"),
            ]
            .map(String::from)
            .to_vec();
            args.extend(["--data-dir".into(), data.display().to_string()]);
            if protocol.ends_with("SSL") {
                for (flag, path) in [
                    ("--ssl-certificate-location", &pki.server.chain),
                    ("--ssl-key-location", &pki.server.key),
                    ("--ssl-client-ca-location", &pki.ca),
                ] {
                    args.extend([flag.to_string(), path.display().to_string()]);
                }
                args.extend(["--ssl-client-auth".into(), client_auth.into()]);
            }
            if protocol.starts_with("SASL_") {
                args.extend(["--sasl-enabled-mechanisms".into(), "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN".into()]);
            }
            args.extend_from_slice(extra);
            args
        });
        Self { kelp, pki, protocol, scratch }
    }

    fn plaintext(&self) -> SocketAddr {
        self.kelp.addrs[0]
    }

    fn secure(&self) -> SocketAddr {
        self.kelp.addrs[1]
    }

    /// A connection to the SECURE listener: TLS (with `identity`'s certificate, if given) on
    /// the SSL protocols, plain TCP on SASL_PLAINTEXT.
    fn connect(&self, identity: Option<&kelp_tests::tls::Identity>) -> KafkaConn<Box<dyn ReadWrite>> {
        let stream: Box<dyn ReadWrite> = if self.protocol.ends_with("SSL") {
            let config = self.pki.client_config(identity);
            Box::new(connect_tls(self.secure(), config).unwrap_or_else(|e| panic!("TLS to {}: {e}", self.secure())))
        } else {
            Box::new(tcp(self.secure()).unwrap_or_else(|e| panic!("TCP to {}: {e}", self.secure())))
        };
        KafkaConn::new(stream)
    }

    /// Panics unless kelp is running with no panic logged and serves a normal client on the
    /// SECURE listener: authentication as [`USER`] where SASL is on (with a client certificate
    /// where TLS is), then a Metadata request.
    fn assert_serves(&mut self) {
        self.kelp.assert_healthy();
        let alice = self.pki.client("serves-check", "alice", "kelp");
        let mut conn = self.connect(Some(&alice));
        if self.protocol.starts_with("SASL_") {
            login_scram(&mut conn, "SCRAM-SHA-512", USER, PASSWORD)
                .unwrap_or_else(|e| panic!("a normal SCRAM-SHA-512 login failed: {e:?}\n{}", self.kelp.log_tail()));
        }
        let body = conn
            .call(&metadata_request(), 1)
            .unwrap_or_else(|e| panic!("Metadata after login: {e}\n{}", self.kelp.log_tail()));
        assert!(is_metadata_with_brokers(&body), "Metadata after login: {body:?}");
        self.kelp.assert_healthy();
    }

    /// Makes [`USER`] with SCRAM-SHA-512 and SCRAM-SHA-256 credentials (4096 iterations).
    fn add_user(&self) {
        upsert_scram_user(self.plaintext(), USER, PASSWORD, &["SCRAM-SHA-512", "SCRAM-SHA-256"], 4096);
    }
}

/// A byte stream a [`KafkaConn`] can own, TLS or not.
trait ReadWrite: std::io::Read + std::io::Write + Send {}
impl<T: std::io::Read + std::io::Write + Send> ReadWrite for T {}

// ---- the real clients ----------------------------------------------------------------------

/// How a client authenticates in a produce-verify test.
#[derive(Clone, Copy)]
enum Auth {
    /// SASL_SSL, SCRAM-SHA-512 as [`USER`]; the client checks the server certificate.
    SaslSslScram512,
    /// SASL_SSL, PLAIN as [`USER`] (kelp checks the password against the SCRAM credential).
    SaslSslPlain,
    /// SSL with a client certificate; kelp requires one.
    SslClientCert,
}

/// The client's arguments for `auth`.
fn security_args(s: &Secure, client: &Client, auth: Auth) -> Vec<String> {
    let ca = s.pki.ca.display().to_string();
    match auth {
        Auth::SaslSslScram512 | Auth::SaslSslPlain => [
            "--security-protocol",
            "SASL_SSL",
            "--sasl-mechanism",
            if matches!(auth, Auth::SaslSslPlain) { "PLAIN" } else { "SCRAM-SHA-512" },
            "--sasl-username",
            USER,
            "--sasl-password",
            PASSWORD,
            "--ssl-ca",
            &ca,
        ]
        .map(String::from)
        .to_vec(),
        Auth::SslClientCert => cert_args(s, &s.pki.client(client.id, client.id, "kelp")),
    }
}

/// The arguments for SSL with `id`'s client certificate.
fn cert_args(s: &Secure, id: &Identity) -> Vec<String> {
    [
        "--security-protocol",
        "SSL",
        "--ssl-ca",
        &s.pki.ca.display().to_string(),
        "--ssl-cert",
        &id.chain.display().to_string(),
        "--ssl-key",
        &id.key.display().to_string(),
        "--ssl-keystore",
        &id.keystore.display().to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// A command line as it may be shown: the value after `--sasl-password` or `--scram-password`
/// hidden.
fn shown(args: &[String]) -> String {
    let mut out = Vec::with_capacity(args.len());
    let mut hide = false;
    for a in args {
        out.push(if hide { "***".to_string() } else { a.clone() });
        hide = a == "--sasl-password" || a == "--scram-password";
    }
    out.join(" ")
}

/// Runs `client` with `args` (after its own prefix) against `s` and panics with everything it
/// and kelp said unless it exits 0 with a JSON summary line; returns the summary.
fn run(s: &Secure, client: &Client, args: &[String]) -> String {
    let (out, report) = run_outcome(s, client, args);
    let passed = out.status.is_some_and(|st| st.success());
    let summary = out.stdout.lines().last().unwrap_or("").to_string();
    if !passed || !summary.starts_with('{') {
        panic!("{} failed: {report}", client.name);
    }
    println!("{summary}\n({} took {:.1} s)", client.name, out.elapsed.as_secs_f64());
    summary
}

/// Runs `client` with `args` against `s` (bounded, its process group killed after) and
/// panics if it printed the password; returns what it did and a report of it for failure
/// messages (how it ended, the command line with passwords hidden, its output and kelp's log).
fn run_outcome(s: &Secure, client: &Client, args: &[String]) -> (Outcome, String) {
    let mut all = client.prefix.clone();
    all.extend_from_slice(args);
    let mut cmd = Command::new(&client.program);
    cmd.args(&all).current_dir(clients_src());
    let limit = Duration::from_secs(CLIENT_TIMEOUT_S + 30);
    let out = run_client(&s.scratch, cmd, limit);
    for secret in [PASSWORD, ADMIN_PASSWORD] {
        assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret), "{} printed a password", client.name);
    }
    let how = out.status.map_or_else(|| format!("killed after {limit:?}"), |st| st.to_string());
    let report = format!(
        "{how}\ncommand: {} {}\n--- stdout\n{}\n--- stderr\n{}\n--- kelp log (last lines)\n{}",
        client.program.display(),
        shown(&all),
        out.stdout.trim_end(),
        tail(&out.stderr, 80),
        s.kelp.log_tail(),
    );
    (out, report)
}

/// `client`'s produce-verify over the SECURE listener with `auth`.
fn produce_verify(client: Result<Client, String>, auth: Auth) {
    let Some((client, _serial)) = installed(client) else { return };
    let (protocol, client_auth, tag) = match auth {
        Auth::SaslSslScram512 => ("SASL_SSL", "none", "scram"),
        Auth::SaslSslPlain => ("SASL_SSL", "none", "plain"),
        Auth::SslClientCert => ("SSL", "required", "cert"),
    };
    let topic = format!("sec-{}-{tag}", client.id);
    let mut s = Secure::start(&topic, protocol, client_auth);
    if !matches!(auth, Auth::SslClientCert) {
        s.add_user();
    }
    let mut args: Vec<String> = ["--bootstrap", &s.secure().to_string(), "--topic", &topic, "--mode", "produce-verify"]
        .map(String::from)
        .to_vec();
    args.extend(
        ["--count", COUNT, "--compression", "none", "--timeout", &CLIENT_TIMEOUT_S.to_string()].map(String::from),
    );
    if client.id == "kcat" {
        create_topic(s.plaintext(), &topic, 3); // kcat has no admin API
    } else {
        args.push("--create".into());
    }
    args.extend(security_args(&s, &client, auth));
    let summary = run(&s, &client, &args);
    assert!(
        summary.contains(&format!("\"security_protocol\": \"{protocol}\""))
            || summary.contains(&format!("\"security_protocol\":\"{protocol}\"")),
        "{}: the summary does not name {protocol}: {summary}",
        client.name
    );
    s.kelp.assert_healthy();
}

#[test]
fn sasl_ssl_scram_512_confluent() {
    produce_verify(confluent(), Auth::SaslSslScram512);
}

#[test]
fn sasl_ssl_scram_512_kafka_python_2() {
    produce_verify(kafka_python("venv-kp2", "kafka-python 2.3", "kp2"), Auth::SaslSslScram512);
}

#[test]
fn sasl_ssl_scram_512_kafka_python_3() {
    produce_verify(kafka_python("venv-kp3", "kafka-python 3.0", "kp3"), Auth::SaslSslScram512);
}

#[test]
fn sasl_ssl_scram_512_kafkajs() {
    produce_verify(kafkajs(), Auth::SaslSslScram512);
}

#[test]
fn sasl_ssl_scram_512_java() {
    produce_verify(java(), Auth::SaslSslScram512);
}

#[test]
fn sasl_ssl_scram_512_kcat() {
    produce_verify(kcat(), Auth::SaslSslScram512);
}

/// kcat 1.7.1 is built on librdkafka 2.0.2, whose SCRAM client-final message repeats the client
/// nonce (librdkafka#4895, fixed in 2.6.1), so its SCRAM login depends on how strictly the server
/// compares nonces; PLAIN covers its SASL_SSL path either way.
#[test]
fn sasl_ssl_plain_kcat() {
    produce_verify(kcat(), Auth::SaslSslPlain);
}

#[test]
fn ssl_client_cert_confluent() {
    produce_verify(confluent(), Auth::SslClientCert);
}

#[test]
fn ssl_client_cert_kafka_python_2() {
    produce_verify(kafka_python("venv-kp2", "kafka-python 2.3", "kp2"), Auth::SslClientCert);
}

#[test]
fn ssl_client_cert_kafka_python_3() {
    produce_verify(kafka_python("venv-kp3", "kafka-python 3.0", "kp3"), Auth::SslClientCert);
}

#[test]
fn ssl_client_cert_kafkajs() {
    produce_verify(kafkajs(), Auth::SslClientCert);
}

#[test]
fn ssl_client_cert_java() {
    produce_verify(java(), Auth::SslClientCert);
}

#[test]
fn ssl_client_cert_kcat() {
    produce_verify(kcat(), Auth::SslClientCert);
}

/// The Java Admin client manages SCRAM credentials over SASL_SSL (logged in with
/// SCRAM-SHA-256), and what it made is what kelp then authenticates with.
#[test]
fn java_admin_scram_users() {
    let Some((client, _serial)) = installed(java()) else { return };
    let mut s = Secure::start("sec-java-scram-users", "SASL_SSL", "none");
    upsert_scram_user(s.plaintext(), "admin", ADMIN_PASSWORD, &["SCRAM-SHA-256"], 4096);
    s.add_user();
    let ca = s.pki.ca.display().to_string();
    let args: Vec<String> = [
        "--bootstrap",
        &s.secure().to_string(),
        "--topic",
        "unused",
        "--mode",
        "scram-users",
        "--timeout",
        &CLIENT_TIMEOUT_S.to_string(),
        "--security-protocol",
        "SASL_SSL",
        "--sasl-mechanism",
        "SCRAM-SHA-256",
        "--sasl-username",
        "admin",
        "--sasl-password",
        ADMIN_PASSWORD,
        "--ssl-ca",
        &ca,
        "--scram-user",
        "bob",
        "--scram-password",
        "bob-secret-77e2",
    ]
    .map(String::from)
    .to_vec();
    run(&s, &client, &args);

    // The Admin left bob with SCRAM-SHA-512 only.
    let mut conn = s.connect(None);
    login_scram(&mut conn, "SCRAM-SHA-512", "bob", "bob-secret-77e2").expect("bob logs in with SCRAM-SHA-512");
    let body = conn.call(&metadata_request(), 1).expect("Metadata as bob");
    assert!(is_metadata_with_brokers(&body), "{body:?}");
    let mut conn = s.connect(None);
    match login_scram(&mut conn, "SCRAM-SHA-256", "bob", "bob-secret-77e2") {
        Err(SaslFailure::Authenticate(SASL_AUTHENTICATION_FAILED, _)) => {}
        other => panic!("bob's deleted SCRAM-SHA-256 credential: {other:?}"),
    }
    s.assert_serves();
}

// ---- ACLs ----------------------------------------------------------------------------------

/// CLUSTER_AUTHORIZATION_FAILED.
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

/// `--authorizer acl` with `super_users` (`;`-separated). The ACL tests name `User:ANONYMOUS`
/// among them: it is the principal of every connection to the PLAINTEXT listener, which the
/// harness uses for setup only (on loopback): the first SCRAM credentials (with the authorizer
/// on, AlterUserScramCredentials needs ALTER on the cluster, and someone must make the first
/// admin's), topics and ACLs. The clients under test use SECURE, where nobody is anonymous.
fn acl_args(super_users: &str) -> Vec<String> {
    ["--authorizer", "acl", "--super-users", super_users].map(String::from).to_vec()
}

/// SASL_SSL with SCRAM-SHA-512 as `user`.
fn scram_args(s: &Secure, user: &str, password: &str) -> Vec<String> {
    let ca = s.pki.ca.display().to_string();
    [
        "--security-protocol",
        "SASL_SSL",
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--sasl-username",
        user,
        "--sasl-password",
        password,
        "--ssl-ca",
        &ca,
    ]
    .map(String::from)
    .to_vec()
}

/// A produce-verify run of `topic` (made by the harness: no `--create`) on SECURE.
fn produce_verify_args(s: &Secure, topic: &str) -> Vec<String> {
    [
        "--bootstrap",
        &s.secure().to_string(),
        "--topic",
        topic,
        "--mode",
        "produce-verify",
        "--count",
        ACL_COUNT,
        "--compression",
        "none",
        "--timeout",
        &CLIENT_TIMEOUT_S.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// Records per produce-verify run in the ACL tests.
const ACL_COUNT: &str = "100";

/// The group confluent_client.py's read-back consumer names (librdkafka needs a group.id; the
/// consumer assigns partitions and never joins, but librdkafka still looks the group's
/// coordinator up, which needs DESCRIBE on the group). The Java client reads without one.
fn readback_group(topic: &str) -> String {
    format!("kelp-e2e-unjoined-{topic}")
}

/// `summary`'s member `key` as text (a string as it is, anything else as JSON would show it).
fn member(summary: &str, key: &str) -> String {
    let json = Json::parse(summary).unwrap_or_else(|| panic!("not a JSON summary: {summary}"));
    match json.get(key) {
        Some(Json::Str(text)) => text.clone(),
        Some(Json::Num(n)) => format!("{n}"),
        Some(other) => format!("{other:?}"),
        None => panic!("the summary has no {key}: {summary}"),
    }
}

/// Panics unless `client`'s produce-verify `args` is refused with a topic authorization
/// error for `topic`; returns how many sends were refused. The Java client says so itself
/// (`--expect-authorization-error`: exit 0 only when every send it made failed with
/// TopicAuthorizationException naming the topic; it stops sending after a send refused at
/// metadata). confluent_client.py must exit 1 (not be killed at the time limit) on its
/// produce with every send failed (`FAIL: N of N sends failed`), and every failure it lists
/// must be librdkafka's TOPIC_AUTHORIZATION_FAILED.
fn expect_topic_authorization_error(s: &Secure, client: &Client, args: &[String], topic: &str) -> u32 {
    if client.id == "java" {
        let mut args = args.to_vec();
        args.push("--expect-authorization-error".into());
        let summary = run(s, client, &args);
        let error = member(&summary, "authorization_error");
        assert!(
            error.starts_with("TopicAuthorizationException") && error.contains(topic),
            "the Java client's refusal does not name {topic}: {summary}"
        );
        let refused = member(&summary, "refused").parse::<u32>().unwrap_or(0);
        assert!(refused >= 1, "{summary}");
        return refused;
    }
    let (out, report) = run_outcome(s, client, args);
    let exited_with_failure = out.status.is_some_and(|st| st.code() == Some(1));
    assert!(exited_with_failure, "{} was expected to fail with a topic authorization error: {report}", client.name);
    let last = out.stderr.lines().last().unwrap_or("");
    let counts = last
        .strip_prefix("FAIL: ")
        .and_then(|rest| rest.strip_suffix(" sends failed"))
        .and_then(|rest| rest.split_once(" of "))
        .and_then(|(n, of)| Some((n.parse::<u32>().ok()?, of.parse::<u32>().ok()?)));
    let Some((failed, sent)) = counts else {
        panic!("{} failed, but not on its sends: {report}", client.name);
    };
    assert_eq!(failed, sent, "{} had sends that did not fail: {report}", client.name);
    let listed: Vec<&str> = out.stderr.lines().filter(|l| l.contains("delivery failed:")).collect();
    assert!(
        !listed.is_empty() && listed.iter().all(|l| l.contains("TOPIC_AUTHORIZATION_FAILED")),
        "{} failed, but not with TOPIC_AUTHORIZATION_FAILED: {report}",
        client.name
    );
    println!("{} refused as expected: {} ({})", client.name, listed[0], last);
    failed
}

/// The Java Admin client manages ACLs over SASL_SSL as `User:admin`, a super user (the
/// checks themselves are in JavaClient.java's `acls` mode); then `User:alice`, who has no
/// ALTER or DESCRIBE on the cluster, may not list them, and the admin sees from here the two
/// bindings the mode left.
#[test]
fn java_admin_manages_acls() {
    let Some((client, _serial)) = installed(java()) else { return };
    let mut s = Secure::start_with("sec-java-acls", "SASL_SSL", "none", &acl_args("User:admin;User:ANONYMOUS"));
    upsert_scram_user(s.plaintext(), "admin", ADMIN_PASSWORD, &["SCRAM-SHA-512"], 4096);
    s.add_user();
    let mut args: Vec<String> = [
        "--bootstrap",
        &s.secure().to_string(),
        "--topic",
        "orders-eu",
        "--group",
        "orders-readers",
        "--mode",
        "acls",
        "--timeout",
        &CLIENT_TIMEOUT_S.to_string(),
    ]
    .map(String::from)
    .to_vec();
    args.extend(scram_args(&s, "admin", ADMIN_PASSWORD));
    let summary = run(&s, &client, &args);
    for (key, want) in
        [("sasl_username", "admin"), ("steps", "14"), ("created", "5"), ("deleted", "3"), ("remaining", "2")]
    {
        assert_eq!(member(&summary, key), want, "{key} in {summary}");
    }

    let every = RequestBody::DescribeAcls(DescribeAclsRequest {
        resource_type_filter: ResourceType::ANY.0,
        resource_name_filter: None,
        pattern_type_filter: PatternType::ANY.0,
        principal_filter: None,
        host_filter: None,
        operation: Operation::ANY.0,
        permission_type: Permission::ANY.0,
        ..Default::default()
    });
    let describe = |user: &str, password: &str| -> DescribeAclsResponse {
        let mut conn = s.connect(None);
        login_scram(&mut conn, "SCRAM-SHA-512", user, password).unwrap_or_else(|e| panic!("{user} logs in: {e:?}"));
        match conn.call(&every, 3) {
            Ok(ResponseBody::DescribeAcls(r)) => r,
            other => panic!("DescribeAcls as {user}: {other:?}"),
        }
    };
    let r = describe(USER, PASSWORD);
    assert_eq!(r.error_code, CLUSTER_AUTHORIZATION_FAILED, "DescribeAcls as alice: {r:?}");
    assert!(r.resources.is_empty(), "DescribeAcls as alice showed bindings: {r:?}");
    let r = describe("admin", ADMIN_PASSWORD);
    assert_eq!(r.error_code, 0, "DescribeAcls as admin: {r:?}");
    let mut left: Vec<String> = r
        .resources
        .iter()
        .flat_map(|res| {
            res.acls.iter().map(move |a| {
                format!(
                    "{}:{}:{} {}@{} {} {}",
                    res.resource_type,
                    res.pattern_type,
                    res.resource_name.as_str(),
                    a.principal.as_str(),
                    a.host.as_str(),
                    a.operation,
                    a.permission_type
                )
            })
        })
        .collect();
    left.sort();
    let (literal, group, topic) = (PatternType::LITERAL.0, ResourceType::GROUP.0, ResourceType::TOPIC.0);
    let mut want = [
        format!("{group}:{literal}:orders-readers User:alice@* {} {}", Operation::READ.0, Permission::ALLOW.0),
        format!("{topic}:{literal}:* User:mallory@* {} {}", Operation::WRITE.0, Permission::DENY.0),
    ];
    want.sort();
    assert_eq!(left, want, "the bindings kelp holds after the Java Admin's run");
    s.assert_serves();
}

/// `client` as `User:alice` over SASL_SSL with SCRAM-SHA-512, on a topic the harness made:
/// refused with a topic authorization error without ACLs (Metadata does not show alice the
/// topic), still refused with DESCRIBE and READ on it, READ on the read-back group and WRITE on
/// another topic (now by Produce itself; the WRITE elsewhere is what an idempotent producer's
/// InitProducerId needs, KIP-679), and its produce-verify passes once alice may WRITE it too.
fn scram_client_under_acls(client: Result<Client, String>) {
    let Some((client, _serial)) = installed(client) else { return };
    let topic = format!("acl-scram-{}", client.id);
    let mut s = Secure::start_with(&topic, "SASL_SSL", "none", &acl_args("User:admin;User:ANONYMOUS"));
    s.add_user();
    create_topic(s.plaintext(), &topic, 3);
    let mut args = produce_verify_args(&s, &topic);
    args.extend(security_args(&s, &client, Auth::SaslSslScram512));
    let alice = "User:alice";

    expect_topic_authorization_error(&s, &client, &args, &topic);

    let group = readback_group(&topic);
    let elsewhere = format!("{topic}-elsewhere");
    create_acls(
        s.plaintext(),
        &[
            allow(ResourceType::TOPIC, &topic, alice, Operation::DESCRIBE),
            allow(ResourceType::TOPIC, &topic, alice, Operation::READ),
            allow(ResourceType::GROUP, &group, alice, Operation::READ),
            allow(ResourceType::TOPIC, &elsewhere, alice, Operation::WRITE),
        ],
    );
    // Now Metadata shows alice the topic, so every send reaches Produce and is refused there.
    let refused = expect_topic_authorization_error(&s, &client, &args, &topic);
    assert_eq!(refused.to_string(), ACL_COUNT, "{}: sends refused by Produce", client.name);

    create_acls(s.plaintext(), &[allow(ResourceType::TOPIC, &topic, alice, Operation::WRITE)]);
    let summary = run(&s, &client, &args);
    assert_eq!(member(&summary, "records"), ACL_COUNT, "{summary}");
    s.assert_serves();
}

#[test]
fn acls_decide_what_a_scram_client_may_do_confluent() {
    scram_client_under_acls(confluent());
}

#[test]
fn acls_decide_what_a_scram_client_may_do_java() {
    scram_client_under_acls(java());
}

/// An SSL client's principal is `User:` and its certificate's subject as Java prints it (RFC
/// 2253, most specific first: `CN=alice,OU=e2e,O=kelp` for a certificate whose subject reads
/// O, OU, CN). ACLs granted to that principal (on the topics and read-back groups starting
/// `acl-cert-` and `kelp-e2e-unjoined-acl-cert-`) let the Java client with the certificate
/// produce-verify, and the Java client itself prints the certificate's subject as exactly that
/// name; with a certificate of another subject from the same CA (the same CN and OU, another
/// O) it is refused with a topic authorization error. Then the same with confluent-kafka
/// (librdkafka presenting the certificates through OpenSSL), on a topic of its own.
#[test]
fn ssl_client_cert_principal_is_authorized_by_its_subject() {
    let Some((java, _serial)) = installed(java()) else { return };
    let confluent = confluent();
    let mut s = Secure::start_with("sec-acl-cert", "SSL", "required", &acl_args("User:ANONYMOUS"));
    let alice = s.pki.client_named("alice-e2e", &[("O", "kelp"), ("OU", "e2e"), ("CN", "alice")]);
    assert_eq!(alice.subject, "CN=alice,OU=e2e,O=kelp");
    let other = s.pki.client_named("alice-elsewhere", &[("O", "elsewhere"), ("OU", "e2e"), ("CN", "alice")]);
    let principal = format!("User:{}", alice.subject);
    let prefixed = |rt, name, op| (rt, name, PatternType::PREFIXED, principal.as_str(), op, Permission::ALLOW);
    let group_prefix = readback_group("acl-cert-");
    create_acls(
        s.plaintext(),
        &[
            prefixed(ResourceType::TOPIC, "acl-cert-", Operation::WRITE),
            prefixed(ResourceType::TOPIC, "acl-cert-", Operation::READ),
            prefixed(ResourceType::TOPIC, "acl-cert-", Operation::DESCRIBE),
            prefixed(ResourceType::GROUP, group_prefix.as_str(), Operation::READ),
        ],
    );

    let topic = "acl-cert-java";
    create_topic(s.plaintext(), topic, 3);
    let mut args = produce_verify_args(&s, topic);
    args.extend(cert_args(&s, &alice));
    let summary = run(&s, &java, &args);
    assert_eq!(member(&summary, "client_subject"), alice.subject, "Java names the certificate otherwise: {summary}");
    assert_eq!(member(&summary, "records"), ACL_COUNT, "{summary}");
    let mut args = produce_verify_args(&s, topic);
    args.extend(cert_args(&s, &other));
    expect_topic_authorization_error(&s, &java, &args, topic);

    match confluent {
        Ok(confluent) => {
            let topic = "acl-cert-confluent";
            create_topic(s.plaintext(), topic, 3);
            let mut args = produce_verify_args(&s, topic);
            args.extend(cert_args(&s, &other));
            expect_topic_authorization_error(&s, &confluent, &args, topic);
            let mut args = produce_verify_args(&s, topic);
            args.extend(cert_args(&s, &alice));
            let summary = run(&s, &confluent, &args);
            assert_eq!(member(&summary, "records"), ACL_COUNT, "{summary}");
        }
        Err(why) => kelp_tests::skip(&why),
    }
    s.assert_serves();
}

// ---- hostile and broken clients ------------------------------------------------------------

/// A failed authentication that must be SASL_AUTHENTICATION_FAILED with a message, after which
/// the connection closes.
fn expect_refused<S: std::io::Read + std::io::Write>(
    conn: &mut KafkaConn<S>,
    what: &str,
    result: Result<(), SaslFailure>,
) {
    match result {
        Err(SaslFailure::Authenticate(SASL_AUTHENTICATION_FAILED, Some(message))) if !message.is_empty() => {
            assert!(!message.contains(PASSWORD), "{what}: the error message shows the password");
            println!("{what}: refused: {message}");
        }
        other => panic!("{what}: expected SASL_AUTHENTICATION_FAILED with a message, got {other:?}"),
    }
    conn.expect_closed().unwrap_or_else(|e| panic!("{what}: after the refusal {e}"));
}

#[test]
fn sasl_ssl_wrong_passwords_and_unknown_users_are_refused() {
    let _serial = serial();
    let mut s = Secure::start("sec-wrong-password", "SASL_SSL", "none");
    s.add_user();
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256"] {
        let mut conn = s.connect(None);
        let r = login_scram(&mut conn, mechanism, USER, "not-the-password");
        expect_refused(&mut conn, &format!("{mechanism} with a wrong password"), r);
        let mut conn = s.connect(None);
        let r = login_scram(&mut conn, mechanism, "nobody", PASSWORD);
        expect_refused(&mut conn, &format!("{mechanism} as an unknown user"), r);
    }
    let mut conn = s.connect(None);
    let r = login_plain(&mut conn, USER, "not-the-password");
    expect_refused(&mut conn, "PLAIN with a wrong password", r);
    let mut conn = s.connect(None);
    let r = login_plain(&mut conn, "nobody", PASSWORD);
    expect_refused(&mut conn, "PLAIN as an unknown user", r);

    // The right passwords work with every mechanism, and after them the connection is served.
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        let mut conn = s.connect(None);
        let r = if mechanism == "PLAIN" {
            login_plain(&mut conn, USER, PASSWORD)
        } else {
            login_scram(&mut conn, mechanism, USER, PASSWORD)
        };
        r.unwrap_or_else(|e| panic!("{mechanism} with the right password: {e:?}"));
        let body = conn.call(&metadata_request(), 1).expect("Metadata after login");
        assert!(is_metadata_with_brokers(&body), "{mechanism}: {body:?}");
    }
    s.assert_serves();
}

#[test]
fn sasl_ssl_requests_before_authentication_close_the_connection() {
    let _serial = serial();
    let mut s = Secure::start("sec-before-auth", "SASL_SSL", "none");
    s.add_user();

    // ApiVersions is served before authentication; Metadata closes the connection.
    let mut conn = s.connect(None);
    let body = conn.call(&api_versions_request(), 3).expect("ApiVersions before authentication");
    assert!(
        matches!(body, kelp_core::codec::generated::ResponseBody::ApiVersions(ref v) if v.error_code == 0),
        "{body:?}"
    );
    assert!(conn.call(&metadata_request(), 1).is_err(), "Metadata before authentication was answered");
    conn.expect_closed().expect("closed after Metadata before authentication");

    // The same after a handshake but before the exchange ends.
    let mut conn = s.connect(None);
    handshake(&mut conn, "SCRAM-SHA-512").expect("handshake");
    assert!(conn.call(&metadata_request(), 1).is_err(), "Metadata in the middle of SASL was answered");

    // An unknown mechanism: UNSUPPORTED_SASL_MECHANISM, then closed.
    let mut conn = s.connect(None);
    assert_eq!(handshake(&mut conn, "GSSAPI"), Err(SaslFailure::Handshake(UNSUPPORTED_SASL_MECHANISM)));
    conn.expect_closed().expect("closed after an unsupported mechanism");

    // SaslAuthenticate without a handshake.
    let mut conn = s.connect(None);
    assert!(
        authenticate(&mut conn, b"n,,n=alice,r=abc").is_err(),
        "SaslAuthenticate before SaslHandshake was answered"
    );
    s.assert_serves();
}

#[test]
fn tls_garbage_instead_of_a_client_hello() {
    let _serial = serial();
    let mut s = Secure::start("sec-garbage-hello", "SASL_SSL", "none");
    s.add_user();
    let frame = kelp_core::codec::encode_request_frame(&api_versions_request(), 3, 1, Some("plaintext-client"));
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let http = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    let bad_record = [&[0x16u8, 0x03, 0x01, 0xff, 0xff][..], &[0u8; 64][..]].concat();
    for (what, bytes) in [
        ("a plaintext Kafka request", frame.to_vec()),
        ("noise", noise),
        ("an HTTP request", http),
        ("a handshake record claiming 64 KiB", bad_record),
    ] {
        let mut conn = KafkaConn::new(tcp(s.secure()).expect("TCP"));
        let _ = conn.send_bytes(&bytes); // kelp may close before it all arrives
        conn.expect_closed().unwrap_or_else(|e| panic!("{what} instead of a ClientHello: {e}"));
        s.assert_serves();
    }
}

/// The TLS records a fresh rustls client would send first (its ClientHello).
fn client_hello(s: &Secure) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    let mut tls = ClientConnection::new(s.pki.client_config(None), name).expect("a TLS client");
    let mut hello = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut hello).expect("write to a Vec");
    }
    hello
}

#[test]
fn tls_handshakes_that_stop_halfway_or_turn_to_garbage() {
    let _serial = serial();
    let mut s = Secure::start("sec-halfway", "SASL_SSL", "none");
    s.add_user();
    let hello = client_hello(&s);

    // A ClientHello and then silence: others are served meanwhile.
    let mut silent = tcp(s.secure()).expect("TCP");
    silent.write_all(&hello).expect("ClientHello");
    // Half a ClientHello and then silence.
    let mut half = tcp(s.secure()).expect("TCP");
    half.write_all(&hello[..hello.len() / 2]).expect("half a ClientHello");
    s.assert_serves();

    // Half a ClientHello and then the end of the stream.
    let mut conn = KafkaConn::new(tcp(s.secure()).expect("TCP"));
    conn.send_bytes(&hello[..hello.len() / 2]).expect("half a ClientHello");
    conn.stream.shutdown(std::net::Shutdown::Write).expect("shutdown");
    conn.expect_closed().expect("closed after half a ClientHello and EOF");

    // A ClientHello, then garbage where the rest of the handshake should be.
    let mut conn = KafkaConn::new(tcp(s.secure()).expect("TCP"));
    conn.send_bytes(&hello).expect("ClientHello");
    let _ = conn.send_bytes(&[0x17; 2048]);
    conn.expect_closed().expect("closed after garbage following the ClientHello");

    // The handshake done, then garbage instead of TLS records.
    let config = s.pki.client_config(None);
    let mut tls = connect_tls(s.secure(), config).expect("TLS handshake");
    let _ = tls.sock.write_all(b"\x00\x01\x02 not a TLS record at all \xff\xfe");
    let mut conn = KafkaConn::new(tls);
    conn.expect_closed().expect("closed after garbage following the handshake");

    drop((silent, half));
    s.assert_serves();
}

#[test]
fn sasl_ssl_oversized_sasl_authenticate_closes_the_connection() {
    let _serial = serial();
    let mut s = Secure::start("sec-oversized", "SASL_SSL", "none");
    s.add_user();
    oversized(&mut s);
}

/// Frames over the limit before authentication (announced, then partly sent): as the first
/// request, and as the SaslAuthenticate after a handshake. Each closes the connection.
fn oversized(s: &mut Secure) {
    let big = MAX_UNAUTHENTICATED_FRAME + 1;
    let mut conn = s.connect(None);
    let mut frame = u32::try_from(big).expect("size").to_be_bytes().to_vec();
    frame.extend_from_slice(&[0u8; 8 * 1024]);
    let _ = conn.send_bytes(&frame);
    conn.expect_closed().expect("closed after an oversized first frame");

    let mut conn = s.connect(None);
    handshake(&mut conn, "SCRAM-SHA-512").expect("handshake");
    // A real SaslAuthenticate v2 header with a token of `big` bytes, sent in pieces until kelp
    // hangs up (it may read no further than the size).
    let body = kelp_core::codec::generated::RequestBody::SaslAuthenticate(
        kelp_core::codec::generated::sasl_authenticate::SaslAuthenticateRequest {
            auth_bytes: bytes::Bytes::from(vec![b'x'; big]),
            ..Default::default()
        },
    );
    let frame = kelp_core::codec::encode_request_frame(&body, 2, 7, Some("too-big"));
    for piece in frame.chunks(64 * 1024) {
        if conn.send_bytes(piece).is_err() {
            break;
        }
    }
    conn.expect_closed().expect("closed after an oversized SaslAuthenticate");
    s.assert_serves();
}

#[test]
fn sasl_plaintext_malformed_scram_and_oversized_tokens_close_the_connection() {
    let _serial = serial();
    let mut s = Secure::start("sec-malformed", "SASL_PLAINTEXT", "none");
    s.add_user();
    s.assert_serves(); // SASL_PLAINTEXT logins work at all

    let firsts: [(&str, &[u8]); 6] = [
        ("an empty token", b""),
        ("binary noise", b"\xff\xfe\x00\x01\x02garbage"),
        ("channel binding asked for", b"p=tls-server-end-point,,n=alice,r=abcdefgh"),
        ("no user name", b"n,,r=abcdefgh"),
        ("an empty nonce", b"n,,n=alice,r="),
        ("a bad user name escape", b"n,,n=al=ZZice,r=abcdefgh"),
    ];
    for (what, token) in firsts {
        let mut conn = s.connect(None);
        handshake(&mut conn, "SCRAM-SHA-512").expect("handshake");
        match authenticate(&mut conn, token) {
            Err(SaslFailure::Authenticate(code, _)) => assert_ne!(code, 0, "{what}"),
            Err(SaslFailure::Io(_)) => {}
            other => panic!("client-first with {what}: expected a refusal, got {other:?}"),
        }
        conn.expect_closed().unwrap_or_else(|e| panic!("client-first with {what}: {e}"));
    }

    // `NONCE` stands for the nonce the exchange agreed on.
    let finals = [
        ("another nonce", "c=biws,r=not-the-nonce,p=AAAA"),
        ("no proof", "c=biws,r=NONCE"),
        ("a proof that is not base64", "c=biws,r=NONCE,p=%%%%"),
        ("a short proof", "c=biws,r=NONCE,p=AAAA"),
        ("channel binding data", "c=eSws,r=NONCE,p=AAAA"),
    ];
    for (what, template) in finals {
        let mut conn = s.connect(None);
        handshake(&mut conn, "SCRAM-SHA-512").expect("handshake");
        let scram = ScramClient::new(ScramHash::Sha512, USER, PASSWORD);
        let server_first = authenticate(&mut conn, &scram.client_first()).expect("server-first");
        let text = String::from_utf8_lossy(&server_first).into_owned();
        let nonce = text.split(',').find_map(|f| f.strip_prefix("r=")).expect("a nonce").to_string();
        let token = template.replace("NONCE", &nonce);
        match authenticate(&mut conn, token.as_bytes()) {
            Err(SaslFailure::Authenticate(code, _)) => assert_ne!(code, 0, "{what}"),
            Err(SaslFailure::Io(_)) => {}
            other => panic!("client-final with {what}: expected a refusal, got {other:?}"),
        }
        conn.expect_closed().unwrap_or_else(|e| panic!("client-final with {what}: {e}"));
    }
    s.assert_serves();
    oversized(&mut s);
}

#[test]
fn ssl_client_auth_required_refuses_clients_without_a_trusted_certificate() {
    let _serial = serial();
    let mut s = Secure::start("sec-cert-required", "SSL", "required");

    // No certificate: the handshake or the first request fails.
    let refused = |stream: std::io::Result<rustls::StreamOwned<ClientConnection, TcpStream>>| match stream {
        Err(_) => true,
        Ok(tls) => KafkaConn::new(tls).call(&api_versions_request(), 3).is_err(),
    };
    assert!(refused(connect_tls(s.secure(), s.pki.client_config(None))), "a client without a certificate was served");

    // A certificate from another CA.
    let other = Pki::new(&s.scratch.path("other-pki"), "other");
    let mallory = other.client("mallory", "mallory", "elsewhere");
    // Trusting kelp's CA, presenting the other CA's certificate.
    let config = s.pki.client_config(Some(&mallory));
    assert!(refused(connect_tls(s.secure(), config)), "a client with an untrusted certificate was served");

    s.assert_serves(); // with a certificate from kelp's CA
}

#[test]
fn sasl_ssl_one_byte_at_a_time_login_while_a_client_works() {
    let Some((client, _serial)) = installed(confluent()) else { return };
    let mut s = Secure::start("sec-trickle", "SASL_SSL", "none");
    s.add_user();

    // The TLS handshake and the SASL exchange reach kelp one byte per TCP segment, 3 ms apart.
    let addr = s.secure();
    let config = s.pki.client_config(None);
    let slow = std::thread::spawn(move || -> Result<(), String> {
        let sock = tcp(addr).map_err(|e| format!("TCP: {e}"))?;
        let trickle = Trickle { inner: sock, pause: Duration::from_millis(3) };
        let tls = tls_over(trickle, config).map_err(|e| format!("TLS handshake: {e}"))?;
        let mut conn = KafkaConn::new(tls);
        login_scram(&mut conn, "SCRAM-SHA-512", USER, PASSWORD).map_err(|e| format!("login: {e:?}"))?;
        match conn.call(&metadata_request(), 1) {
            Ok(body) if is_metadata_with_brokers(&body) => Ok(()),
            other => Err(format!("Metadata after the slow login: {other:?}")),
        }
    });

    let topic = "sec-trickle-confluent";
    let mut args: Vec<String> =
        ["--bootstrap", &addr.to_string(), "--topic", topic, "--mode", "produce-verify"].map(String::from).to_vec();
    args.extend(["--count", COUNT, "--create", "--timeout", &CLIENT_TIMEOUT_S.to_string()].map(String::from));
    args.extend(security_args(&s, &client, Auth::SaslSslScram512));
    run(&s, &client, &args);

    slow.join()
        .expect("the slow client's thread")
        .unwrap_or_else(|e| panic!("the slow client: {e}\n{}", s.kelp.log_tail()));
    s.assert_serves();
}
