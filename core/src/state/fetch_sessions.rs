//! KIP-227 incremental fetch sessions: a bounded cache of sessions, each remembering the
//! partitions a consumer fetches and what it was last told about them, so an incremental
//! fetch names only what changed and is answered with only what changed.

use std::collections::BTreeMap;

use crate::codec::{ErrorCode, KStr, Uuid};
use crate::config::Config;
use crate::io::PartitionKey;
use crate::rng::Rng;
use crate::time::Instant;

/// One partition a fetch asks for.
#[derive(Clone, Debug)]
pub(crate) struct FetchPart {
    /// The topic's name (empty when the request named it by an unknown id).
    pub name: KStr,
    /// The topic's id (zero when the request named it by an unknown name).
    pub topic_id: Uuid,
    /// The partition.
    pub partition: i32,
    /// Where to read from.
    pub offset: i64,
    /// The most bytes this partition may return.
    pub max_bytes: usize,
    /// The leader epoch the client believes in.
    pub leader_epoch: i32,
}

impl FetchPart {
    /// The partition's key.
    pub(crate) fn key(&self) -> PartitionKey {
        PartitionKey { topic_id: self.topic_id, partition: self.partition }
    }

    /// Whether this is the partition a request names (by id from Fetch v13 on, else by name).
    fn is(&self, name: &KStr, id: Uuid, partition: i32, uses_ids: bool) -> bool {
        self.partition == partition && if uses_ids { self.topic_id == id } else { &self.name == name }
    }
}

/// What a session remembers of a partition.
#[derive(Clone, Debug)]
pub(crate) struct SessionPart {
    /// The partition as last requested.
    pub part: FetchPart,
    /// (high watermark, log start) as last sent, to decide what an incremental response
    /// must include.
    pub last_sent: Option<(i64, i64)>,
}

#[derive(Debug)]
struct Session {
    /// The epoch the next incremental request must carry.
    next_epoch: i32,
    parts: Vec<SessionPart>,
    last_used: Instant,
    uses_topic_ids: bool,
}

/// A forgotten partition of an incremental fetch: topic name, topic id, partition.
pub(crate) type Forgotten = (KStr, Uuid, i32);

/// What a fetch request says about its session and partitions.
#[derive(Debug)]
pub(crate) struct SessionRequest<'a> {
    /// The session id (0: none).
    pub id: i32,
    /// The session epoch (-1: close or none, 0: new).
    pub epoch: i32,
    /// Whether topics are named by id (Fetch v13+).
    pub uses_ids: bool,
    /// The partitions the request names.
    pub requested: Vec<FetchPart>,
    /// The partitions an incremental request drops from its session.
    pub forgotten: &'a [Forgotten],
}

/// How a fetch's session was resolved.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The session the response names, if any.
    pub session: Option<i32>,
    /// Whether the response lists only what changed.
    pub incremental: bool,
    /// The partitions to fetch.
    pub parts: Vec<FetchPart>,
}

/// The broker's fetch sessions: a bounded cache, least recently used evicted first.
#[derive(Debug, Default)]
pub(crate) struct FetchSessions {
    by_id: BTreeMap<i32, Session>,
}

impl FetchSessions {
    /// Applies KIP-227's rules for a request's session id and epoch.
    pub(crate) fn resolve(
        &mut self,
        cfg: &Config,
        rng: &mut Rng,
        now: Instant,
        r: SessionRequest<'_>,
    ) -> Result<Resolved, ErrorCode> {
        let full = |session, parts| Ok(Resolved { session, incremental: false, parts });
        let SessionRequest { id: session_id, epoch, uses_ids, requested, forgotten } = r;
        match (session_id, epoch) {
            // Sessionless full fetch (all versions before 7 look like this).
            (0, -1) => full(None, requested),
            (old, 0) => {
                // A new session, if the cache has room (else a sessionless answer). A session
                // named with epoch 0 is closed first: that is how the Java consumer starts
                // over after a session error (`FetchMetadata.nextCloseExisting`), as Kafka
                // allows.
                self.by_id.remove(&old);
                let Some(id) = self.new_id(cfg, rng, now) else { return full(None, requested) };
                let parts = requested.iter().map(|p| SessionPart { part: p.clone(), last_sent: None }).collect();
                self.by_id.insert(id, Session { next_epoch: 1, parts, last_used: now, uses_topic_ids: uses_ids });
                full(Some(id), requested)
            }
            (id, -1) => {
                self.by_id.remove(&id);
                full(None, requested)
            }
            (0, _) => Err(ErrorCode::INVALID_FETCH_SESSION_EPOCH),
            (id, epoch) => self.continue_session(id, epoch, now, uses_ids, requested, forgotten),
        }
    }

