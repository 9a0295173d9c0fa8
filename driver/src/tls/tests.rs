use std::sync::Arc;

use rcgen::{DnType, DnValue};
use rustls::{ClientConfig, ClientConnection, ServerConnection};

use super::*;
use crate::testpki::{Pki, set_mtime};

/// Runs a handshake between `client` and a server on `server` in memory, both sides real
/// rustls connections; the server side once done, or the first error of either side.
fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Result<ServerConnection, rustls::Error> {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    let mut c = ClientConnection::new(client, name)?;
    let mut s = ServerConnection::new(server)?;
    // Each round moves everything one side has for the other; a handshake takes a few.
    for _ in 0..10 {
        pass(&mut c, &mut s)?;
        pass(&mut s, &mut c)?;
        if !c.is_handshaking() && !s.is_handshaking() {
            // The client's last flight (and, in TLS 1.3, the server's verdict on it).
            pass(&mut c, &mut s)?;
            pass(&mut s, &mut c)?;
            return Ok(s);
        }
    }
    panic!("the handshake did not finish");
}

/// Moves what `from` has to send into `to`, and lets `to` process it.
fn pass<A, B>(
    from: &mut rustls::ConnectionCommon<A>,
    to: &mut rustls::ConnectionCommon<B>,
) -> Result<(), rustls::Error> {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).expect("write to memory");
    }
    let mut rest = &wire[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).expect("read from memory");
        to.process_new_packets()?;
    }
    Ok(())
}

/// The subject of the certificate the server presented to a client trusting `pki`.
fn served_subject(config: Arc<ServerConfig>, pki: &Pki) -> String {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    let mut c = ClientConnection::new(pki.client_config(None), name).expect("a client");
    let mut s = ServerConnection::new(config).expect("a server");
    while c.is_handshaking() || s.is_handshaking() {
        pass(&mut c, &mut s).expect("the handshake goes on");
        pass(&mut s, &mut c).expect("the handshake goes on");
    }
    let certs = c.peer_certificates().expect("the server presented a certificate");
    subject_dn(&certs[0]).expect("a parsable certificate")
}

#[test]
fn subject_dn_lists_the_most_specific_name_first() {
    let pki = Pki::new("dn");
    let cert = pki.issue(
        &[
            (DnType::CountryName, "US"),
            (DnType::OrganizationName, "example"),
            (DnType::OrganizationalUnitName, "eng"),
            (DnType::CommonName, "alice"),
        ],
        &["localhost"],
    );
    assert_eq!(subject_dn(&cert.cert).as_deref(), Some("CN=alice,OU=eng,O=example,C=US"));
}

