//! The mio driver for kelp's sans-IO broker: one thread around one `mio::Poll`.
//!
//! It holds no protocol logic. Empty until the runtime issue lands.
