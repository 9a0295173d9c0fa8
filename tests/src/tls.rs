//! TLS and SASL for the end-to-end security tests (`tests/e2e_security.rs`): a throwaway
//! certificate authority made with rcgen, the server and client certificates it signs as PEM
//! files in the layouts the real clients read, a blocking rustls client, a Kafka connection over
//! any byte stream, and the client side of SASL/SCRAM (RFC 5802) and SASL/PLAIN, so that a test
//! can also send what no real client sends: wrong proofs, broken tokens, one byte at a time.
//!
//! Nothing here talks to a server by itself; the tests decide what to send and when.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use kelp_core::codec::generated::header::ResponseHeader;
use kelp_core::codec::generated::sasl_authenticate::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use kelp_core::codec::generated::sasl_handshake::SaslHandshakeRequest;
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{Message, Reader, encode_request_frame};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use sha2::{Digest, Sha256, Sha512};

// ---- certificates --------------------------------------------------------------------------

/// A certificate with its key, as files and as DER.
pub struct Identity {
    /// The subject, as the test wrote it (`CN=alice,O=kelp`).
    pub subject: String,
    /// PEM: the certificate, then the CA's (what `--ssl-certificate-location`,
    /// librdkafka's `ssl.certificate.location` and Python's `certfile` take).
    pub chain: PathBuf,
    /// PEM: the private key, PKCS#8, unencrypted.
    pub key: PathBuf,
    /// PEM: the private key and then the chain in one file (the Java client's
    /// `ssl.keystore.type=PEM` key store).
    pub keystore: PathBuf,
    cert_der: CertificateDer<'static>,
    key_pem: String,
}

impl Identity {
    /// The certificate, DER.
    #[must_use]
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// The private key, DER.
    #[must_use]
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("rcgen writes a PEM key")
    }
}

/// A certificate authority, with a server certificate for `localhost` and 127.0.0.1, and its
/// files in a directory of the caller's (which it does not remove: a [`crate::clients::Scratch`]
/// does).
pub struct Pki {
    /// Where the files are.
    pub dir: PathBuf,
    /// PEM: the CA's certificate (trust store of clients, client CA of the server).
    pub ca: PathBuf,
    /// The server's certificate, for `localhost` and IP 127.0.0.1 (Java and kafka-python check
    /// the address they dialled against these names).
    pub server: Identity,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA named `CN=<name> test CA,O=kelp` and a server certificate, written to `dir`
    /// (created if needed) as `ca.pem`, `server.pem`, `server.key`, `server-keystore.pem`.
    #[must_use]
    pub fn new(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        params.distinguished_name.push(DnType::OrganizationName, "kelp");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a CA key")).expect("a CA");
        let ca = write(dir, "ca.pem", &issuer.pem());
        let server = issue(dir, &issuer, "server", &[(DnType::CommonName, "localhost")], &["localhost", "127.0.0.1"]);
        Self { dir: dir.to_path_buf(), ca, server, issuer }
    }

    /// A client certificate signed by this CA with the subject `CN=<cn>,O=<org>`, written as
    /// `<file>.pem`, `<file>.key` and `<file>-keystore.pem`.
    #[must_use]
    pub fn client(&self, file: &str, cn: &str, org: &str) -> Identity {
        issue(&self.dir, &self.issuer, file, &[(DnType::CommonName, cn), (DnType::OrganizationName, org)], &[])
    }

    /// A rustls client configuration that trusts this CA and presents `identity`, if any.
    #[must_use]
    pub fn client_config(&self, identity: Option<&Identity>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("the CA is a usable root");
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("rustls' default protocol versions")
            .with_root_certificates(roots);
        let config = match identity {
            Some(id) => builder.with_client_auth_cert(vec![id.cert_der()], id.key_der()).expect("a client identity"),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

/// rustls' ring provider, the one the workspace builds (as the drivers do). rustls 0.23.48
/// deprecated it because ring has no post-quantum key exchange; the classical groups it offers
/// are what these tests need.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// A certificate for `dn` and `sans` signed by `issuer`, usable by servers and clients.
fn issue(
    dir: &Path,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    file: &str,
    dn: &[(DnType, &str)],
    sans: &[&str],
) -> Identity {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| (*s).to_string()).collect::<Vec<_>>()).expect("parameters");
    params.distinguished_name = DistinguishedName::new();
    for (ty, value) in dn {
        params.distinguished_name.push(ty.clone(), *value);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let key = KeyPair::generate().expect("a key");
    let cert = params.signed_by(&key, issuer).expect("a signed certificate");
    let chain_pem = format!("{}{}", cert.pem(), issuer.pem());
    let key_pem = key.serialize_pem();
    let subject = dn.iter().map(|(ty, v)| format!("{}={v}", dn_label(ty))).collect::<Vec<_>>().join(",");
    Identity {
        subject,
        chain: write(dir, &format!("{file}.pem"), &chain_pem),
        key: write(dir, &format!("{file}.key"), &key_pem),
        keystore: write(dir, &format!("{file}-keystore.pem"), &format!("{key_pem}{chain_pem}")),
        cert_der: cert.der().clone(),
        key_pem,
    }
}

fn dn_label(ty: &DnType) -> &'static str {
    match ty {
        DnType::CommonName => "CN",
        DnType::OrganizationName => "O",
        _ => "?",
    }
}

// ---- connections ---------------------------------------------------------------------------

/// A TCP connection to `addr` with 10 s read and write timeouts (a test waiting on a broken
/// server fails instead of hanging) and Nagle off (so that one-byte writes leave one by one).
pub fn tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    sock.set_write_timeout(Some(Duration::from_secs(10)))?;
    sock.set_nodelay(true)?;
    Ok(sock)
}