#[test]
fn subject_dn_escapes_as_java_does() {
    let pki = Pki::new("escape");
    let cert = pki.issue(
        &[(DnType::OrganizationName, "a,b+c\"d\\e<f>g;h=i#j"), (DnType::CommonName, " #lead and trail ")],
        &["localhost"],
    );
    assert_eq!(subject_dn(&cert.cert).as_deref(), Some(r#"CN=\ \#lead and trail\ ,O=a\,b\+c\"d\\e\<f\>g\;h\=i\#j"#));
}

#[test]
fn subject_dn_prints_unnamed_types_by_oid_and_hex() {
    let email = rcgen::string::Ia5String::try_from("a@b.c").expect("ascii");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CustomDnType(vec![1, 2, 840, 113_549, 1, 9, 1]), DnValue::Ia5String(email));
    params.distinguished_name.push(DnType::CommonName, "carol");
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = params.self_signed(&key).expect("a certificate");
    assert_eq!(subject_dn(cert.der()).as_deref(), Some("CN=carol,1.2.840.113549.1.9.1=#16056140622e63"));
}

/// One attribute of a hand-made name: the OID's content bytes, the value's tag and content.
type Attr<'a> = (&'a [u8], u8, &'a [u8]);

/// DER of a Name: each inner list one RDN.
fn name_der(rdns: &[&[Attr<'_>]]) -> Vec<u8> {
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        assert!(body.len() < 128, "short form only");
        let mut out = vec![tag, body.len() as u8];
        out.extend_from_slice(body);
        out
    }
    let mut seq = Vec::new();
    for rdn in rdns {
        let mut set = Vec::new();
        for (oid, tag, value) in *rdn {
            let mut ava = tlv(0x06, oid);
            ava.extend(tlv(*tag, value));
            set.extend(tlv(0x30, &ava));
        }
        seq.extend(tlv(0x31, &set));
    }
    tlv(0x30, &seq)
}

#[test]
fn multi_valued_rdns_join_with_plus_and_other_string_types_decode() {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    const UID: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01];
    let der = name_der(&[
        &[(O, 0x13, b"example")],
        &[(CN, 0x0c, b"alice"), (UID, 0x16, b"a1")],
        // BMPString "\u{e9}t\u{e9}" and a T61String "caf\u{e9}" in Latin-1: Java's RFC 2253
        // name reads both as UTF-8 (NULs escaped, a byte that is no UTF-8 as U+FFFD).
        &[(CN, 0x1e, &[0x00, 0xe9, 0x00, 0x74, 0x00, 0xe9])],
        &[(O, 0x14, &[0x63, 0x61, 0x66, 0xe9])],
    ]);
    let (_, name) = X509Name::from_der(&der).expect("a name");
    assert_eq!(rfc2253(&name), "O=caf\u{fffd},CN=\\00\u{fffd}\\00t\\00\u{fffd},CN=alice+UID=a1,O=example");
    // UTF-8 in a BMPString or a T61String is read as such.
    let der = name_der(&[&[(CN, 0x1e, "\u{e9}t\u{e9}".as_bytes())], &[(O, 0x14, "caf\u{e9}".as_bytes())]]);
    let (_, name) = X509Name::from_der(&der).expect("a name");
    assert_eq!(rfc2253(&name), "O=caf\u{e9},CN=\u{e9}t\u{e9}");
    // Bytes that are no UTF-8 in a UTF8String or a PrintableString: U+FFFD, not hex.
    let der = name_der(&[&[(CN, 0x0c, &[0x61, 0xff, 0x62])], &[(O, 0x13, &[0xc3, 0x28])]]);
    let (_, name) = X509Name::from_der(&der).expect("a name");
    assert_eq!(rfc2253(&name), "O=\u{fffd}(,CN=a\u{fffd}b");
    // A UniversalString is no text to Java's RFC 2253 name: hex.
    let der = name_der(&[&[(CN, 0x1c, &[0, 0, 0, 0x61])]]);
    let (_, name) = X509Name::from_der(&der).expect("a name");
    assert_eq!(rfc2253(&name), "CN=#1c0400000061");
    // A known type with a value that is no string is printed as hex too.
    let der = name_der(&[&[(CN, 0x04, &[0x01, 0x02])]]);
    let (_, name) = X509Name::from_der(&der).expect("a name");
    assert_eq!(rfc2253(&name), "CN=#04020102");
}

#[test]
fn bad_files_are_refused_with_one_line_naming_them() {
    let pki = Pki::new("errors");
    let good = pki.server_settings("server", ClientAuth::None);
    let refuse = |s: TlsSettings| {
        let e = TlsSource::new(s).expect_err("refused");
        assert!(!e.contains('\n'), "one line: {e}");
        e
    };

    let missing = pki.dir.join("missing.pem");
    let e = refuse(TlsSettings { certificate: missing.clone(), ..good.clone() });
    assert!(e.contains("cannot read the TLS certificate") && e.contains(&missing.display().to_string()), "{e}");

    let garbage =
        pki.write("garbage.pem", "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n");
    let e = refuse(TlsSettings { certificate: garbage.clone(), ..good.clone() });
    assert!(e.contains("is not valid PEM") && e.contains("garbage.pem"), "{e}");

    let empty = pki.write("empty.pem", "nothing here\n");
    let e = refuse(TlsSettings { certificate: empty.clone(), ..good.clone() });
    assert!(e.contains("holds no PEM certificate"), "{e}");

    let e = refuse(TlsSettings { key: good.certificate.clone(), ..good.clone() });
    assert!(e.contains("holds no PEM private key") && e.contains("server.pem"), "{e}");

    let e = refuse(TlsSettings { key: missing.clone(), ..good.clone() });
    assert!(e.contains("cannot read the TLS private key"), "{e}");

    let other = pki.issue(&[(DnType::CommonName, "other")], &["localhost"]);
    let other_key = pki.write("other.key", &other.key_pem);
    let e = refuse(TlsSettings { key: other_key, ..good.clone() });
    assert!(e.contains("do not make a usable pair"), "{e}");

    for auth in [ClientAuth::Requested, ClientAuth::Required] {
        let e = refuse(TlsSettings { client_ca: None, client_auth: auth, ..good.clone() });
        assert!(e.contains("no client CA"), "{e}");
    }
    let e = refuse(TlsSettings { client_ca: Some(empty), client_auth: ClientAuth::Required, ..good.clone() });
    assert!(e.contains("client CA") && e.contains("holds no PEM certificate"), "{e}");

    // No client authentication needs no CA.
    TlsSource::new(TlsSettings { client_ca: None, ..good }).expect("valid");
}

#[test]
fn client_auth_policies() {
    let pki = Pki::new("auth");
    let alice = pki.issue(&[(DnType::OrganizationName, "example"), (DnType::CommonName, "alice")], &[]);
    let stranger_ca = Pki::new("stranger");
    let mallory = stranger_ca.issue(&[(DnType::CommonName, "mallory")], &[]);
    // A client that trusts our server but presents a certificate of another CA.
    let mallory_config = {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca_cert()).expect("root");
        Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_client_auth_cert(vec![mallory.cert.clone()], mallory.key())
                .expect("identity"),
        )
    };

    let required = TlsSource::new(pki.server_settings("server", ClientAuth::Required)).expect("valid");
    assert!(handshake(required.server_config(), pki.client_config(None)).is_err(), "no certificate: refused");
    assert!(handshake(required.server_config(), mallory_config.clone()).is_err(), "a stranger's: refused");
    let s = handshake(required.server_config(), pki.client_config(Some(&alice))).expect("a CA-signed one: served");
    assert_eq!(peer_subject(&s).as_deref(), Some("CN=alice,O=example"));

    let requested = TlsSource::new(pki.server_settings("server", ClientAuth::Requested)).expect("valid");
    let s = handshake(requested.server_config(), pki.client_config(None)).expect("no certificate: served");
    assert_eq!(peer_subject(&s), None);
    let s = handshake(requested.server_config(), pki.client_config(Some(&alice))).expect("served");
    assert_eq!(peer_subject(&s).as_deref(), Some("CN=alice,O=example"));
    assert!(handshake(requested.server_config(), mallory_config).is_err(), "a stranger's: refused");

    let none = TlsSource::new(pki.server_settings("server", ClientAuth::None)).expect("valid");
    let s = handshake(none.server_config(), pki.client_config(Some(&alice))).expect("served");
    assert_eq!(peer_subject(&s), None, "not asked for, so none presented");

    // Connections are made with bounded buffers.
    let conn = none.connection().expect("a connection");
    assert!(conn.is_handshaking());
}

