//! Storage backends for kelp.
//!
//! The broker core (`kelp-core`) never touches storage itself: it emits storage commands and
//! consumes their completions. This crate will hold the runtime-agnostic `Store` trait and its
//! backends (memory, the embedded disk log, SeaweedMQ). It is empty until the broker and storage
//! issues land; nothing here is part of the public contract yet.
