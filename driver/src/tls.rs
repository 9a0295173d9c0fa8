//! TLS for the drivers' listeners, with rustls and its `ring` provider: the server
//! configuration built from PEM files ([`TlsSource`], reloaded when the files change, so that a
//! renewed certificate reaches new connections without a restart), the client certificate
//! policy (Kafka's `ssl.client.auth`, [`ClientAuth`]), and the subject of a verified client
//! certificate as Java prints it ([`subject_dn`]), which is what Kafka's principal for an SSL
//! client is made of.
//!
//! The drivers run the handshake (rustls' own state machine) and hand the connection to the
//! broker when it is done; nothing here does network IO. Key material is never logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// How long a client has to finish its TLS handshake; a connection still shaking hands then
/// is dropped, so that half-open handshakes cannot hold connection slots.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes rustls buffers on a connection for sending (TLS records not yet written to
/// the socket, and plaintext waiting for the handshake). Received plaintext has rustls' own
/// bound (16 KiB), and a record being read is at most one TLS record.
pub const BUFFER_LIMIT: usize = 64 * 1024;

/// How often [`TlsSource::server_config`] looks at the files' modification times.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Whether a TLS listener asks clients for a certificate (Kafka's `ssl.client.auth`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A certificate is asked for; a client without one is served (as `User:ANONYMOUS`), one
    /// with a certificate that does not verify is refused.
    Requested,
    /// A client must present a certificate that chains to the client CA.
    Required,
}

impl ClientAuth {
    /// The setting's names, as Kafka spells them.
    pub const NAMES: [&'static str; 3] = ["none", "requested", "required"];

    /// The policy's name, as Kafka spells it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Requested => "requested",
            Self::Required => "required",
        }
    }

    /// The policy named `s` (case-insensitive).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(Self::None),
            "requested" => Some(Self::Requested),
            "required" => Some(Self::Required),
            _ => None,
        }
    }
}

/// Where a TLS listener's certificate, key and client CA come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The server's certificate chain, PEM, the end-entity certificate first.
    pub certificate: PathBuf,
    /// The certificate's private key, PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
    /// The CA certificates (PEM bundle) client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    /// Whether clients are asked for a certificate.
    pub client_auth: ClientAuth,
}

impl TlsSettings {
    /// The files the configuration is read from.
    fn files(&self) -> impl Iterator<Item = &Path> {
        [Some(self.certificate.as_path()), Some(self.key.as_path()), self.client_ca.as_deref()].into_iter().flatten()
    }
}

/// The current server configuration of the TLS listeners, built from [`TlsSettings`] and
/// rebuilt when the files change. Shared by every TLS listener and every handshake.
#[derive(Debug)]
pub struct TlsSource {
    settings: TlsSettings,
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    config: Arc<ServerConfig>,
    /// The files' modification times the configuration in use was built from.
    stamps: Vec<Option<SystemTime>>,
    next_check: Instant,
    /// Why the last rebuild failed, while the files stay unusable: logged once, not at every
    /// check.
    failure: Option<String>,
}

impl TlsSource {
    /// Reads and checks the files. The error is one line naming the file and what is wrong.
    pub fn new(settings: TlsSettings) -> Result<Self, String> {
        // The times are taken before the files are read: a change while reading is seen later.
        let stamps = stamps(&settings);
        let config = Arc::new(build(&settings)?);
        let next_check = Instant::now() + RELOAD_CHECK;
        Ok(Self { settings, current: Mutex::new(Current { config, stamps, next_check, failure: None }) })
    }

