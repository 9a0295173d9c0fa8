//! For tests only (feature `test-pki`): a throwaway certificate authority made with rcgen, the
//! server and client certificates it signs, files holding them, and a blocking rustls client
//! that asks a Kafka server for its ApiVersions. The drivers' TLS tests share it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kelp_core::codec::generated::api_versions::{ApiVersionsRequest, ApiVersionsResponse};
use kelp_core::codec::generated::header::ResponseHeader;
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{ApiKey, Message, Reader, encode_request_frame};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::tls::{ClientAuth, TlsSettings};

/// A certificate and its key, as DER and as PEM.
pub struct Issued {
    /// The certificate.
    pub cert: CertificateDer<'static>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl Issued {
    /// The private key, DER.
    #[must_use]
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("rcgen writes a PEM key")
    }
}

/// A certificate authority, and a fresh directory for the files of a test.
pub struct Pki {
    /// The directory the files are written to (removed on drop).
    pub dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pki {
    /// A new CA named `CN=kelp test CA <tag>`, and an empty directory.
    #[must_use]
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kelp-pki-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, format!("kelp test CA {tag}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("a CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("a CA certificate");
        Self { dir, ca }
    }

    /// The CA's certificate.
    #[must_use]
    pub fn ca_cert(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// The CA's certificate, PEM.
    #[must_use]
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A certificate signed by the CA with the subject `dn` (in encoding order), for the
    /// names `sans` (host names or IP addresses), usable by servers and clients.
    #[must_use]
    pub fn issue(&self, dn: &[(DnType, &str)], sans: &[&str]) -> Issued {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        for (ty, value) in dn {
            params.distinguished_name.push(ty.clone(), *value);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.ca).expect("a signed certificate");
        Issued { cert: cert.der().clone(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// Writes `text` to `name` in the directory, and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write a test file");
        path
    }

    /// A server certificate for `localhost` and 127.0.0.1 (subject `CN=<cn>`), its files, and
    /// settings that use them (with the CA as client CA).
    #[must_use]
    pub fn server_settings(&self, cn: &str, client_auth: ClientAuth) -> TlsSettings {
        let server = self.issue(&[(DnType::CommonName, cn)], &["localhost", "127.0.0.1"]);
        TlsSettings {
            certificate: self.write("server.pem", &server.cert_pem),
            key: self.write("server.key", &server.key_pem),
            client_ca: Some(self.write("ca.pem", &self.ca_pem())),
            client_auth,
        }
    }

    /// A client configuration trusting the CA, presenting `identity` if given.
    #[must_use]
    pub fn client_config(&self, identity: Option<&Issued>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_cert()).expect("the CA is a usable root");
        let builder = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        let config = match identity {
            Some(id) => builder.with_client_auth_cert(vec![id.cert.clone()], id.key()).expect("a client identity"),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

/// A blocking TLS client: connects to `addr` and finishes the handshake as `localhost`.
pub fn connect_tls(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let sock = connect(addr)?;
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    // TLS 1.3: the server's verdict on a client certificate arrives after the client's last
    // handshake message; a round trip (the caller's first request) surfaces a refusal.
    Ok(stream)
}

/// A blocking TCP connection to `addr`, with timeouts so that a broken server fails a test
/// instead of hanging it.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    sock.set_write_timeout(Some(Duration::from_secs(30)))?;
    Ok(sock)
}

/// The ApiVersions request at `version` (0 to 3) with correlation id `corr`.
#[must_use]
pub fn api_versions_request(corr: i32, version: i16) -> Bytes {
    let body = RequestBody::ApiVersions(ApiVersionsRequest {
        client_software_name: "kelp-tls-test".into(),
        client_software_version: "1".into(),
        ..Default::default()
    });
    encode_request_frame(&body, version, corr, Some("tls-test"))
}

/// Sends ApiVersions at `version` on `stream` and reads the answer: its correlation id and
/// body. A connection that ends or breaks first is an error.
pub fn api_versions(
    stream: &mut (impl Read + Write),
    corr: i32,
    version: i16,
) -> io::Result<(i32, ApiVersionsResponse)> {
    stream.write_all(&api_versions_request(corr, version))?;
    stream.flush()?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = usize::try_from(i32::from_be_bytes(size)).map_err(io::Error::other)?;
    let mut frame = vec![0u8; size];
    stream.read_exact(&mut frame)?;
    let frame = Bytes::from(frame);
    let mut r = Reader::new(&frame);
    let api = ApiKey::API_VERSIONS;
    let header = ResponseHeader::decode(&mut r, api.response_header_version(version))
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
    match ResponseBody::decode(api, &mut r, version).map_err(|e| io::Error::other(format!("{e:?}")))? {
        ResponseBody::ApiVersions(body) => Ok((header.correlation_id, body)),
        other => Err(io::Error::other(format!("not an ApiVersions response: {other:?}"))),
    }
}

/// Asks ApiVersions at every version from 0 to 3 on `stream` (correlation ids from `corr`)
/// and checks each answer: its correlation id, no error, and ApiVersions and Metadata listed.
pub fn check_api_versions(stream: &mut (impl Read + Write), corr: i32) -> io::Result<()> {
    for version in 0..=3i16 {
        let want = corr + i32::from(version);
        let (got, body) = api_versions(stream, want, version)?;
        let fail = |what: String| Err(io::Error::other(format!("ApiVersions v{version}: {what}")));
        if got != want {
            return fail(format!("correlation id {got}, expected {want}"));
        }
        if body.error_code != 0 {
            return fail(format!("error code {}", body.error_code));
        }
        for key in [ApiKey::API_VERSIONS, ApiKey::METADATA] {
            if !body.api_keys.iter().any(|k| k.api_key == key.0) {
                return fail(format!("api key {} not listed", key.0));
            }
        }
    }
    Ok(())
}

/// Sends `n` ApiVersions v3 requests in one write, then reads the `n` answers and checks that
/// they come in request order. With a server that holds few unwritten bytes per connection
/// this drives its reading through pauses and resumptions.
pub fn pipeline(stream: &mut (impl Read + Write), n: i32) -> io::Result<()> {
    let mut all = Vec::new();
    for corr in 0..n {
        all.extend_from_slice(&api_versions_request(corr, 3));
    }
    stream.write_all(&all)?;
    stream.flush()?;
    for want in 0..n {
        let mut head = [0u8; 8];
        stream.read_exact(&mut head)?;
        let (size, corr) = head.split_at(4);
        let size = usize::try_from(i32::from_be_bytes(size.try_into().map_err(io::Error::other)?))
            .map_err(io::Error::other)?;
        let corr = i32::from_be_bytes(corr.try_into().map_err(io::Error::other)?);
        if corr != want {
            return Err(io::Error::other(format!("response {corr} where {want} was due")));
        }
        let mut rest = vec![0u8; size.saturating_sub(4)];
        stream.read_exact(&mut rest)?;
    }
    Ok(())
}

/// Reads what `sock` sends until it ends (or breaks): the bytes.
pub fn read_to_end(sock: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = sock.read_to_end(&mut got);
    got
}

/// Sets the modification time of `path` to `secs` seconds after the epoch, so that a
/// rewritten file is seen as changed whatever the file system's time resolution.
pub fn set_mtime(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).expect("open");
    f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs)).expect("set the modification time");
}
