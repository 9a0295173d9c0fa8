//! Named listeners on the mio driver: a plaintext one and a TLS one side by side, real sockets
//! on loopback and real TLS (rustls on both ends, certificates from a throwaway CA). The
//! server runs on a thread of its own, the blocking clients on the test's.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use kelp_core::config::{Listener, SecurityProtocol};
use kelp_core::{Broker, Config};
use kelp_driver::TlsSource;
use kelp_driver::testpki::{
    Pki, api_versions_request, check_api_versions, connect, connect_tls, pipeline, read_to_end,
};
use kelp_driver::tls::ClientAuth;
use kelp_runtime_mio::{Bound, Options, serve};
use kelp_storage::MemoryStore;
use rcgen::DnType;

/// The two listeners' addresses, and the CA the TLS one's certificate comes from.
struct Setup {
    plain: SocketAddr,
    secure: SocketAddr,
    pki: Pki,
}

/// Serves a PLAINTEXT listener (index 0) and an SSL one (index 1, `client_auth`) on the memory
/// store configured by `config` (its listeners replaced), runs `client`, then stops the server
/// and waits for it.
fn with_config(config: Config, client_auth: ClientAuth, client: impl FnOnce(&Setup)) {
    let pki = Pki::new("mio");
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
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        serve(
            bounds,
            move |now| Broker::new(config, 7, now),
            Box::new(MemoryStore::new()),
            Options { shutdown_grace: Duration::from_secs(2), ..Options::default() },
            move |c| drop(tx.send(c)),
        )
    });
    let control = rx.recv().expect("the control handle");
    // The server stops whether the client's checks pass or not.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| client(&setup)));
    control.stop();
    server.join().expect("the server thread").expect("serve returns cleanly");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn with_listeners(client_auth: ClientAuth, client: impl FnOnce(&Setup)) {
    with_config(Config::default(), client_auth, client);
}

#[test]
fn plaintext_and_tls_listeners_both_serve_kafka() {
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
        wrong.write_all(&api_versions_request(1, 3)).expect("send");
        let got = read_to_end(&mut wrong);
        assert!(got.first().is_none_or(|b| *b == 0x15), "at most a TLS alert, then the end: {got:?}");
    });
}

#[test]
fn a_garbage_handshake_is_dropped_and_others_are_served() {
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
    });
}

#[test]
fn required_client_auth_takes_ca_signed_certificates_only() {
    with_listeners(ClientAuth::Required, |s| {
        let refused = connect_tls(s.secure, s.pki.client_config(None)).and_then(|mut c| check_api_versions(&mut c, 0));
        assert!(refused.is_err(), "a client without a certificate is not served");
        let alice = s.pki.issue(&[(DnType::OrganizationName, "example"), (DnType::CommonName, "alice")], &[]);
        let mut tls = connect_tls(s.secure, s.pki.client_config(Some(&alice))).expect("a TLS handshake");
        check_api_versions(&mut tls, 0).expect("a client with a CA-signed certificate is served");
        let mut plain = connect(s.plain).expect("connect");
        check_api_versions(&mut plain, 0).expect("the plaintext listener asks for nothing");
    });
}

#[test]
fn a_tls_pipeline_goes_through_pauses_in_order() {
    // Few unwritten bytes and few requests in flight: the connection pauses and resumes often.
    let config = Config { max_unwritten_per_conn: 2048, max_in_flight_per_conn: 8, ..Config::default() };
    with_config(config, ClientAuth::None, |s| {
        let mut tls = connect_tls(s.secure, s.pki.client_config(None)).expect("a TLS handshake");
        pipeline(&mut tls, 500).expect("every response, in order");
        check_api_versions(&mut tls, 0).expect("still served");
        let mut plain = connect(s.plain).expect("connect");
        pipeline(&mut plain, 500).expect("every response, in order");
    });
}

/// A loopback listener whose connections have a small kernel send buffer (inherited from the
/// listening socket): what the server has not written yet stays in the server, not in the
/// kernel.
fn small_buffer_listener() -> TcpListener {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("a runtime");
    let _in = rt.enter();
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_send_buffer_size(4096).expect("SO_SNDBUF");
    socket.bind("127.0.0.1:0".parse().expect("an address")).expect("bind");
    socket.listen(16).expect("listen").into_std().expect("a std listener")
}

/// A blocking connection to `addr` with a small kernel receive buffer.
fn small_buffer_connect(addr: SocketAddr) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("a runtime");
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = rt.block_on(socket.connect(addr)).expect("connect").into_std().expect("a std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    stream.set_write_timeout(Some(Duration::from_secs(30))).expect("timeout");
    stream
}

