//! SCRAM (RFC 5802, RFC 7677) as a server: users' stored credentials ([`Credentials`]), how
//! they are kept in the store, and the two-message exchange ([`ScramServer`]).
//!
//! A credential is what RFC 5802 has the server keep: the salt, the iteration count, the
//! `StoredKey` (the hash of the client key) and the `ServerKey`. The password itself is never
//! kept, nor is the salted password. AlterUserScramCredentials hands over the salted password
//! (the Java Admin client salts it), from which both keys are derived and the salted password
//! dropped.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::{BufMut, Bytes, BytesMut};
use hashbrown::HashMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use crate::codec::KStr;

/// The hash a SCRAM mechanism uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramHash {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

/// Fewest iterations a credential may have (Kafka's minimum for both mechanisms).
pub const MIN_ITERATIONS: i32 = 4096;
/// Most iterations a credential may have (Kafka's limit).
pub const MAX_ITERATIONS: i32 = 16384;
/// Longest salt accepted (bytes).
pub const MAX_SALT: usize = 1024;
/// Longest user name accepted (bytes).
pub const MAX_USER: usize = 1024;
/// Where credentials are stored: this, the mechanism's wire number, `/`, the user name.
pub const SCRAM_PREFIX: &[u8] = b"kelp/scram/";

impl ScramHash {
    /// Both hashes.
    pub const ALL: [Self; 2] = [Self::Sha256, Self::Sha512];

    /// The mechanism's number in DescribeUserScramCredentials and AlterUserScramCredentials.
    #[must_use]
    pub const fn wire(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    /// The hash numbered `n` on the wire.
    #[must_use]
    pub fn from_wire(n: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.wire() == n)
    }

    /// The mechanism's SASL name.
    #[must_use]
    pub const fn mechanism_name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
                parts.iter().for_each(|p| m.update(p));
                m.finalize().into_bytes().to_vec()
            }
            Self::Sha512 => {
                let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
                parts.iter().for_each(|p| m.update(p));
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

    /// RFC 5802's `Hi(password, salt, i)`: PBKDF2 with this hash's HMAC.
    #[must_use]
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec(),
            Self::Sha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec(),
        }
    }

    /// The hash's output length in bytes.
    #[must_use]
    pub const fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

/// One user's credential for one SCRAM mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    /// The salt.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
    /// The PBKDF2 iteration count.
    pub iterations: i32,
}

impl core::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Keys are secrets: never printed.
        f.debug_struct("ScramCredential").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// The credential for a salted password (`Hi(password, salt, iterations)`).
    #[must_use]
    pub fn from_salted_password(hash: ScramHash, salted: &[u8], salt: &[u8], iterations: i32) -> Self {
        let client_key = hash.hmac(salted, &[b"Client Key"]);
        Self {
            salt: salt.to_vec(),
            stored_key: hash.hash(&client_key),
            server_key: hash.hmac(salted, &[b"Server Key"]),
            iterations,
        }
    }

    /// The credential for `password` (what `kelp user` and tests create).
    #[must_use]
    pub fn from_password(hash: ScramHash, password: &str, salt: &[u8], iterations: i32) -> Self {
        let salted = hash.salted_password(password.as_bytes(), salt, u32::try_from(iterations).unwrap_or(0));
        Self::from_salted_password(hash, &salted, salt, iterations)
    }

    /// Whether `password` is the one this credential was made from (SASL/PLAIN checks
    /// passwords this way: it costs the iterations of PBKDF2).
    #[must_use]
    pub fn matches_password(&self, hash: ScramHash, password: &[u8]) -> bool {
        let salted = hash.salted_password(password, &self.salt, u32::try_from(self.iterations).unwrap_or(0));
        let client_key = hash.hmac(&salted, &[b"Client Key"]);
        constant_time_eq(&hash.hash(&client_key), &self.stored_key)
    }

    /// The stored form: version 0, iterations, then salt, stored key and server key, each
    /// with a 2-byte length.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(11 + self.salt.len() + self.stored_key.len() + self.server_key.len());
        b.put_u8(0);
        b.put_i32(self.iterations);
        for part in [&self.salt, &self.stored_key, &self.server_key] {
            b.put_u16(u16::try_from(part.len()).unwrap_or(u16::MAX));
            b.put_slice(&part[..part.len().min(usize::from(u16::MAX))]);
        }
        b.freeze()
    }

    /// The credential stored as `v`, if it is one.
    #[must_use]
    pub fn decode(v: &[u8]) -> Option<Self> {
        let (&version, rest) = v.split_first()?;
        if version != 0 {
            return None;
        }
        let (iterations, mut rest) = rest.split_first_chunk::<4>()?;
        let mut parts = [Vec::new(), Vec::new(), Vec::new()];
        for part in &mut parts {
            let (len, tail) = rest.split_first_chunk::<2>()?;
            let len = usize::from(u16::from_be_bytes(*len));
            if tail.len() < len {
                return None;
            }
            *part = tail[..len].to_vec();
            rest = &tail[len..];
        }
        let [salt, stored_key, server_key] = parts;
        let iterations = i32::from_be_bytes(*iterations);
        (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations).then_some(Self {
            salt,
            stored_key,
            server_key,
            iterations,
        })
    }
}

