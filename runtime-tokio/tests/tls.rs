//! Named listeners on the tokio driver: a plaintext one and a TLS one side by side, real
//! sockets on loopback and real TLS (rustls on both ends, certificates from a throwaway CA).
//! The clients are blocking and run off the runtime's thread.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use kelp_core::config::{Listener, SecurityProtocol};
use kelp_core::{Broker, Config};
use kelp_driver::TlsSource;
use kelp_driver::testpki::{Pki, check_api_versions, connect, connect_tls, pipeline, read_to_end};
use kelp_driver::tls::ClientAuth;
use kelp_runtime_tokio::{Bound, Options, serve};
use kelp_storage::MemoryStore;
use rcgen::DnType;
use tokio::sync::oneshot;

/// The two listeners' addresses, and the CA the TLS one's certificate comes from.
struct Setup {
    plain: SocketAddr,
    secure: SocketAddr,
    pki: Pki,
}

/// Serves a PLAINTEXT listener (index 0) and an SSL one (index 1, `client_auth`) on the memory
/// store, runs `client` on a blocking thread, then stops the server and waits for it.
async fn with_listeners(client_auth: ClientAuth, client: impl FnOnce(&Setup) + Send + 'static) {
    with_config(Config::default(), client_auth, client).await;
}

/// [`with_listeners`] on a broker configured by `config` (its listeners replaced).
async fn with_config(config: Config, client_auth: ClientAuth, client: impl FnOnce(&Setup) + Send + 'static) {
    let pki = Pki::new("tokio");
    let source = Arc::new(TlsSource::new(pki.server_settings("localhost", client_auth)).expect("TLS settings"));
    let plain = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let secure = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let setup =
        Setup { plain: plain.local_addr().expect("an address"), secure: secure.local_addr().expect("an address"), pki };
    let config = Config {
        listeners: vec![
            Listener::plaintext("127.0.0.1", i32::from(setup.plain.port())),
            Listener {
                name: "SECURE".into(),
                protocol: SecurityProtocol::Ssl,
                host: "127.0.0.1".into(),
                port: i32::from(setup.secure.port()),
            },
        ],
        ..config
    };
    let bounds = vec![Bound::plaintext(plain, 0), Bound { listener: secure, index: 1, tls: Some(source) }];
    let (tx, rx) = oneshot::channel();
    let server = serve(
        bounds,
        move |now| Broker::new(config, 7, now),
        Box::new(MemoryStore::new()),
        Options { shutdown_grace: Duration::from_secs(2), ..Options::default() },
        move |c| drop(tx.send(c)),
    );
    let client = async move {
        let control = rx.await.expect("the control handle");
        let run = tokio::task::spawn_blocking(move || client(&setup));
        let outcome = tokio::time::timeout(Duration::from_secs(60), run).await.expect("the client finishes");
        control.stop();
        outcome.expect("the client's checks pass");
    };
    let (served, ()) = tokio::join!(server, client);
    served.expect("serve returns cleanly");
}

#[tokio::test]
async fn plaintext_and_tls_listeners_both_serve_kafka() {
    with_listeners(ClientAuth::None, |s| {
        let mut plain = connect(s.plain).expect("connect");
        check_api_versions(&mut plain, 10).expect("plaintext ApiVersions");
        let mut tls = connect_tls(s.secure, s.pki.client_config(None)).expect("a TLS handshake");
        check_api_versions(&mut tls, 20).expect("ApiVersions over TLS");
        // Both stay usable, in turn.
        check_api_versions(&mut plain, 30).expect("plaintext again");
        check_api_versions(&mut tls, 40).expect("TLS again");
        // The TLS listener speaks only TLS: a plaintext request there gets no Kafka answer.
        let mut wrong = connect(s.secure).expect("connect");
        wrong.write_all(&kelp_driver::testpki::api_versions_request(1, 3)).expect("send");
        let got = read_to_end(&mut wrong);
        assert!(got.first().is_none_or(|b| *b == 0x15), "at most a TLS alert, then the end: {got:?}");
    })
    .await;
}

#[tokio::test]
async fn a_garbage_handshake_is_dropped_and_others_are_served() {
    with_listeners(ClientAuth::None, |s| {
        // One client connects to the TLS listener and says nothing; another sends garbage.
        let silent = connect(s.secure).expect("connect");
        let mut garbage = connect(s.secure).expect("connect");
        garbage.write_all(&[0x47; 512]).expect("send garbage");
        // Meanwhile a real client is served.
        let mut tls = connect_tls(s.secure, s.pki.client_config(None)).expect("a TLS handshake");
        check_api_versions(&mut tls, 0).expect("ApiVersions over TLS");
        // The garbage ends its connection (an alert at most), and nothing else.
        let got = read_to_end(&mut garbage);
        assert!(got.first().is_none_or(|b| *b == 0x15), "at most a TLS alert, then the end: {got:?}");
        check_api_versions(&mut tls, 10).expect("the TLS client is still served");
        let mut plain = connect(s.plain).expect("connect");
        check_api_versions(&mut plain, 0).expect("and plaintext clients too");
        drop(silent);
    })
    .await;
}

#[tokio::test]
async fn required_client_auth_takes_ca_signed_certificates_only() {
    with_listeners(ClientAuth::Required, |s| {
        let refused = connect_tls(s.secure, s.pki.client_config(None)).and_then(|mut c| check_api_versions(&mut c, 0));
        assert!(refused.is_err(), "a client without a certificate is not served");
        let alice = s.pki.issue(&[(DnType::OrganizationName, "example"), (DnType::CommonName, "alice")], &[]);
        let mut tls = connect_tls(s.secure, s.pki.client_config(Some(&alice))).expect("a TLS handshake");
        check_api_versions(&mut tls, 0).expect("a client with a CA-signed certificate is served");
        let mut plain = connect(s.plain).expect("connect");
        check_api_versions(&mut plain, 0).expect("the plaintext listener asks for nothing");
    })
    .await;
}

#[tokio::test]
async fn a_tls_pipeline_goes_through_pauses_in_order() {
    // Few unwritten bytes and few requests in flight: the connection pauses and resumes often.
    let config = Config { max_unwritten_per_conn: 2048, max_in_flight_per_conn: 8, ..Config::default() };
    with_config(config, ClientAuth::None, |s| {
        let mut tls = connect_tls(s.secure, s.pki.client_config(None)).expect("a TLS handshake");
        pipeline(&mut tls, 500).expect("every response, in order");
        check_api_versions(&mut tls, 0).expect("still served");
        let mut plain = connect(s.plain).expect("connect");
        pipeline(&mut plain, 500).expect("every response, in order");
    })
    .await;
}