/// `kelp_requests_total` for ApiVersions, once the server has read `n` of them (bounded wait).
fn wait_for_requests(control: &kelp_runtime_mio::Control, n: u64) {
    for _ in 0..3000 {
        let snap = control.snapshot(true, Duration::from_secs(5)).expect("the server answers");
        let read = snap
            .metrics
            .lines()
            .find(|l| l.starts_with("kelp_requests_total{") && l.contains("ApiVersions"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0);
        if read >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the server did not read {n} requests");
}

/// Until the server says it is stopping (bounded wait).
fn wait_for_stopping(control: &kelp_runtime_mio::Control) {
    for _ in 0..3000 {
        match control.snapshot(false, Duration::from_secs(5)) {
            Some(s) if s.serving => std::thread::sleep(Duration::from_millis(10)),
            _ => return,
        }
    }
    panic!("the server did not begin to stop");
}

/// A client owed `n` responses when the server is asked to stop gets every one, in order, and
/// then the end of the stream: the TLS close_notify after them on TLS. The server's socket and
/// the client's have small kernel buffers, so that most of the responses are still inside the
/// server (in rustls, for TLS) when it is asked to stop. With `half_close`, the client ends
/// its side once the stop has begun, and still reads.
fn stop_with_responses_owed(tls: bool, half_close: bool) {
    const N: i32 = 2000;
    let pki = Pki::new("mio-stop");
    let source = Arc::new(TlsSource::new(pki.server_settings("localhost", ClientAuth::None)).expect("TLS settings"));
    let listener = small_buffer_listener();
    let addr = listener.local_addr().expect("an address");
    let protocol = if tls { SecurityProtocol::Ssl } else { SecurityProtocol::Plaintext };
    let config = Config {
        listeners: vec![Listener {
            name: "L".into(),
            protocol,
            host: "127.0.0.1".into(),
            port: i32::from(addr.port()),
        }],
        ..Config::default()
    };
    let bound = Bound { listener, index: 0, tls: tls.then_some(source) };
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        serve(
            vec![bound],
            move |now| Broker::new(config, 7, now),
            Box::new(MemoryStore::new()),
            Options { shutdown_grace: Duration::from_secs(30), ..Options::default() },
            move |c| drop(tx.send(c)),
        )
    });
    let control = rx.recv().expect("the control handle");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let sock = small_buffer_connect(addr);
        let mut requests = Vec::new();
        for corr in 0..N {
            requests.extend_from_slice(&api_versions_request(corr, 3));
        }
        let mut stream: Box<dyn ReadWrite> = if tls {
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
            let conn = rustls::ClientConnection::new(pki.client_config(None), name).expect("a client");
            let mut s = rustls::StreamOwned::new(conn, sock.try_clone().expect("a clone"));
            while s.conn.is_handshaking() {
                s.conn.complete_io(&mut s.sock).expect("the handshake");
            }
            Box::new(s)
        } else {
            Box::new(sock.try_clone().expect("a clone"))
        };
        stream.write_all(&requests).expect("send");
        stream.flush().expect("send");
        // Every request is read (and answered: ApiVersions needs no storage) before the stop.
        wait_for_requests(&control, N as u64);
        control.stop();
        if half_close {
            wait_for_stopping(&control);
            sock.shutdown(std::net::Shutdown::Write).expect("half-close");
        }
        for want in 0..N {
            let mut head = [0u8; 8];
            stream.read_exact(&mut head).unwrap_or_else(|e| panic!("response {want} of {N}: {e}"));
            let size = i32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
            let corr = i32::from_be_bytes(head[4..].try_into().expect("4 bytes"));
            assert_eq!(corr, want, "responses in order");
            let mut rest = vec![0u8; usize::try_from(size).expect("a size") - 4];
            stream.read_exact(&mut rest).unwrap_or_else(|e| panic!("response {want} of {N}: {e}"));
        }
        // Then the end: on TLS a close_notify (rustls reads it as a clean end, 0), else FIN.
        let mut more = [0u8; 1];
        assert_eq!(stream.read(&mut more).expect("a clean end"), 0, "nothing after the responses");
    }));
    control.stop();
    server.join().expect("the server thread").expect("serve returns cleanly");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[test]
fn a_graceful_stop_writes_every_tls_response_then_close_notify() {
    stop_with_responses_owed(true, false);
}

#[test]
fn a_graceful_stop_writes_every_plaintext_response() {
    stop_with_responses_owed(false, false);
}

#[test]
fn a_half_closed_tls_peer_still_gets_its_responses_at_a_stop() {
    stop_with_responses_owed(true, true);
}

#[test]
fn a_half_closed_plaintext_peer_still_gets_its_responses_at_a_stop() {
    stop_with_responses_owed(false, true);
}