#[test]
fn a_replaced_certificate_is_served_after_the_next_check() {
    let pki = Pki::new("reload");
    let settings = pki.server_settings("first", ClientAuth::None);
    let source = TlsSource::new(settings.clone()).expect("valid");
    let t0 = Instant::now();
    assert_eq!(served_subject(source.server_config_at(t0), &pki), "CN=first");

    // Replace both files (as a renewal would), with new modification times.
    let second = pki.issue(&[(DnType::CommonName, "second")], &["localhost"]);
    std::fs::write(&settings.certificate, &second.cert_pem).expect("write");
    std::fs::write(&settings.key, &second.key_pem).expect("write");
    set_mtime(&settings.certificate, 2_000_000_000);
    set_mtime(&settings.key, 2_000_000_000);
    // Within the check interval the old configuration stays.
    let before = source.current.lock().expect("lock").next_check;
    assert_eq!(served_subject(source.server_config_at(before - Duration::from_millis(1)), &pki), "CN=first");
    let second_config = source.server_config_at(before);
    assert_eq!(served_subject(second_config.clone(), &pki), "CN=second");

    // A broken replacement keeps the configuration that works.
    std::fs::write(&settings.certificate, "not a certificate").expect("write");
    set_mtime(&settings.certificate, 2_000_000_100);
    let later = before + RELOAD_CHECK;
    let kept = source.server_config_at(later);
    assert!(Arc::ptr_eq(&kept, &second_config), "the previous configuration stays");
    // Still broken at the next check: still the one that works.
    let again = source.server_config_at(later + RELOAD_CHECK);
    assert!(Arc::ptr_eq(&again, &second_config));
    // Fixed files are picked up.
    let third = pki.issue(&[(DnType::CommonName, "third")], &["localhost"]);
    std::fs::write(&settings.certificate, &third.cert_pem).expect("write");
    std::fs::write(&settings.key, &third.key_pem).expect("write");
    set_mtime(&settings.certificate, 2_000_000_200);
    set_mtime(&settings.key, 2_000_000_200);
    let fixed = source.server_config_at(later + RELOAD_CHECK * 2);
    assert_eq!(served_subject(fixed, &pki), "CN=third");
}