    /// What the source was built from.
    #[must_use]
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// The configuration for a new connection. At most once every [`RELOAD_CHECK`] it looks
    /// at the files' modification times, and when one differs from those of the configuration
    /// in use it builds the configuration again; if that fails, the previous one stays in use,
    /// a warning is logged (once per distinct failure), and the build is tried again at the
    /// next check: a file caught half-written is picked up once it is whole, even if writing
    /// it did not change its modification time again (coarse time stamps).
    #[must_use]
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server_config_at(Instant::now())
    }

    fn server_config_at(&self, now: Instant) -> Arc<ServerConfig> {
        let mut cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if now >= cur.next_check {
            cur.next_check = now + RELOAD_CHECK;
            // The times are taken before the files are read: a change while reading is seen later.
            let stamps = stamps(&self.settings);
            if stamps != cur.stamps {
                match build(&self.settings) {
                    Ok(config) => {
                        // Noted only once the files were usable: until then every check tries
                        // again.
                        cur.stamps = stamps;
                        cur.config = Arc::new(config);
                        cur.failure = None;
                        tracing::info!(certificate = %self.settings.certificate.display(), "TLS: certificate reloaded");
                    }
                    Err(error) if cur.failure.as_ref() != Some(&error) => {
                        tracing::warn!(%error, "TLS: the changed files cannot be used; keeping the previous certificate");
                        cur.failure = Some(error);
                    }
                    Err(_) => {}
                }
            }
        }
        cur.config.clone()
    }

    /// A server connection for a new client, with the current configuration and rustls'
    /// buffers bounded ([`BUFFER_LIMIT`]).
    pub fn connection(&self) -> Result<ServerConnection, rustls::Error> {
        let mut conn = ServerConnection::new(self.server_config())?;
        limit_buffers(&mut conn);
        Ok(conn)
    }
}

/// Bounds what rustls buffers for `conn` ([`BUFFER_LIMIT`]): a peer that does not read cannot
/// grow it.
pub fn limit_buffers(conn: &mut ServerConnection) {
    conn.set_buffer_limit(Some(BUFFER_LIMIT));
}

/// The subject of the verified client certificate of a finished handshake, if the client
/// presented one ([`subject_dn`] of the end-entity certificate).
#[must_use]
pub fn peer_subject(conn: &ServerConnection) -> Option<String> {
    conn.peer_certificates().and_then(<[CertificateDer<'static>]>::first).and_then(subject_dn)
}

/// The provider every configuration is built with: rustls' `ring` backend, chosen so that
/// kelp builds without a C toolchain's cmake and without OpenSSL or aws-lc. rustls marks it
/// deprecated because ring has no post-quantum key exchange; classical X25519/P-256 stay.
#[must_use]
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn stamps(settings: &TlsSettings) -> Vec<Option<SystemTime>> {
    settings.files().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the TLS {what} {}: {e}", path.display()))
}

/// Every certificate in a PEM file; at least one.
fn certificates(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the TLS {what} {} is not valid PEM: {}", path.display(), pem_error(&e)))?;
    if certs.is_empty() {
        return Err(format!("the TLS {what} {} holds no PEM certificate (BEGIN CERTIFICATE)", path.display()));
    }
    Ok(certs)
}

/// A PEM error without the file's bytes in it (a key file's lines are secret).
fn pem_error(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { .. } => "a section has no END line",
        E::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        E::Base64Decode(_) => "a section is not valid base64",
        E::NoItemsFound => "no item of the expected kind",
        E::SectionTooLarge => "a section is too large",
        _ => "malformed",
    }
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read("private key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        use rustls::pki_types::pem::Error as E;
        match e {
            E::NoItemsFound => {
                format!("the TLS private key {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())
            }
            e => format!("the TLS private key {} is not valid PEM: {}", path.display(), pem_error(&e)),
        }
    })
}

/// Builds the server configuration from the files.
fn build(settings: &TlsSettings) -> Result<ServerConfig, String> {
    let provider = provider();
    let verifier = match (settings.client_auth, &settings.client_ca) {
        (ClientAuth::None, _) => WebPkiClientVerifier::no_client_auth(),
        (auth, None) => {
            return Err(format!("TLS client authentication is {} but no client CA is configured", auth.name()));
        }
        (auth, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("client CA", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("the TLS client CA {} holds an unusable certificate: {e}", ca.display()))?;
            }
            let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = if auth == ClientAuth::Requested { builder.allow_unauthenticated() } else { builder };
            builder.build().map_err(|e| format!("the TLS client CA {}: {e}", ca.display()))?
        }
    };
    let chain = certificates("certificate", &settings.certificate)?;
    let key = private_key(&settings.key)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "the TLS certificate {} and private key {} do not make a usable pair: {e}",
                settings.certificate.display(),
                settings.key.display()
            )
        })?;
    // No TLS 1.3 session tickets: they arrive after the handshake, unasked, and a client that
    // watches its socket between requests (kafka-python) takes the bytes for a response nobody
    // asked for and drops the connection. Kafka clients keep their connections open, so
    // resumption saves them little.
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A certificate's subject as Java's `X500Principal.getName()` prints it (RFC 2253): the
/// relative distinguished names most specific first (the reverse of their order in the
/// certificate), separated by `,`, the values of a multi-valued one by `+`; the attribute
/// types RFC 2253 names (CN, L, ST, O, OU, C, STREET, DC, UID) by their keyword, others by
/// their OID with the value as `#` and its DER encoding in hex; string values decoded as
/// UTF-8 whatever their ASN.1 string type (as Java does, see `text`); special characters
/// escaped with `\`. Kafka's principal for an SSL client is `User:` and this name. `None` when
/// the certificate does not parse.
#[must_use]
pub fn subject_dn(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(cert.as_ref()).ok()?;
    Some(rfc2253(cert.subject()))
}

