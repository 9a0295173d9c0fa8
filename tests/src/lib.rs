//! Shared test support for kelp: random sources for the generated message generators,
//! and (as later issues land) the deterministic simulator and client models.
