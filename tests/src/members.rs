//! Consumer-group member processes for the end-to-end group tests: one real client process per
//! member, let in through a start file and stopped through a stop file, which prints one JSON
//! event per line (`start`, `assigned`, `revoked`, `batch`, `commit_failed`, ...; see
//! tests/e2e/clients/).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::clients::{Client, Json, ProcessGroup, Scratch, read_lossy, tail};

/// One member process and its files.
pub struct Member {
    /// Its name in reports and file names.
    pub name: String,
    /// The running process (killed with its group when dropped).
    pub proc: ProcessGroup,
    /// Its stdout: the JSON events.
    pub out: PathBuf,
    /// Its stderr.
    pub err: PathBuf,
    /// Created by the test to let the member join.
    pub start: PathBuf,
    /// Created by the test to make the member commit, leave and exit.
    pub stop: PathBuf,
}

impl Member {
    /// Starts `client` with `args` plus the member's start and stop files.
    #[must_use]
    pub fn spawn(client: &Client, scratch: &Scratch, name: &str, args: &[String]) -> Self {
        let (out, out_file) = scratch.file(&format!("{name}.out"));
        let (err, err_file) = scratch.file(&format!("{name}.err"));
        let start = scratch.path(&format!("{name}.start"));
        let stop = scratch.path(&format!("{name}.stop"));
        let mut args = args.to_vec();
        args.extend(["--start-file".into(), start.display().to_string()]);
        args.extend(["--stop-file".into(), stop.display().to_string()]);
        let proc = ProcessGroup::spawn(client.command(&args), out_file, err_file);
        Self { name: name.into(), proc, out, err, start, stop }
    }

    /// Every complete JSON line it printed so far.
    #[must_use]
    pub fn events(&self) -> Vec<Json> {
        let text = read_lossy(&self.out);
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete.lines().filter_map(|l| Json::parse(l.trim())).collect()
    }

    /// Whether it printed `event`.
    #[must_use]
    pub fn has(&self, event: &str) -> bool {
        self.events().iter().any(|e| ev(e) == event)
    }

    /// The partitions it owns after its latest assignment change, and how many changes it saw.
    #[must_use]
    pub fn owned(&self) -> (BTreeSet<u64>, usize) {
        let changes: Vec<Json> =
            self.events().into_iter().filter(|e| matches!(ev(e), "assigned" | "revoked" | "lost")).collect();
        let owned = changes.last().map_or_else(BTreeSet::new, |e| nums(e.get("owned")));
        (owned, changes.len())
    }

    /// Creates a start or stop file.
    pub fn touch(path: &Path) {
        std::fs::write(path, b"").unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    }

    /// The last lines of its stdout and stderr, for a failure message.
    #[must_use]
    pub fn report(&self) -> String {
        format!(
            "--- {} stdout (last lines)\n{}\n--- {} stderr (last lines)\n{}",
            self.name,
            tail(&shorten(&read_lossy(&self.out)), 15),
            self.name,
            tail(&read_lossy(&self.err), 25)
        )
    }
}

/// An event's name.
#[must_use]
pub fn ev(e: &Json) -> &str {
    e.get("event").and_then(Json::str).unwrap_or("")
}

/// A JSON array of numbers as a set.
#[must_use]
pub fn nums(v: Option<&Json>) -> BTreeSet<u64> {
    v.map(|a| a.items().iter().filter_map(Json::u64).collect()).unwrap_or_default()
}

/// Long batch lines cut for failure reports.
fn shorten(text: &str) -> String {
    text.lines()
        .map(|l| if l.len() > 300 { format!("{}... ({} chars)", &l[..300], l.len()) } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

/// (partition, offset, key) of every record in a member's `batch` events.
#[must_use]
pub fn batch_records(events: &[Json]) -> Vec<(u64, u64, String)> {
    events
        .iter()
        .filter(|e| ev(e) == "batch")
        .flat_map(|e| e.get("records").map(Json::items).unwrap_or_default())
        .filter_map(|r| {
            let r = r.items();
            Some((r.first()?.u64()?, r.get(1)?.u64()?, r.get(2)?.str()?.to_string()))
        })
        .collect()
}

/// (partition, next offset) of every `commit_failed` event.
#[must_use]
pub fn failed_commits(events: &[Json]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter(|e| ev(e) == "commit_failed")
        .flat_map(|e| e.get("offsets").map(Json::items).unwrap_or_default())
        .filter_map(|o| Some((o.items().first()?.u64()?, o.items().get(1)?.u64()?)))
        .collect()
}