/// RFC 2253 keywords Java prints by name, by OID.
const KEYWORDS: [(&str, &str); 9] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name.iter().map(|rdn| rdn.iter().map(attribute).collect::<Vec<_>>().join("+")).collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn attribute(ava: &AttributeTypeAndValue<'_>) -> String {
    let oid = ava.attr_type().to_id_string();
    let keyword = KEYWORDS.iter().find(|(o, _)| *o == oid).map(|(_, k)| *k);
    let mut out = String::with_capacity(32);
    out.push_str(keyword.unwrap_or(&oid));
    out.push('=');
    match keyword.and(text(ava.attr_value())) {
        Some(value) => escape(&value, &mut out),
        None => {
            out.push('#');
            for b in der(ava.attr_value()) {
                out.push_str(&format!("{b:02x}"));
            }
        }
    }
    out
}

/// A value of one of the string types Java prints as text, as text. Java's
/// `AVA.toRFC2253String` (what `X500Principal.getName()` runs, in JDK 17, 21 and 25 alike:
/// `new String(value.getDataBytes(), UTF_8)`) decodes the content of every such type as UTF-8,
/// BMPString and TeletexString included, with U+FFFD for bytes that are not UTF-8; so does
/// this, so that a principal names the same user as under Kafka. UniversalString is no such
/// type there: it is printed as hex.
fn text(value: &x509_parser::der_parser::asn1_rs::Any<'_>) -> Option<String> {
    use x509_parser::der_parser::asn1_rs::{Class, Tag};
    if value.header.class() != Class::Universal || value.header.is_constructed() {
        return None;
    }
    match value.header.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::GeneralString
        | Tag::TeletexString
        | Tag::BmpString => Some(String::from_utf8_lossy(value.data).into_owned()),
        _ => None,
    }
}

/// A value's DER encoding: identifier, definite length, content.
fn der(value: &x509_parser::der_parser::asn1_rs::Any<'_>) -> Vec<u8> {
    let h = &value.header;
    let mut out = Vec::with_capacity(value.data.len() + 8);
    let lead = ((h.class() as u8) << 6) | if h.is_constructed() { 0x20 } else { 0 };
    let tag = h.tag().0;
    if tag < 31 {
        out.push(lead | tag as u8);
    } else {
        out.push(lead | 0x1f);
        let groups = (0..5).rev().map(|i| (tag >> (7 * i)) & 0x7f).skip_while(|g| *g == 0).collect::<Vec<_>>();
        let last = groups.len() - 1;
        out.extend(groups.iter().enumerate().map(|(i, g)| *g as u8 | if i < last { 0x80 } else { 0 }));
    }
    let len = value.data.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value.data);
    out
}

/// Escapes a value as Java does: `\` before `,=+<>#;"\` anywhere and before leading and
/// trailing spaces (and carriage returns); a NUL as `\00`.
fn escape(value: &str, out: &mut String) {
    const SPECIAL: &str = ",=+<>#;\"\\";
    let mut chars: Vec<char> = Vec::with_capacity(value.len());
    for c in value.chars() {
        if SPECIAL.contains(c) {
            chars.extend(['\\', c]);
        } else if c == '\0' {
            chars.extend(['\\', '0', '0']);
        } else {
            chars.push(c);
        }
    }
    let blank = |c: &char| *c == ' ' || *c == '\r';
    let lead = chars.iter().take_while(|c| blank(c)).count();
    let trail = chars.len() - chars.iter().rev().take_while(|c| blank(c)).count();
    for (i, c) in chars.into_iter().enumerate() {
        if i < lead || i >= trail {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests;
