//! Authentication: the SASL exchange a connection goes through on a SASL listener
//! ([`sasl`]), the SCRAM mechanism and its stored credentials ([`scram`]), and the principal a
//! connection acts as once it is through.
//!
//! All of it is pure: the broker feeds it tokens from SaslHandshake and SaslAuthenticate (or
//! raw frames after a v0 handshake) and sends what it answers. Randomness for SCRAM nonces
//! comes from [`SecretRng`], a ChaCha20 generator the driver seeds from the operating system
//! ([`crate::Broker::seed_secrets`]).

pub mod acl;
pub mod sasl;
pub mod scram;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::codec::KStr;

/// A SASL mechanism kelp offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// RFC 4616: user name and password in the clear (use it over TLS only), checked against
    /// the user's stored SCRAM credentials.
    Plain,
    /// RFC 5802/7677 SCRAM with SHA-256.
    ScramSha256,
    /// RFC 5802 SCRAM with SHA-512.
    ScramSha512,
}

impl Mechanism {
    /// Every mechanism.
    pub const ALL: [Self; 3] = [Self::ScramSha512, Self::ScramSha256, Self::Plain];

    /// The mechanisms offered unless configured otherwise: the SCRAM ones. PLAIN is offered
    /// only when asked for: it sends passwords (in the clear without TLS), and checking one
    /// costs the broker the credential's PBKDF2 iterations, before the client is known.
    pub const DEFAULT: [Self; 2] = [Self::ScramSha512, Self::ScramSha256];

    /// The mechanism's SASL name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism named `s` (SASL names are upper case; matched exactly, as Kafka does).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The SCRAM hash, for the SCRAM mechanisms.
    #[must_use]
    pub const fn scram(self) -> Option<scram::ScramHash> {
        match self {
            Self::Plain => None,
            Self::ScramSha256 => Some(scram::ScramHash::Sha256),
            Self::ScramSha512 => Some(scram::ScramHash::Sha512),
        }
    }
}

/// The principal of a connection that did not authenticate: PLAINTEXT listeners, and SSL
/// listeners whose client presented no certificate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// The principal of in-process connections (the schema registry's).
pub const INTERNAL: &str = "Internal:kelp";

/// `User:` and `name`.
#[must_use]
pub fn user_principal(name: &str) -> KStr {
    KStr::from(format!("User:{name}"))
}

/// The generator of secrets (SCRAM server nonces): ChaCha20, seeded from the broker's seed
/// until the driver gives it 32 bytes of operating-system entropy.
pub struct SecretRng(ChaCha20Rng);

impl core::fmt::Debug for SecretRng {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SecretRng")
    }
}

impl SecretRng {
    /// A generator derived from the broker's (not secret) seed: deterministic, for tests and
    /// the simulator.
    #[must_use]
    pub fn from_seed(seed: u64) -> Self {
        Self(ChaCha20Rng::seed_from_u64(seed ^ 0x5ec2_e75e_ed00_0001))
    }

    /// A generator keyed with `key` (operating-system entropy).
    #[must_use]
    pub fn from_key(key: [u8; 32]) -> Self {
        Self(ChaCha20Rng::from_seed(key))
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        self.0.fill_bytes(out);
    }
}
