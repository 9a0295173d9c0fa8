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

/// The inode of the server's side of the TCP connection between `server` and `client` as
/// `/proc/net/tcp` lists it: 0 while no file holds the socket (not accepted yet, or closed and
/// lingering in the kernel), `None` once the kernel has forgotten it.
fn server_side_inode(server: SocketAddr, client: SocketAddr) -> Option<u64> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(a) => format!("{:08X}:{:04X}", u32::from_ne_bytes(a.ip().octets()), a.port()),
        SocketAddr::V6(_) => unreachable!("IPv4 loopback only"),
    };
    let (local, remote) = (hex(server), hex(client));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str()) && f.get(2) == Some(&remote.as_str())).then(|| f.get(9)?.parse().ok())?
    })
}

/// Waits (at most `limit`) until the server has closed its socket of the connection from
/// `client`; false if it still holds it then.
fn released_within(server: SocketAddr, client: SocketAddr, limit: Duration) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if server_side_inode(server, client).is_none_or(|inode| inode == 0) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[tokio::test]
async fn a_connection_the_broker_closes_releases_its_socket_at_once() {
    with_listeners(ClientAuth::None, |s| {
        // A negative frame size: bad framing, which the broker answers by closing. The client
        // then sends nothing and keeps its side open: only the server can end the connection.
        let mut plain = connect(s.plain).expect("connect");
        plain.write_all(&[0xff; 4]).expect("send");
        assert_eq!(read_to_end(&mut plain), Vec::<u8>::new(), "closed without an answer");
        let client = plain.local_addr().expect("an address");
        assert!(released_within(s.plain, client, Duration::from_secs(10)), "the server still holds the socket");

        let mut tls = connect_tls(s.secure, s.pki.client_config(None)).expect("a TLS handshake");
        check_api_versions(&mut tls, 0).expect("served");
        tls.write_all(&[0xff; 4]).expect("send");
        tls.flush().expect("send");
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut tls, &mut rest);
        assert!(rest.is_empty(), "closed without an answer: {rest:?}");
        let client = tls.sock.local_addr().expect("an address");
        assert!(released_within(s.secure, client, Duration::from_secs(10)), "the server still holds the TLS socket");
        // The server goes on serving.
        let mut again = connect(s.plain).expect("connect");
        check_api_versions(&mut again, 0).expect("still served");
    })
    .await;
}

#[tokio::test]
async fn a_stop_cancels_the_handshakes_under_way() {
    let pki = Pki::new("tokio-stop");
    let source = Arc::new(TlsSource::new(pki.server_settings("localhost", ClientAuth::None)).expect("TLS settings"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let addr = listener.local_addr().expect("an address");
    let config = Config {
        listeners: vec![Listener {
            name: "SECURE".into(),
            protocol: SecurityProtocol::Ssl,
            host: "127.0.0.1".into(),
            port: i32::from(addr.port()),
        }],
        ..Config::default()
    };
    let (tx, rx) = oneshot::channel();
    let server = serve(
        vec![Bound { listener, index: 0, tls: Some(source) }],
        move |now| Broker::new(config, 7, now),
        Box::new(MemoryStore::new()),
        Options { shutdown_grace: Duration::from_secs(2), ..Options::default() },
        move |c| drop(tx.send(c)),
    );
    let client = async move {
        let control = rx.await.expect("the control handle");
        // A client that connects and never says hello: its handshake waits.
        let silent = tokio::task::spawn_blocking(move || {
            let silent = connect(addr).expect("connect");
            let client = silent.local_addr().expect("an address");
            // Accepted: a file holds the server's socket.
            let accepted = (0..1000).any(|_| {
                std::thread::sleep(Duration::from_millis(10));
                server_side_inode(addr, client).is_some_and(|inode| inode != 0)
            });
            assert!(accepted, "the server did not accept the connection");
            (silent, client)
        });
        let (silent, client) = silent.await.expect("the client");
        control.stop();
        (silent, client)
    };
    let (served, (silent, client)) = tokio::join!(server, client);
    served.expect("serve returns cleanly");
    // The handshake was cancelled: its socket is closed well before the handshake's own
    // deadline (kelp_driver::tls::HANDSHAKE_TIMEOUT, 10 s) would have closed it.
    let released = tokio::task::spawn_blocking(move || released_within(addr, client, Duration::from_secs(5)))
        .await
        .expect("the check");
    assert!(released, "the stopped server still holds a handshaking socket");
    drop(silent);
}