/// The store key of `user`'s credential for `hash`.
#[must_use]
pub fn credential_key(user: &str, hash: ScramHash) -> Bytes {
    let mut k = Vec::with_capacity(SCRAM_PREFIX.len() + 2 + user.len());
    k.extend_from_slice(SCRAM_PREFIX);
    k.push(b'0' + hash.wire().unsigned_abs());
    k.push(b'/');
    k.extend_from_slice(user.as_bytes());
    Bytes::from(k)
}

/// The user and hash a store key names, if it is a credential key.
#[must_use]
pub fn decode_key(key: &[u8]) -> Option<(KStr, ScramHash)> {
    let rest = key.strip_prefix(SCRAM_PREFIX)?;
    let (&n, rest) = rest.split_first()?;
    let hash = ScramHash::from_wire(i8::try_from(n.checked_sub(b'0')?).ok()?)?;
    let user = rest.strip_prefix(b"/")?;
    Some((KStr::from(core::str::from_utf8(user).ok()?.to_string()), hash))
}

/// Every user's SCRAM credentials, as the store holds them.
#[derive(Debug, Default)]
pub struct Credentials {
    by_user: HashMap<KStr, Vec<(ScramHash, ScramCredential)>>,
}

impl Credentials {
    /// `user`'s credential for `hash`.
    #[must_use]
    pub fn get(&self, user: &str, hash: ScramHash) -> Option<&ScramCredential> {
        self.by_user.get(user)?.iter().find(|(h, _)| *h == hash).map(|(_, c)| c)
    }

    /// `user`'s credentials, by hash (SHA-256 first).
    #[must_use]
    pub fn of(&self, user: &str) -> &[(ScramHash, ScramCredential)] {
        self.by_user.get(user).map_or(&[], Vec::as_slice)
    }

    /// Users with a credential, sorted.
    #[must_use]
    pub fn users(&self) -> Vec<KStr> {
        let mut v: Vec<KStr> = self.by_user.keys().cloned().collect();
        v.sort();
        v
    }

    /// Sets (or with `None` removes) `user`'s credential for `hash`.
    pub fn set(&mut self, user: &KStr, hash: ScramHash, cred: Option<ScramCredential>) {
        let list = self.by_user.entry(user.clone()).or_default();
        list.retain(|(h, _)| *h != hash);
        if let Some(c) = cred {
            list.push((hash, c));
            list.sort_by_key(|(h, _)| *h);
        }
        if list.is_empty() {
            self.by_user.remove(user);
        }
    }

    /// Loads what the store reported at start-up.
    pub fn recover(&mut self, values: &[(Bytes, Bytes)]) {
        for (k, v) in values {
            if let Some((user, hash)) = decode_key(k)
                && let Some(c) = ScramCredential::decode(v)
            {
                self.set(&user, hash, Some(c));
            }
        }
    }
}