/// A TLS stream over `sock`, the handshake finished (server name `localhost`). Under TLS 1.3
/// a server that refuses the client's certificate says so after this returns: the first read
/// fails.
pub fn tls_over<S: Read + Write>(sock: S, config: Arc<ClientConfig>) -> io::Result<StreamOwned<ClientConnection, S>> {
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// [`tls_over`] a fresh [`tcp`] connection to `addr`.
pub fn connect_tls(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> io::Result<StreamOwned<ClientConnection, TcpStream>> {
    tls_over(tcp(addr)?, config)
}

/// A byte stream that writes one byte per `write` call and pauses `pause` before each: a very
/// slow client (over TLS, its records and its handshake arrive in one-byte pieces).
pub struct Trickle<S> {
    /// The stream underneath.
    pub inner: S,
    /// The pause before each byte.
    pub pause: Duration,
}

impl<S: Read> Read for Trickle<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl<S: Write> Write for Trickle<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(first) = buf.first() else { return Ok(0) };
        std::thread::sleep(self.pause);
        self.inner.write_all(std::slice::from_ref(first))?;
        self.inner.flush()?;
        Ok(1)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Kafka requests and responses over any byte stream (TCP, TLS, a [`Trickle`]), encoded with
/// kelp's codec.
pub struct KafkaConn<S> {
    /// The stream.
    pub stream: S,
    next_correlation: i32,
}

impl<S: Read + Write> KafkaConn<S> {
    /// A connection over `stream`; correlation ids start at 1.
    pub fn new(stream: S) -> Self {
        Self { stream, next_correlation: 1 }
    }

    /// Sends `body` at `version` and reads its response. A connection that ends first is an
    /// `UnexpectedEof` error.
    pub fn call(&mut self, body: &RequestBody, version: i16) -> io::Result<ResponseBody> {
        let corr = self.next_correlation;
        self.next_correlation += 1;
        self.send_bytes(&encode_request_frame(body, version, corr, Some("kelp-e2e-security")))?;
        let frame = self.read_frame()?;
        let mut r = Reader::new(&frame);
        let api = body.api_key();
        let header = ResponseHeader::decode(&mut r, api.response_header_version(version))
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        if header.correlation_id != corr {
            return Err(io::Error::other(format!("correlation id {}, expected {corr}", header.correlation_id)));
        }
        ResponseBody::decode(api, &mut r, version).map_err(|e| io::Error::other(format!("{e:?}")))
    }

    /// Writes `bytes` as they are (a frame, a piece of one, garbage) and flushes.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads one size-prefixed frame.
    pub fn read_frame(&mut self) -> io::Result<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let len = usize::try_from(i32::from_be_bytes(size)).map_err(|_| io::Error::other("negative frame size"))?;
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf)?;
        Ok(Bytes::from(buf))
    }

    /// Whether the peer has closed the connection: reads until end of stream or an error
    /// (a reset, a TLS alert), and fails if a whole response frame arrives instead or the read
    /// times out.
    pub fn expect_closed(&mut self) -> Result<(), String> {
        let mut buf = [0u8; 4096];
        let mut got = 0usize;
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    got += n;
                    if got > 64 * 1024 {
                        return Err(format!("the connection stays open and sent {got} bytes"));
                    }
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(format!("the connection stays open (no end of stream after {got} bytes: {e})"));
                }
                Err(_) => return Ok(()),
            }
        }
    }
}

// ---- SASL ----------------------------------------------------------------------------------