    fn continue_session(
        &mut self,
        id: i32,
        epoch: i32,
        now: Instant,
        uses_ids: bool,
        requested: Vec<FetchPart>,
        forgotten: &[Forgotten],
    ) -> Result<Resolved, ErrorCode> {
        let s = self.by_id.get_mut(&id).ok_or(ErrorCode::FETCH_SESSION_ID_NOT_FOUND)?;
        if epoch != s.next_epoch {
            return Err(ErrorCode::INVALID_FETCH_SESSION_EPOCH);
        }
        if s.uses_topic_ids != uses_ids {
            return Err(ErrorCode::FETCH_SESSION_TOPIC_ID_ERROR);
        }
        s.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
        s.last_used = now;
        s.parts.retain(|sp| !forgotten.iter().any(|(n, i, p)| sp.part.is(n, *i, *p, uses_ids)));
        for r in requested {
            match s.parts.iter_mut().find(|sp| sp.part.is(&r.name, r.topic_id, r.partition, uses_ids)) {
                Some(sp) => sp.part = r,
                None => s.parts.push(SessionPart { part: r, last_sent: None }),
            }
        }
        Ok(Resolved { session: Some(id), incremental: true, parts: s.parts.iter().map(|sp| sp.part.clone()).collect() })
    }

    /// A new session id, evicting the least recently used session when the cache is full and
    /// that session has been idle long enough; `None` when there is no room.
    fn new_id(&mut self, cfg: &Config, rng: &mut Rng, now: Instant) -> Option<i32> {
        if cfg.max_fetch_sessions == 0 {
            return None;
        }
        if self.by_id.len() >= cfg.max_fetch_sessions {
            let (oldest, used) =
                self.by_id.iter().min_by_key(|(_, s)| s.last_used).map(|(id, s)| (*id, s.last_used))?;
            if now.since(used) < cfg.fetch_session_idle {
                return None;
            }
            self.by_id.remove(&oldest);
        }
        loop {
            let id = i32::try_from(rng.next_u64() & 0x7fff_ffff).unwrap_or(1);
            if id != 0 && !self.by_id.contains_key(&id) {
                return Some(id);
            }
        }
    }

    /// A copy of a session's partitions, to update while a response is built.
    pub(crate) fn parts(&self, id: i32) -> Option<Vec<SessionPart>> {
        self.by_id.get(&id).map(|s| s.parts.clone())
    }

    /// Stores a session's partitions back after a response was built.
    pub(crate) fn set_parts(&mut self, id: i32, parts: Vec<SessionPart>) {
        if let Some(s) = self.by_id.get_mut(&id) {
            s.parts = parts;
        }
    }

    /// The number of sessions.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{FetchPart, FetchSessions, Forgotten, SessionRequest};
    use crate::codec::{ErrorCode, KStr, Uuid};
    use crate::config::Config;
    use crate::rng::Rng;
    use crate::time::Instant;

    fn req(id: i32, epoch: i32, requested: Vec<FetchPart>, forgotten: &[Forgotten]) -> SessionRequest<'_> {
        SessionRequest { id, epoch, uses_ids: false, requested, forgotten }
    }

    fn part(p: i32) -> FetchPart {
        FetchPart {
            name: KStr::from_static("t"),
            topic_id: Uuid::ZERO,
            partition: p,
            offset: 0,
            max_bytes: 1024,
            leader_epoch: -1,
        }
    }

    #[test]
    fn an_incremental_fetch_keeps_the_session_partitions_and_checks_the_epoch() {
        let (cfg, mut rng, mut s) = (Config::default(), Rng::new(7), FetchSessions::default());
        let now = Instant(0);
        let first = s.resolve(&cfg, &mut rng, now, req(0, 0, vec![part(0), part(1)], &[])).unwrap();
        let id = first.session.expect("a new session");
        assert!(!first.incremental);
        let next = s.resolve(&cfg, &mut rng, now, req(id, 1, Vec::new(), &[])).unwrap();
        assert!(next.incremental);
        assert_eq!(next.parts.iter().map(|p| p.partition).collect::<Vec<_>>(), [0, 1]);
        let forgot = [(KStr::from_static("t"), Uuid::ZERO, 0)];
        let after = s.resolve(&cfg, &mut rng, now, req(id, 2, Vec::new(), &forgot)).unwrap();
        assert_eq!(after.parts.iter().map(|p| p.partition).collect::<Vec<_>>(), [1]);
        let stale = s.resolve(&cfg, &mut rng, now, req(id, 2, Vec::new(), &[])).unwrap_err();
        assert_eq!(stale, ErrorCode::INVALID_FETCH_SESSION_EPOCH);
        let unknown = s.resolve(&cfg, &mut rng, now, req(id ^ 1, 1, Vec::new(), &[])).unwrap_err();
        assert_eq!(unknown, ErrorCode::FETCH_SESSION_ID_NOT_FOUND);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_full_cache_answers_without_a_session() {
        let cfg = Config { max_fetch_sessions: 1, ..Config::default() };
        let (mut rng, mut s) = (Rng::new(7), FetchSessions::default());
        assert!(s.resolve(&cfg, &mut rng, Instant(0), req(0, 0, vec![part(0)], &[])).unwrap().session.is_some());
        let second = s.resolve(&cfg, &mut rng, Instant(1), req(0, 0, vec![part(0)], &[])).unwrap();
        assert_eq!(second.session, None);
    }
}
