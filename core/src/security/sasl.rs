//! The SASL exchange of one connection on a SASL listener, as Kafka runs it: an optional
//! ApiVersions, a SaslHandshake naming the mechanism, then the mechanism's tokens, carried in
//! SaslAuthenticate requests (handshake v1) or as bare size-prefixed frames (handshake v0).
//! Nothing else is served before the exchange succeeds; a failure is answered, then the
//! connection closes.

use super::Mechanism;
use super::scram::{Credentials, ScramError, ScramServer};
use crate::codec::{ErrorCode, KStr};

/// Longest SASL frame read before authentication (Kafka's `sasl.server.max.receive.size`):
/// an unauthenticated client cannot make the broker buffer more.
pub const MAX_RECEIVE: usize = 512 * 1024;

/// Where a connection is in authentication.
#[derive(Debug)]
pub enum Auth {
    /// Through (or never asked to): requests are served as this principal.
    Done(KStr),
    /// A SASL listener's connection before its SaslHandshake.
    Handshake,
    /// The handshake chose `mechanism`; its tokens are awaited.
    Exchange {
        /// The mechanism.
        mechanism: Mechanism,
        /// Whether tokens come as bare frames (SaslHandshake v0) rather than in
        /// SaslAuthenticate requests.
        raw: bool,
        /// A SCRAM exchange's progress.
        scram: ScramServer,
    },
}

/// What one token leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this token back and wait for the next one.
    Continue(Vec<u8>),
    /// Authenticated as `principal`; send `token` back (empty for PLAIN).
    Done {
        /// The principal (`User:name`).
        principal: KStr,
        /// The last token for the client.
        token: Vec<u8>,
    },
    /// Authentication failed: answer `message` (what the client sees), then close. `reason`
    /// is for the broker's log only.
    Failed {
        /// What the client is told.
        message: String,
        /// Why, for the log.
        reason: &'static str,
    },
}

impl Auth {
    /// The state a connection starts in: [`Auth::Handshake`] on a SASL listener, else done
    /// as `principal`.
    #[must_use]
    pub fn start(sasl: bool, principal: KStr) -> Self {
        if sasl { Self::Handshake } else { Self::Done(principal) }
    }

    /// The principal, once authenticated.
    #[must_use]
    pub fn principal(&self) -> Option<&KStr> {
        match self {
            Self::Done(p) => Some(p),
            _ => None,
        }
    }

    /// Whether the next frame is a bare token (after a v0 handshake), not a request.
    #[must_use]
    pub fn expects_raw_token(&self) -> bool {
        matches!(self, Self::Exchange { raw: true, .. })
    }

    /// SaslHandshake asking for `name` at `version`, with `enabled` mechanisms on offer.
    /// `Ok` moves on to the exchange; `Err` is the error to answer (the connection then
    /// closes).
    pub fn handshake(&mut self, name: &str, version: i16, enabled: &[Mechanism]) -> Result<(), ErrorCode> {
        if !matches!(self, Self::Handshake) {
            return Err(ErrorCode::ILLEGAL_SASL_STATE);
        }
        let mechanism =
            Mechanism::parse(name).filter(|m| enabled.contains(m)).ok_or(ErrorCode::UNSUPPORTED_SASL_MECHANISM)?;
        *self = Self::Exchange { mechanism, raw: version == 0, scram: ScramServer::First };
        Ok(())
    }

    /// One token of the exchange. `nonce` is fresh randomness for a SCRAM server nonce.
    pub fn token(&mut self, token: &[u8], creds: &Credentials, nonce: &[u8]) -> Step {
        let Self::Exchange { mechanism, scram, .. } = self else {
            return Step::Failed { message: "Unexpected SASL token".into(), reason: "token outside an exchange" };
        };
        let mechanism = *mechanism;
        let failed = |reason: &'static str| Step::Failed {
            message: format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                mechanism.name()
            ),
            reason,
        };
        let step = match mechanism.scram() {
            None => match plain(token, creds) {
                Ok(user) => Step::Done { principal: super::user_principal(&user), token: Vec::new() },
                Err(reason) => failed(reason),
            },
            Some(hash) => match scram {
                ScramServer::First => match scram.client_first(hash, token, creds, nonce) {
                    Ok(reply) => Step::Continue(reply),
                    Err(e) => failed(scram_reason(e)),
                },
                ScramServer::Final(_) => match scram.client_final(hash, token) {
                    Ok((user, reply)) => Step::Done { principal: super::user_principal(&user), token: reply },
                    Err(e) => failed(scram_reason(e)),
                },
            },
        };
        if let Step::Done { principal, .. } = &step {
            *self = Self::Done(principal.clone());
        }
        step
    }
}

fn scram_reason(e: ScramError) -> &'static str {
    match e {
        ScramError::Malformed(why) => why,
        ScramError::ChannelBinding => "channel binding asked for or changed",
        ScramError::AuthzidMismatch => "authorization id differs from the user",
        ScramError::TokenAuth => "delegation tokens are not supported",
        ScramError::UnknownUser => "no credential for the user",
        ScramError::NonceMismatch => "nonce mismatch",
        ScramError::BadProof => "wrong password",
    }
}