#[test]
fn a_certificate_caught_half_written_is_loaded_once_whole_with_the_same_mtime() {
    let pki = Pki::new("half");
    let settings = pki.server_settings("first", ClientAuth::None);
    let source = TlsSource::new(settings.clone()).expect("valid");
    let t0 = source.current.lock().expect("lock").next_check;
    let first = source.server_config_at(t0);
    assert_eq!(served_subject(first.clone(), &pki), "CN=first");

    // The renewal is caught half-written: the check sees new times and files it cannot use.
    let second = pki.issue(&[(DnType::CommonName, "second")], &["localhost"]);
    let half = &second.cert_pem[..second.cert_pem.len() / 2];
    std::fs::write(&settings.certificate, half).expect("write");
    std::fs::write(&settings.key, &second.key_pem).expect("write");
    set_mtime(&settings.certificate, 2_000_000_000);
    set_mtime(&settings.key, 2_000_000_000);
    let t1 = t0 + RELOAD_CHECK;
    assert!(Arc::ptr_eq(&source.server_config_at(t1), &first), "the working configuration stays");
    let failure = source.current.lock().expect("lock").failure.clone();
    assert!(failure.as_deref().is_some_and(|e| e.contains("server.pem")), "the failure is noted: {failure:?}");
    // Before the next check nothing is tried again.
    assert!(Arc::ptr_eq(&source.server_config_at(t1 + RELOAD_CHECK / 2), &first));

    // The rest is written within the same tick of a coarse clock: the time does not change.
    std::fs::write(&settings.certificate, &second.cert_pem).expect("write");
    set_mtime(&settings.certificate, 2_000_000_000);
    let t2 = t1 + RELOAD_CHECK;
    assert_eq!(served_subject(source.server_config_at(t2), &pki), "CN=second", "tried again, and loaded");
    assert_eq!(source.current.lock().expect("lock").failure, None);
}

#[test]
fn client_auth_names_parse() {
    assert_eq!(ClientAuth::parse("REQUIRED"), Some(ClientAuth::Required));
    assert_eq!(ClientAuth::parse("requested"), Some(ClientAuth::Requested));
    assert_eq!(ClientAuth::parse("none"), Some(ClientAuth::None));
    assert_eq!(ClientAuth::parse("want"), None);
}

#[test]
fn nothing_follows_the_handshake_unasked() {
    // A TLS 1.3 server may send session tickets once the handshake is done; kelp sends none
    // (kafka-python takes unasked bytes for a stray response and drops the connection).
    let pki = Pki::new("tickets");
    let source = TlsSource::new(pki.server_settings("server", ClientAuth::None)).expect("valid");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    let mut c = ClientConnection::new(pki.client_config(None), name).expect("client");
    let mut s = ServerConnection::new(source.server_config()).expect("server");
    pass(&mut c, &mut s).expect("client hello");
    pass(&mut s, &mut c).expect("server flight");
    pass(&mut c, &mut s).expect("client finished");
    assert_eq!(s.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    assert!(!s.is_handshaking() && !c.is_handshaking());
    assert!(!s.wants_write(), "the server has nothing to send until asked");
}