/// How a SASL exchange ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslFailure {
    /// SaslHandshake answered this error code.
    Handshake(i16),
    /// SaslAuthenticate answered this error code and message.
    Authenticate(i16, Option<String>),
    /// The server's SCRAM message was not what RFC 5802 says (the text says how).
    Protocol(String),
    /// The connection broke or closed.
    Io(String),
}

impl From<io::Error> for SaslFailure {
    fn from(e: io::Error) -> Self {
        Self::Io(e.to_string())
    }
}

/// SaslHandshake v1 for `mechanism`.
pub fn handshake<S: Read + Write>(conn: &mut KafkaConn<S>, mechanism: &str) -> Result<(), SaslFailure> {
    let body = RequestBody::SaslHandshake(SaslHandshakeRequest { mechanism: mechanism.into() });
    match conn.call(&body, 1)? {
        ResponseBody::SaslHandshake(r) if r.error_code == 0 => Ok(()),
        ResponseBody::SaslHandshake(r) => Err(SaslFailure::Handshake(r.error_code)),
        other => Err(SaslFailure::Protocol(format!("not a SaslHandshake response: {other:?}"))),
    }
}

/// One SaslAuthenticate (v2) round: the server's token, or its error.
pub fn authenticate<S: Read + Write>(conn: &mut KafkaConn<S>, token: &[u8]) -> Result<Bytes, SaslFailure> {
    let body = RequestBody::SaslAuthenticate(SaslAuthenticateRequest {
        auth_bytes: Bytes::copy_from_slice(token),
        ..Default::default()
    });
    match conn.call(&body, 2)? {
        ResponseBody::SaslAuthenticate(SaslAuthenticateResponse { error_code: 0, auth_bytes, .. }) => Ok(auth_bytes),
        ResponseBody::SaslAuthenticate(r) => {
            Err(SaslFailure::Authenticate(r.error_code, r.error_message.map(|m| m.as_str().to_string())))
        }
        other => Err(SaslFailure::Protocol(format!("not a SaslAuthenticate response: {other:?}"))),
    }
}

/// A whole SASL/PLAIN authentication: handshake, then one token `\0user\0password`.
pub fn login_plain<S: Read + Write>(conn: &mut KafkaConn<S>, user: &str, password: &str) -> Result<(), SaslFailure> {
    handshake(conn, "PLAIN")?;
    authenticate(conn, format!("\0{user}\0{password}").as_bytes()).map(|_| ())
}

/// A whole SASL/SCRAM authentication with `mechanism` (`SCRAM-SHA-512` or `SCRAM-SHA-256`),
/// checking the server's signature at the end.
pub fn login_scram<S: Read + Write>(
    conn: &mut KafkaConn<S>,
    mechanism: &str,
    user: &str,
    password: &str,
) -> Result<(), SaslFailure> {
    let hash = ScramHash::from_mechanism(mechanism)
        .ok_or_else(|| SaslFailure::Protocol(format!("{mechanism} is not a SCRAM mechanism")))?;
    handshake(conn, mechanism)?;
    let mut scram = ScramClient::new(hash, user, password);
    let server_first = authenticate(conn, &scram.client_first())?;
    let client_final = scram.client_final(&server_first).map_err(SaslFailure::Protocol)?;
    let server_final = authenticate(conn, &client_final)?;
    scram.check_server_final(&server_final).map_err(SaslFailure::Protocol)
}

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-256 (wire id 1 in the SCRAM credential APIs).
    Sha256,
    /// SCRAM-SHA-512 (wire id 2).
    Sha512,
}

impl ScramHash {
    /// The hash of `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[must_use]
    pub fn from_mechanism(name: &str) -> Option<Self> {
        [Self::Sha256, Self::Sha512].into_iter().find(|h| h.mechanism() == name)
    }