/// RFC 4616: `authzid NUL authcid NUL passwd`, checked against the user's SCRAM credential
/// (SHA-512 first). Returns the user.
fn plain(token: &[u8], creds: &Credentials) -> Result<String, &'static str> {
    let mut parts = token.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("PLAIN token is not authzid NUL user NUL password");
    };
    let user = core::str::from_utf8(user).map_err(|_| "user name is not UTF-8")?;
    if user.is_empty() || password.is_empty() {
        return Err("empty user name or password");
    }
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err("authorization id differs from the user");
    }
    // Every credential the user has is tried, so that the work done does not tell which
    // mechanisms a user has; a user without any costs nothing, which tells only that much.
    let mut ok = false;
    for (hash, cred) in creds.of(user) {
        ok |= cred.matches_password(*hash, password);
    }
    if ok { Ok(user.to_string()) } else { Err("wrong password or unknown user") }
}

#[cfg(test)]
mod tests {
    use super::super::scram::{ScramCredential, ScramHash};
    use super::*;

    fn creds() -> Credentials {
        let mut c = Credentials::default();
        let h = ScramHash::Sha256;
        c.set(&KStr::from("alice"), h, Some(ScramCredential::from_password(h, "pw", b"salt", 4096)));
        c
    }

    #[test]
    fn plain_checks_the_password_against_the_stored_credential() {
        let c = creds();
        let mut a = Auth::start(true, KStr::from(super::super::ANONYMOUS));
        assert_eq!(a.handshake("PLAIN", 1, &Mechanism::ALL), Ok(()));
        assert!(!a.expects_raw_token());
        let step = a.token(b"\0alice\0pw", &c, b"");
        assert_eq!(step, Step::Done { principal: KStr::from("User:alice"), token: vec![] });
        assert_eq!(a.principal().map(KStr::as_str), Some("User:alice"));
        for bad in [&b"\0alice\0pW"[..], b"\0bob\0pw", b"alice\0pw", b"\0alice\0", b"bob\0alice\0pw", b"\0alice\0pw\0"]
        {
            let mut a = Auth::start(true, KStr::from(super::super::ANONYMOUS));
            a.handshake("PLAIN", 0, &Mechanism::ALL).unwrap();
            assert!(a.expects_raw_token());
            let Step::Failed { message, .. } = a.token(bad, &c, b"") else { panic!("{bad:?} accepted") };
            assert!(message.contains("invalid credentials with SASL mechanism PLAIN"), "{message}");
            assert!(a.principal().is_none());
        }
    }

    #[test]
    fn the_handshake_offers_only_enabled_mechanisms_once() {
        let mut a = Auth::start(true, KStr::from(super::super::ANONYMOUS));
        assert_eq!(a.handshake("GSSAPI", 1, &Mechanism::ALL), Err(ErrorCode::UNSUPPORTED_SASL_MECHANISM));
        assert_eq!(a.handshake("PLAIN", 1, &[Mechanism::ScramSha512]), Err(ErrorCode::UNSUPPORTED_SASL_MECHANISM));
        assert_eq!(a.handshake("scram-sha-512", 1, &Mechanism::ALL), Err(ErrorCode::UNSUPPORTED_SASL_MECHANISM));
        assert_eq!(a.handshake("SCRAM-SHA-512", 1, &Mechanism::ALL), Ok(()));
        assert_eq!(a.handshake("SCRAM-SHA-512", 1, &Mechanism::ALL), Err(ErrorCode::ILLEGAL_SASL_STATE));
        let mut done = Auth::start(false, KStr::from(super::super::ANONYMOUS));
        assert_eq!(done.principal().map(KStr::as_str), Some("User:ANONYMOUS"));
        assert_eq!(done.handshake("PLAIN", 1, &Mechanism::ALL), Err(ErrorCode::ILLEGAL_SASL_STATE));
        assert!(matches!(done.token(b"x", &creds(), b""), Step::Failed { .. }));
    }

    #[test]
    fn scram_goes_through_two_tokens_and_refuses_a_user_it_does_not_know() {
        let c = creds();
        let mut a = Auth::start(true, KStr::from(super::super::ANONYMOUS));
        a.handshake("SCRAM-SHA-256", 1, &Mechanism::ALL).unwrap();
        let Step::Continue(first) = a.token(b"n,,n=alice,r=abc", &c, b"xyz") else { panic!("no server-first") };
        assert!(first.starts_with(b"r=abceHl6,s="));
        assert!(matches!(a.token(b"c=biws,r=abceHl6,p=AAAA", &c, b""), Step::Failed { .. }));
        let mut a = Auth::start(true, KStr::from(super::super::ANONYMOUS));
        a.handshake("SCRAM-SHA-512", 1, &Mechanism::ALL).unwrap();
        let Step::Failed { message, reason } = a.token(b"n,,n=alice,r=abc", &c, b"xyz") else { panic!() };
        assert!(message.ends_with("SCRAM-SHA-512") && reason.contains("no credential"), "{message} / {reason}");
    }

    #[test]
    fn the_fuzz_target_runs_on_its_seeds() {
        for input in
            [&b""[..], b"\0\0alice\0wrong", b"\x02n,,n=alice,r=abc\0\0c=biws,r=abc,p=AAAA", b"\x81\xff\xfe\0\0\0"]
        {
            crate::fuzzing::sasl_exchange(input);
        }
    }
}
