//! The registry's view for the broker's schema validation ([`kelp_core::schemas`]): which
//! subjects each schema id is registered under, and the parsed schema where a subject-name
//! strategy needs the record's name.
//!
//! The registry node brings it up to date ([`Catalog::sync`]) each time it has applied records
//! and before it answers the writes they carry, so a producer that registered a schema and was
//! answered finds it here. The broker reads it on its own thread: reads take a shared lock and
//! never wait for IO. A schema's text never changes under its id, so a sync parses only the ids
//! it has not seen before.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use kelp_core::schemas::{SchemaCatalog, SchemaCheck, SubjectStrategy};
use kelp_core::typed::{Column, TypedRecord, Typing};

use crate::format::{Parsed, Shape};
use crate::store::{Registry, SchemaId};

/// What the broker knows of one id.
#[derive(Debug)]
struct Known {
    /// Subjects with a live (not soft-deleted) version holding the id.
    subjects: BTreeSet<String>,
    /// The schema, parsed; `None` if this build cannot parse it.
    parsed: Option<Arc<Parsed>>,
}

/// The registry's view for the broker, shared between the registry node and the broker.
#[derive(Debug, Default)]
pub struct Catalog {
    ids: RwLock<HashMap<i32, Known>>,
    /// Whether the registry has read its topic to the end once.
    ready: AtomicBool,
    /// Typed columns by schema id and shape key ([`Parsed::shape_key`]), made on first use.
    /// A schema never changes under its id, so entries stay valid; there is one per id and
    /// Protobuf message that records used.
    shapes: RwLock<HashMap<(i32, String), Arc<Shaped>>>,
}

/// A shape with its columns shared, as [`TypedRecord`]s carry them.
#[derive(Debug)]
struct Shaped {
    columns: Arc<[Column]>,
    shape: Shape,
}

impl Catalog {
    /// An empty view: every id is unknown until the first [`sync`](Self::sync).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the view complete: the registry has read its whole topic (see
    /// [`SchemaCatalog::ready`]).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Makes the view match `registry`. Parses only ids not seen before.
    pub fn sync(&self, registry: &Registry) {
        let old =
            self.ids.read().map(|ids| ids.iter().map(|(id, k)| (*id, k.parsed.clone())).collect::<HashMap<_, _>>());
        let old = old.unwrap_or_default();
        let mut next: HashMap<i32, Known> = HashMap::with_capacity(registry.by_id.len());
        for (&SchemaId(id), holders) in &registry.by_id {
            let mut subjects = BTreeSet::new();
            let mut parsed = old.get(&id).cloned().flatten();
            for (subject, version) in holders {
                let Some(e) = registry.entry(subject, *version) else { continue };
                if !e.deleted {
                    subjects.insert(subject.clone());
                }
                if parsed.is_none() {
                    parsed = registry.parse_entry(e).map(Arc::new);
                }
            }
            next.insert(id, Known { subjects, parsed });
        }
        // An id gone from the registry (hard-deleted) may come back with another schema
        // (IMPORT mode): the shapes made for its old schema go with it.
        let stale = |id: &i32| next.get(id).is_none_or(|k| k.parsed.is_none());
        if old.keys().any(stale)
            && let Ok(mut shapes) = self.shapes.write()
        {
            shapes.retain(|(id, _), _| !stale(id));
        }
        if let Ok(mut ids) = self.ids.write() {
            *ids = next;
        }
    }
}

impl Catalog {
    fn parsed(&self, id: i32) -> Option<Arc<Parsed>> {
        self.ids.read().ok()?.get(&id)?.parsed.clone()
    }

    fn shaped(&self, id: i32, parsed: &Parsed, payload: &[u8]) -> Option<Arc<Shaped>> {
        let key = (id, parsed.shape_key(payload)?);
        if let Some(s) = self.shapes.read().ok()?.get(&key) {
            return Some(s.clone());
        }
        let shape = parsed.shape(payload)?;
        let shaped = Arc::new(Shaped { columns: shape.columns().into(), shape });
        self.shapes.write().ok()?.entry(key).or_insert(shaped).clone().into()
    }
}

impl SchemaCatalog for Catalog {
    fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn typed(&self, id: i32, payload: &[u8]) -> Typing {
        let Some(parsed) = self.parsed(id) else { return Typing::Untyped };
        let Some(shaped) = self.shaped(id, &parsed, payload) else { return Typing::Untyped };
        match parsed.decode(&shaped.shape, payload) {
            Ok(cells) => Typing::Typed(TypedRecord { columns: shaped.columns.clone(), cells }),
            Err(e) => Typing::Undecodable(shaped.columns.clone(), e),
        }
    }

    fn check(&self, c: &SchemaCheck<'_>) -> Result<(), String> {
        let ids = self.ids.read().map_err(|_| "the schema registry's view is unavailable".to_owned())?;
        let Some(known) = ids.get(&c.id) else {
            return Err(format!("schema id {} is not in the schema registry", c.id));
        };
        let subject = match c.validation.strategy {
            SubjectStrategy::TopicName => c.validation.strategy.subject(c.topic, c.field, ""),
            strategy => {
                let name = known.parsed.as_deref().and_then(|p| p.record_name(c.payload)).ok_or_else(|| {
                    format!(
                        "the {} with schema id {} has no record name for the subject-name strategy",
                        c.field.as_str(),
                        c.id
                    )
                })?;
                strategy.subject(c.topic, c.field, &name)
            }
        };
        if !known.subjects.contains(&subject) {
            return Err(format!("schema id {} is not registered under subject {subject}", c.id));
        }
        if !c.validation.payload {
            return Ok(());
        }
        let parsed = known.parsed.as_deref().ok_or_else(|| format!("schema id {} cannot be parsed by kelp", c.id))?;
        parsed
            .check_payload(c.payload)
            .map_err(|e| format!("the {} does not decode with schema id {}: {e}", c.field.as_str(), c.id))
    }
}