    /// Its SASL mechanism name.
    #[must_use]
    pub const fn mechanism(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Its id in DescribeUserScramCredentials and AlterUserScramCredentials.
    #[must_use]
    pub const fn wire(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    /// RFC 5802's `Hi(password, salt, i)`: PBKDF2 with this hash's HMAC.
    #[must_use]
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec(),
            Self::Sha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Self::Sha512 => {
                let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// The client side of one SCRAM exchange (RFC 5802, no channel binding: `n,,`).
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    client_first_bare: String,
    nonce: String,
    server_signature: Vec<u8>,
}

impl ScramClient {
    /// An exchange for `user` with a fresh client nonce.
    #[must_use]
    pub fn new(hash: ScramHash, user: &str, password: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let seed = format!("{}/{}/{}", now.as_nanos(), std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let nonce = BASE64.encode(Sha256::digest(seed.as_bytes()));
        let name = user.replace('=', "=3D").replace(',', "=2C");
        Self {
            hash,
            password: password.to_string(),
            client_first_bare: format!("n={name},r={nonce}"),
            nonce,
            server_signature: Vec::new(),
        }
    }

    /// The client's nonce.
    #[must_use]
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The client-first message.
    #[must_use]
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The client-final message for the server-first message `server_first`.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(server_first).map_err(|_| "server-first is not UTF-8".to_string())?;
        let field = |k: &str| text.split(',').find_map(|f| f.strip_prefix(k)).map(str::to_string);
        let nonce = field("r=").ok_or("server-first without r=")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(format!("server nonce {nonce:?} does not extend the client's"));
        }
        let salt = BASE64.decode(field("s=").ok_or("server-first without s=")?).map_err(|e| format!("salt: {e}"))?;
        let iterations: u32 = field("i=").ok_or("server-first without i=")?.parse().map_err(|e| format!("i=: {e}"))?;
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let salted = self.hash.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = self.hash.hmac(&salted, b"Client Key");
        let signature = self.hash.hmac(&self.hash.hash(&client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let server_key = self.hash.hmac(&salted, b"Server Key");
        self.server_signature = self.hash.hmac(&server_key, auth_message.as_bytes());
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server's signature must be the expected one.
    pub fn check_server_final(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final).map_err(|_| "server-final is not UTF-8".to_string())?;
        let v = text.strip_prefix("v=").ok_or_else(|| format!("server-final {text:?} has no v="))?;
        let got = BASE64.decode(v.split(',').next().unwrap_or("")).map_err(|e| format!("v=: {e}"))?;
        if got == self.server_signature { Ok(()) } else { Err("the server's signature is wrong".into()) }
    }
}

/// An ApiVersions request (answered before authentication too), to see whether a connection
/// is served.
#[must_use]
pub fn api_versions_request() -> RequestBody {
    RequestBody::ApiVersions(kelp_core::codec::generated::api_versions::ApiVersionsRequest {
        client_software_name: "kelp-e2e-security".into(),
        client_software_version: "1".into(),
        ..Default::default()
    })
}

/// A Metadata v1 request for every topic (served only after authentication on a SASL
/// listener).
#[must_use]
pub fn metadata_request() -> RequestBody {
    RequestBody::Metadata(kelp_core::codec::generated::metadata::MetadataRequest { topics: None, ..Default::default() })
}

/// Whether `body` is a Metadata response naming at least one broker.
#[must_use]
pub fn is_metadata_with_brokers(body: &ResponseBody) -> bool {
    matches!(body, ResponseBody::Metadata(m) if !m.brokers.is_empty())
}

impl Pki {
    /// A client certificate signed by this CA whose subject has the relative distinguished
    /// names `rdns` in this order in the certificate (most general first, as X.509 subjects
    /// usually are: `[("O", "kelp"), ("OU", "e2e"), ("CN", "alice")]`), each one attribute of
    /// type `C`, `ST`, `L`, `O`, `OU` or `CN` with a value RFC 2253 need not escape. Its
    /// [`Identity::subject`] is the name as Java's `X500Principal.getName()` prints it (RFC 2253:
    /// most specific first, `CN=alice,OU=e2e,O=kelp`), which is the name of Kafka's principal for
    /// a client presenting it (`User:` and that name). Written as `<file>.pem`, `<file>.key` and
    /// `<file>-keystore.pem`.
    #[must_use]
    pub fn client_named(&self, file: &str, rdns: &[(&str, &str)]) -> Identity {
        for (i, (label, _)) in rdns.iter().enumerate() {
            assert!(rdns[..i].iter().all(|(l, _)| l != label), "client_named: {label} given twice");
        }
        let dn: Vec<(DnType, &str)> = rdns
            .iter()
            .map(|&(label, value)| {
                assert!(
                    value.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-' || c == '.')
                        && !value.starts_with(' ')
                        && !value.ends_with(' '),
                    "{label}={value:?} would need RFC 2253 escaping"
                );
                let ty = match label {
                    "C" => DnType::CountryName,
                    "ST" => DnType::StateOrProvinceName,
                    "L" => DnType::LocalityName,
                    "O" => DnType::OrganizationName,
                    "OU" => DnType::OrganizationalUnitName,
                    "CN" => DnType::CommonName,
                    other => panic!("client_named: no attribute type {other}"),
                };
                (ty, value)
            })
            .collect();
        let mut id = issue(&self.dir, &self.issuer, file, &dn, &[]);
        id.subject = rdns.iter().rev().map(|(label, value)| format!("{label}={value}")).collect::<Vec<_>>().join(",");
        id
    }
}