/// Compares two byte strings in time that depends only on their lengths.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a SCRAM exchange failed. The client is told only that authentication failed (not
/// whether the user exists); the reason is for the broker's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramError {
    /// The message does not follow RFC 5802's grammar.
    Malformed(&'static str),
    /// Channel binding was asked for; Kafka never uses it.
    ChannelBinding,
    /// The client asked to act as someone other than the user it names.
    AuthzidMismatch,
    /// A delegation token was offered (`tokenauth` extension); kelp has none.
    TokenAuth,
    /// No such user, or no credential for this mechanism.
    UnknownUser,
    /// The final message's nonce is not the one the exchange agreed on.
    NonceMismatch,
    /// The proof does not match: a wrong password.
    BadProof,
}

/// The server side of one SCRAM exchange.
#[derive(Debug)]
pub enum ScramServer {
    /// Waiting for the client-first message.
    First,
    /// Server-first sent; waiting for the client-final message.
    Final(Box<Exchange>),
}

/// What the second step of an exchange needs from the first.
#[derive(Debug)]
pub struct Exchange {
    user: KStr,
    client_first_bare: String,
    server_first: String,
    gs2_header: String,
    nonce: String,
    cred: ScramCredential,
}

impl ScramServer {
    /// Handles the client-first message: answers the server-first message.
    pub fn client_first(
        &mut self,
        hash: ScramHash,
        msg: &[u8],
        creds: &Credentials,
        server_nonce: &[u8],
    ) -> Result<Vec<u8>, ScramError> {
        let msg = core::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: "n" or "y" (no channel binding) or "p=..." (binding), then an optional
        // "a=authzid", each followed by a comma.
        let (cbind, rest) = msg.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
        match cbind {
            "n" | "y" => {}
            c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad channel binding flag")),
        }
        let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
        let authzid = match authzid {
            "" => None,
            a => Some(sasl_name(a.strip_prefix("a=").ok_or(ScramError::Malformed("bad authzid"))?)?),
        };
        let mut user = None;
        let mut client_nonce = None;
        for (i, attr) in bare.split(',').enumerate() {
            let (k, v) = attr.split_once('=').ok_or(ScramError::Malformed("attribute without a value"))?;
            match (i, k) {
                (0, "n") => user = Some(sasl_name(v)?),
                (1, "r") if !v.is_empty() && v.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') => {
                    client_nonce = Some(v);
                }
                (0 | 1, _) => return Err(ScramError::Malformed("expected n= then r=")),
                (_, "tokenauth") if v.eq_ignore_ascii_case("true") => return Err(ScramError::TokenAuth),
                // Other extensions are Kafka's own and mean nothing here.
                _ => {}
            }
        }
        let (Some(user), Some(client_nonce)) = (user, client_nonce) else {
            return Err(ScramError::Malformed("missing user or nonce"));
        };
        if authzid.as_ref().is_some_and(|a| *a != user) {
            return Err(ScramError::AuthzidMismatch);
        }
        let cred = creds.get(&user, hash).ok_or(ScramError::UnknownUser)?.clone();
        let nonce = format!("{client_nonce}{}", B64.encode(server_nonce));
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&cred.salt), cred.iterations);
        let out = server_first.clone().into_bytes();
        *self = Self::Final(Box::new(Exchange {
            user: KStr::from(user),
            client_first_bare: bare.to_string(),
            server_first,
            gs2_header: msg[..msg.len() - bare.len()].to_string(),
            nonce,
            cred,
        }));
        Ok(out)
    }

    /// Handles the client-final message: the user and the server-final message when the
    /// proof is right.
    pub fn client_final(&self, hash: ScramHash, msg: &[u8]) -> Result<(KStr, Vec<u8>), ScramError> {
        let Self::Final(x) = self else { return Err(ScramError::Malformed("final message before the first")) };
        let msg = core::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs.next().and_then(|a| a.strip_prefix("c=")).ok_or(ScramError::Malformed("no c="))?;
        let nonce = attrs.next().and_then(|a| a.strip_prefix("r=")).ok_or(ScramError::Malformed("no r="))?;
        if B64.decode(binding).ok().as_deref() != Some(x.gs2_header.as_bytes()) {
            return Err(ScramError::ChannelBinding);
        }
        // RFC 5802 has the client echo the nonce; librdkafka sends its own nonce followed by
        // the whole nonce the server gave, and Kafka accepts any nonce that ends with it.
        if !nonce.ends_with(&x.nonce) {
            return Err(ScramError::NonceMismatch);
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed("proof is not base64"))?;
        if proof.len() != hash.output_len() {
            return Err(ScramError::BadProof);
        }
        let auth_message = format!("{},{},{}", x.client_first_bare, x.server_first, without_proof);
        let signature = hash.hmac(&x.cred.stored_key, &[auth_message.as_bytes()]);
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !constant_time_eq(&hash.hash(&client_key), &x.cred.stored_key) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hash.hmac(&x.cred.server_key, &[auth_message.as_bytes()]);
        Ok((x.user.clone(), format!("v={}", B64.encode(server_signature)).into_bytes()))
    }
}

