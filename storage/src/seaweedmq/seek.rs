//! Finding records by time: `FindOffset` (ListOffsets by timestamp) and `Retain` (retention by
//! time). SeaweedMQ has no index from time to kelp's offsets, so both read the partition
//! forwards until a record is new enough.

use kelp_core::Completion;
use kelp_core::io::{PartitionKey, StorageError, TimestampOffset};

use super::cluster::Cluster;
use super::envelope::Envelope;

/// How many bytes each read of a search asks for.
const SEEK_READ: usize = 1 << 20;

impl Cluster {
    /// Answers `FindOffset`: the first record at or after `timestamp`, with its timestamp.
    pub(super) async fn find_offset(&self, key: PartitionKey, timestamp: i64) -> Completion {
        let found = async {
            let (earliest, hwm) = self.offsets(key, false).await?;
            self.first_at_or_after(key, earliest, hwm, timestamp).await
        };
        match found.await {
            Ok(found) => Completion::Offset {
                found: found.map(|(r, timestamp)| TimestampOffset { timestamp, offset: r.offset }),
            },
            Err(e) => Completion::Failed(e),
        }
    }

    /// Answers `Retain` for retention by time (`retention.ms`): kelp moves its own log start
    /// (as DeleteRecords does) past the batches that are wholly older than `older_than`, up to
    /// the first batch holding a record at or after it, and no further than `limit`.
    /// SeaweedMQ's data itself is not deleted (its own retention governs that), and readers of
    /// kelp see the partition start there. A partition whose records are all older keeps its
    /// last batch, as Kafka keeps the active segment. Retention by size (`retention.bytes`) is
    /// not applied here: SeaweedMQ does not tell a partition's size by offset.
    pub(super) async fn retain(&self, key: PartitionKey, older_than: Option<i64>, limit: i64) -> Completion {
        match self.retained_start(key, older_than, limit).await {
            Ok(offset) => Completion::LogStart { offset, max_timestamp: TimestampOffset::NONE },
            Err(e) => Completion::Failed(e),
        }
    }

    /// The log start after applying retention (see [`Cluster::retain`]), recorded if it moved.
    async fn retained_start(
        &self,
        key: PartitionKey,
        older_than: Option<i64>,
        limit: i64,
    ) -> Result<i64, StorageError> {
        let stored = self.stored_log_start(key).await?;
        let Some(older_than) = older_than else { return Ok(stored) };
        let (earliest, hwm) = self.offsets(key, false).await?;
        let start = stored.max(earliest);
        let end = hwm.min(limit);
        let Some((r, _)) = self.first_at_or_after(key, start, end, older_than).await? else { return Ok(start) };
        let new_start = r.batch_base().max(start);
        if new_start <= stored {
            return Ok(start);
        }
        self.set_log_start(key, new_start).await?;
        tracing::info!(?key, from = stored, to = new_start, "seaweedmq: retention moved the log start");
        Ok(new_start)
    }

    /// The first record in `from..end` whose timestamp (the log append time where the topic
    /// uses it) is at least `timestamp`, with that timestamp; every record before it is older.
    async fn first_at_or_after(
        &self,
        key: PartitionKey,
        from: i64,
        end: i64,
        timestamp: i64,
    ) -> Result<Option<(Envelope, i64)>, StorageError> {
        let mut at = from;
        while at < end {
            let (got, next) = match self.read_records(key, at, end, SEEK_READ).await {
                Ok(g) => g,
                // Nothing delivered from `at` on by fresh subscriptions: holes (see `scan`).
                Err(StorageError::Timeout) if at > from => break,
                Err(e) => return Err(e),
            };
            if next <= at {
                break;
            }
            at = next;
            if let Some(found) = got.into_iter().find_map(|r| {
                let ts = if r.log_append_time { r.max_timestamp } else { r.timestamp };
                (ts >= timestamp).then_some((r, ts))
            }) {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}
