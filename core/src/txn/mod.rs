//! Transactions: the coordinator's per-`transactional.id` state machine, the transaction
//! markers it writes into partitions, and what a partition keeps to answer read_committed
//! fetches (its open transactions, the last stable offset and the aborted-transaction index).
//!
//! Everything here is pure: the request handlers decide with these types, store what they
//! return through [`crate::io::Command::Put`] and appends, and report completions back.
//!
//! - [`coordinator`]: [`TxnState`] with Kafka's legal transitions, [`TxnMeta`] (one
//!   transactional id's producer id, epochs, timeout, state and the partitions and groups in its
//!   transaction) and the decisions InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn and
//!   EndTxn take on it, as Kafka's `TransactionCoordinator` does; its stored form.
//! - [`partition`]: [`PartitionTxns`], one partition's open transactions (which hold back the
//!   last stable offset) and aborted transactions (what `aborted_transactions` in a Fetch
//!   response lists).
//! - [`marker`]: COMMIT and ABORT control batches, as the coordinator writes them and as
//!   stores and consumers read them back.

pub mod coordinator;
pub mod marker;
pub mod partition;

pub use coordinator::{EndPlan, InitPlan, TxnMeta, TxnState, TxnTarget};
pub use marker::{MarkerKind, control_batch, parse_marker};
pub use partition::{AbortedTxn, PartitionTxns};