/// A `saslname` decoded: `=2C` is a comma, `=3D` an equals sign, any other `=` is an error.
fn sasl_name(s: &str) -> Result<String, ScramError> {
    if s.is_empty() || s.len() > MAX_USER {
        return Err(ScramError::Malformed("bad user name length"));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side of RFC 5802, as a Kafka client computes it.
    fn client_final(hash: ScramHash, password: &str, client_first_bare: &str, server_first: &str) -> (String, Vec<u8>) {
        client_final_with_nonce_prefix(hash, password, client_first_bare, server_first, "")
    }

    /// As [`client_final`], with `prefix` before the echoed nonce (librdkafka sends its own
    /// nonce there).
    fn client_final_with_nonce_prefix(
        hash: ScramHash,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
        prefix: &str,
    ) -> (String, Vec<u8>) {
        let fields: HashMap<&str, &str> = server_first.split(',').filter_map(|a| a.split_once('=')).collect();
        let salt = B64.decode(fields["s"]).unwrap();
        let iterations: u32 = fields["i"].parse().unwrap();
        let salted = hash.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = hash.hmac(&salted, &[b"Client Key"]);
        let stored_key = hash.hash(&client_key);
        let without_proof = format!("c=biws,r={prefix}{}", fields["r"]);
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = hash.hmac(&stored_key, &[auth.as_bytes()]);
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_key = hash.hmac(&salted, &[b"Server Key"]);
        let expected_server_final = format!("v={}", B64.encode(hash.hmac(&server_key, &[auth.as_bytes()])));
        (format!("{without_proof},p={}", B64.encode(proof)), expected_server_final.into_bytes())
    }

    fn creds(hash: ScramHash) -> Credentials {
        let mut c = Credentials::default();
        c.set(&KStr::from("al,i=ce"), hash, Some(ScramCredential::from_password(hash, "s3cret", b"salty", 4096)));
        c
    }

    #[test]
    fn an_exchange_with_the_right_password_succeeds_and_a_wrong_one_fails() {
        for hash in ScramHash::ALL {
            let c = creds(hash);
            for (password, ok) in [("s3cret", true), ("s3creT", false)] {
                let mut s = ScramServer::First;
                let bare = "n=al=2Ci=3Dce,r=fyko+d2lbbFgONRv9qkxdawL";
                let first = s.client_first(hash, format!("n,,{bare}").as_bytes(), &c, b"server-nonce").unwrap();
                let first = String::from_utf8(first).unwrap();
                assert!(first.starts_with("r=fyko+d2lbbFgONRv9qkxdawL") && first.ends_with(",i=4096"), "{first}");
                let (msg, server_final) = client_final(hash, password, bare, &first);
                let got = s.client_final(hash, msg.as_bytes());
                if ok {
                    let (user, v) = got.unwrap();
                    assert_eq!((user.as_str(), v), ("al,i=ce", server_final));
                } else {
                    assert_eq!(got.unwrap_err(), ScramError::BadProof);
                }
            }
        }
    }

    #[test]
    fn librdkafkas_final_nonce_with_its_own_nonce_in_front_is_accepted() {
        let hash = ScramHash::Sha512;
        let c = creds(hash);
        let mut s = ScramServer::First;
        let bare = "n=al=2Ci=3Dce,r=k=x|~";
        let first = s.client_first(hash, format!("n,,{bare}").as_bytes(), &c, b"nonce").unwrap();
        let first = String::from_utf8(first).unwrap();
        let (msg, server_final) = client_final_with_nonce_prefix(hash, "s3cret", bare, &first, "k=x|~");
        assert_eq!(s.client_final(hash, msg.as_bytes()).unwrap().1, server_final);
    }

    #[test]
    fn bad_messages_are_refused() {
        let hash = ScramHash::Sha512;
        let c = creds(hash);
        let first = |m: &str| ScramServer::First.client_first(hash, m.as_bytes(), &c, b"n");
        assert_eq!(first("n,,n=bob,r=abc"), Err(ScramError::UnknownUser));
        assert_eq!(first("p=tls-unique,,n=al=2Ci=3Dce,r=abc"), Err(ScramError::ChannelBinding));
        assert_eq!(first("n,a=bob,n=al=2Ci=3Dce,r=abc"), Err(ScramError::AuthzidMismatch));
        assert_eq!(first("n,,n=al=2Ci=3Dce,r=abc,tokenauth=true"), Err(ScramError::TokenAuth));
        for bad in ["", "n", "n,,", "n,,r=abc,n=x", "n,,n=a=zz,r=abc", "n,,n=,r=abc", "n,,n=x,r=", "x,,n=a,r=b"] {
            assert!(matches!(first(bad), Err(ScramError::Malformed(_))), "{bad:?}");
        }
        assert!(first(&format!("n,,n={},r=abc", "u".repeat(MAX_USER + 1))).is_err());
        assert!(ScramServer::First.client_first(hash, &[0xff, 0xfe], &c, b"n").is_err());
        // A final message that does not continue the exchange.
        let mut s = ScramServer::First;
        let f = String::from_utf8(s.client_first(hash, b"n,,n=al=2Ci=3Dce,r=abc", &c, b"n").unwrap()).unwrap();
        let nonce = f.split(',').next().unwrap();
        assert_eq!(s.client_final(hash, b"c=biws,r=other,p=AAAA"), Err(ScramError::NonceMismatch));
        assert_eq!(s.client_final(hash, format!("c=eSws,{nonce},p=AAAA").as_bytes()), Err(ScramError::ChannelBinding));
        assert_eq!(s.client_final(hash, format!("c=biws,{nonce},p=AAAA").as_bytes()), Err(ScramError::BadProof));
        assert!(matches!(s.client_final(hash, b"c=biws"), Err(ScramError::Malformed(_))));
        assert!(ScramServer::First.client_final(hash, b"c=biws,r=a,p=b").is_err());
    }

    #[test]
    fn credentials_round_trip_through_the_store_and_check_passwords() {
        let hash = ScramHash::Sha256;
        let cred = ScramCredential::from_password(hash, "pw", b"NaCl", 4096);
        assert_eq!(ScramCredential::decode(&cred.encode()), Some(cred.clone()));
        assert!(cred.matches_password(hash, b"pw") && !cred.matches_password(hash, b"pW"));
        let key = credential_key("a/b", hash);
        assert_eq!(decode_key(&key), Some((KStr::from("a/b"), hash)));
        let mut c = Credentials::default();
        c.recover(&[(key, cred.encode()), (Bytes::from_static(b"kelp/scram/9/x"), cred.encode())]);
        assert_eq!(c.users(), [KStr::from("a/b")]);
        assert!(ScramCredential::decode(&[0, 0, 0, 16, 0, 9, 1]).is_none());
        assert_eq!(format!("{cred:?}"), "ScramCredential { iterations: 4096, .. }");
    }

    /// RFC 7677's SCRAM-SHA-256 example, with its server nonce: the RFC's proof is accepted
    /// and the server signature is the RFC's.
    #[test]
    fn rfc_7677_example() {
        let hash = ScramHash::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let s = ScramServer::Final(Box::new(Exchange {
            user: KStr::from("user"),
            client_first_bare: "n=user,r=rOprNGfwEbeRWgbNEkqO".into(),
            server_first: format!("r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
            gs2_header: "n,,".into(),
            nonce: nonce.into(),
            cred: ScramCredential::from_password(hash, "pencil", &salt, 4096),
        }));
        let msg = format!("c=biws,r={nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        let (user, server_final) = s.client_final(hash, msg.as_bytes()).unwrap();
        assert_eq!(user.as_str(), "user");
        assert_eq!(server_final, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }
}
