//! Files on the filer: writing, deleting and listing the small files kelp keeps its metadata
//! in (their content is inline in the filer entry, no volume chunks; [`super::format`] says
//! what is in them), and listing SeaweedMQ's own files (see [`super::repair`]).

use bytes::Bytes;
use kelp_core::io::StorageError;
use tokio::time::timeout;

use super::cluster::{Cluster, now_ns, unavailable};
use super::pb::filer_pb;

/// Entries asked for per `ListEntries` call; a shorter answer is the last page.
const LIST_PAGE: u32 = 1024;

impl Cluster {
    /// Writes `content` as the file `dir/name`, replacing any file there.
    pub(super) async fn put_file(&self, dir: &str, name: &str, content: Bytes) -> Result<(), StorageError> {
        let secs = now_ns() / 1_000_000_000;
        let entry = filer_pb::Entry {
            name: name.to_owned(),
            is_directory: false,
            attributes: Some(filer_pb::FuseAttributes {
                file_size: content.len() as u64,
                mtime: secs,
                file_mode: 0o644,
                crtime: secs,
                ..Default::default()
            }),
            content,
            ..Default::default()
        };
        let req = filer_pb::CreateEntryRequest { directory: dir.to_owned(), entry: Some(entry), ..Default::default() };
        let r = self.rpc("filer CreateEntry", self.filer().create_entry(req)).await?;
        if r.error.is_empty() {
            Ok(())
        } else {
            tracing::warn!(dir, name, error = %r.error, "seaweedmq: filer CreateEntry refused");
            Err(StorageError::Unavailable)
        }
    }

    /// Deletes `dir/name` and everything under it; a path that does not exist is no error.
    pub(super) async fn delete_path(&self, dir: &str, name: &str) -> Result<(), StorageError> {
        let req = filer_pb::DeleteEntryRequest {
            directory: dir.to_owned(),
            name: name.to_owned(),
            is_delete_data: true,
            is_recursive: true,
            ignore_recursive_error: true,
        };
        match self.rpc("filer DeleteEntry", self.filer().delete_entry(req)).await {
            Ok(r) if r.error.is_empty() || r.error.contains("not found") => Ok(()),
            Ok(r) => {
                tracing::warn!(dir, name, error = %r.error, "seaweedmq: filer DeleteEntry refused");
                Err(StorageError::Unavailable)
            }
            Err(StorageError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the entry of an existing file in `dir`.
    pub(super) async fn update_entry(&self, dir: &str, entry: filer_pb::Entry) -> Result<(), StorageError> {
        let req = filer_pb::UpdateEntryRequest { directory: dir.to_owned(), entry: Some(entry) };
        self.rpc("filer UpdateEntry", self.filer().update_entry(req)).await.map(|_| ())
    }

    /// Every file in `dir` (none if it does not exist), with its inline content.
    pub(super) async fn list_files(&self, dir: &str) -> Result<Vec<(String, Bytes)>, StorageError> {
        Ok(self
            .list_entries(dir, "")
            .await?
            .into_iter()
            .filter(|e| !e.is_directory)
            .map(|e| (e.name, e.content))
            .collect())
    }

    /// Every entry of `dir` (none if it does not exist) whose name sorts at or after `start`.
    pub(super) async fn list_entries(&self, dir: &str, start: &str) -> Result<Vec<filer_pb::Entry>, StorageError> {
        let mut out = Vec::new();
        let (mut from, mut inclusive) = (start.to_owned(), true);
        while let Some(last) = self.list_page(dir, &from, inclusive, &mut out).await? {
            (from, inclusive) = (last, false);
        }
        Ok(out)
    }

    /// Appends to `out` the entries of the page of `dir` that starts at the entry `start`
    /// (after it unless `inclusive`; the directory's start if `start` is empty). Returns the
    /// name to list the next page after, or `None` if this page was the last or the
    /// directory does not exist.
    async fn list_page(
        &self,
        dir: &str,
        start: &str,
        inclusive: bool,
        out: &mut Vec<filer_pb::Entry>,
    ) -> Result<Option<String>, StorageError> {
        let req = filer_pb::ListEntriesRequest {
            directory: dir.to_owned(),
            start_from_file_name: start.to_owned(),
            inclusive_start_from: inclusive,
            limit: LIST_PAGE,
            ..Default::default()
        };
        let mut stream = match self.rpc("filer ListEntries", self.filer().list_entries(req)).await {
            Ok(s) => s,
            Err(StorageError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let (mut entries, mut last) = (0, None);
        loop {
            match timeout(self.cfg.rpc_timeout, stream.message()).await {
                Ok(Ok(Some(r))) => {
                    let Some(e) = r.entry else { continue };
                    entries += 1;
                    last = Some(e.name.clone());
                    out.push(e);
                }
                Ok(Ok(None)) => break,
                Ok(Err(s)) if s.code() == tonic::Code::NotFound => return Ok(None),
                Ok(Err(s)) => return Err(unavailable("filer ListEntries")(s)),
                Err(_) => return Err(StorageError::Timeout),
            }
        }
        Ok(if entries < LIST_PAGE { None } else { last })
    }
}
