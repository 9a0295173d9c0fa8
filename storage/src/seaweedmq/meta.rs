//! Metadata commands: everything but appends, reads and partition lookups, run one after
//! another on the store's metadata task. Topics go to [`super::topics`]; the core's `Put`
//! values and kelp's log start offsets are filer files ([`super::format`]).

use bytes::Bytes;
use kelp_core::io::{PartitionKey, StorageError};
use kelp_core::{Command, Completion};

use super::cluster::Cluster;
use super::format::{decode_log_start, encode_kv, encode_log_start, kv_name, log_start_name};

impl Cluster {
    /// Runs one metadata command to its completion.
    pub(super) async fn run_meta(&self, command: Command) -> Completion {
        let r = match command {
            Command::Recover => {
                return self.recover().await.map_or_else(Completion::Failed, |r| Completion::Recovered(Box::new(r)));
            }
            Command::PutTopic(t) => self.put_topic(t).await,
            Command::DeleteTopic { topic_id } => self.delete_topic(topic_id).await,
            Command::Put { key, value } => self.put_value(&key, value).await,
            Command::SetLogStart { partition, offset } => self.set_log_start(partition, offset).await,
            other => {
                debug_assert!(false, "not a metadata command: {other:?}");
                Err(StorageError::Corrupt("not a metadata command"))
            }
        };
        r.map_or_else(Completion::Failed, |()| Completion::Done)
    }

    /// Stores `value` under `key`, or deletes the key if `value` is `None`.
    async fn put_value(&self, key: &[u8], value: Option<Bytes>) -> Result<(), StorageError> {
        let name = kv_name(key);
        match value {
            Some(v) => self.put_file(&self.meta_dir("kv"), &name, encode_kv(key, &v)).await,
            None => self.delete_path(&self.meta_dir("kv"), &name).await,
        }
    }

    /// Records kelp's own log start of a partition (DeleteRecords, retention).
    pub(super) async fn set_log_start(&self, key: PartitionKey, offset: i64) -> Result<(), StorageError> {
        self.put_file(&self.meta_dir("logstart"), &log_start_name(key), encode_log_start(offset)).await
    }

    /// kelp's own log start of the partition, 0 if none was set.
    pub(super) async fn stored_log_start(&self, key: PartitionKey) -> Result<i64, StorageError> {
        let name = log_start_name(key);
        Ok(self
            .list_files(&self.meta_dir("logstart"))
            .await?
            .into_iter()
            .find_map(|(n, c)| if n == name { decode_log_start(c) } else { None })
            .unwrap_or(0))
    }
}
