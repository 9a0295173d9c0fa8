//! The tokio driver for kelp's sans-IO broker.
//!
//! One task owns the `Broker`; socket tasks move bytes; storage commands run against a `Store`.
//! It holds no protocol logic. Empty until the broker issue lands.
