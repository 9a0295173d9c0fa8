//! The registry node against kelp's real broker core and its reference store, in process: the
//! node creates and reads `_schemas`, writes through it, comes back after a restart with the
//! same state, and answers a failed write with an error and no change.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;
use kelp_core::codec::encode_request_frame;
use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kelp_core::io::StorageError;
use kelp_core::mem_store::MemStore;
use kelp_core::records::{Compression, RecordBatchBuilder};
use kelp_core::time::Duration;
use kelp_core::{Broker, CmdId, Command, Completion, Config, ConnId, Input, Instant, Now, Output};
use kelp_registry::node::{Node, NodeConfig, NodeOutput, OwnedRequest};
use kelp_registry::{Body, Registry, Response};
use serde_json::{Value, json};

const NODE_CONN: ConnId = ConnId(1);
const OTHER_CONN: ConnId = ConnId(2);
const SCHEMA_V1: &str = r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"}]}"#;
const SCHEMA_V2: &str = r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"},{"name":"email","type":["null","string"],"default":null}]}"#;

/// A broker with a memory store, one node connected to it, and virtual time.
struct World {
    broker: Broker,
    store: MemStore,
    node: Node,
    now: Now,
    /// Storage commands waiting to run.
    queued: VecDeque<(CmdId, Command)>,
    /// Whether appends fail.
    fail_appends: bool,
    /// Whether storage commands run at once.
    hold_storage: bool,
    replies: Vec<(u64, Response)>,
    next_id: u64,
    /// Whether the broker paused reading the node's connection, and what the node sent
    /// meanwhile (a driver holds it in the socket, or the in-process inbox).
    paused: bool,
    unread: Vec<Bytes>,
    /// Appends the store ran.
    appends: usize,
}

impl World {
    fn new(store: MemStore) -> Self {
        Self::with(store, false)
    }

    /// A world whose storage commands wait from the start when `hold` (the broker has not
    /// even recovered).
    fn with(store: MemStore, hold: bool) -> Self {
        let now = Now { mono: Instant(0), wall_ms: 1_700_000_000_000 };
        let broker = Broker::new(Config::default(), 7, now);
        let node = Node::new(Registry::new("test-cluster"), NodeConfig::default(), wall(now));
        let mut w = Self {
            broker,
            store,
            node,
            now,
            queued: VecDeque::new(),
            fail_appends: false,
            hold_storage: hold,
            replies: Vec::new(),
            next_id: 0,
            paused: false,
            unread: Vec::new(),
            appends: 0,
        };
        let peer: SocketAddr = "127.0.0.1:0".parse().expect("literal");
        w.broker.handle_input(now, Input::Accepted { conn: NODE_CONN, peer, origin: Default::default() });
        w.broker.handle_input(now, Input::Accepted { conn: OTHER_CONN, peer, origin: Default::default() });
        w.settle();
        w
    }

    /// Moves everything along until nothing moves: node output to the broker, broker output
    /// to the node, storage commands (unless held), and virtual time while something waits.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(out) = self.node.poll_output() {
                moved = true;
                match out {
                    NodeOutput::Kafka(bytes) if self.paused => self.unread.push(bytes),
                    NodeOutput::Kafka(bytes) => {
                        self.broker.handle_input(self.now, Input::Received { conn: NODE_CONN, bytes: &bytes });
                    }
                    NodeOutput::Reply { id, response } => self.replies.push((id, response)),
                }
            }
            while let Some(out) = self.broker.poll_output() {
                moved = true;
                match out {
                    Output::Send { conn, bytes } => {
                        let n: usize = bytes.iter().map(Bytes::len).sum();
                        if conn == NODE_CONN {
                            for b in bytes {
                                self.node.handle_kafka(wall(self.now), &b).expect("the node reads the broker");
                            }
                        }
                        self.broker.handle_input(self.now, Input::Written { conn, bytes: n });
                    }
                    Output::Storage { cmd, command } => self.queued.push_back((cmd, command)),
                    Output::PauseRead { conn } if conn == NODE_CONN => self.paused = true,
                    Output::ResumeRead { conn } if conn == NODE_CONN => {
                        self.paused = false;
                        for bytes in std::mem::take(&mut self.unread) {
                            self.broker.handle_input(self.now, Input::Received { conn: NODE_CONN, bytes: &bytes });
                        }
                    }
                    _ => {}
                }
            }
            if !self.hold_storage
                && let Some((cmd, command)) = self.queued.pop_front()
            {
                moved = true;
                self.appends += usize::from(matches!(command, Command::Append { .. }));
                let result = match command {
                    Command::Append { .. } if self.fail_appends => Completion::Failed(StorageError::Unavailable),
                    command => self.store.execute(command),
                };
                self.broker.handle_input(self.now, Input::Completed { cmd, result });
            }
            if !moved {
                return;
            }
        }
        panic!("the world did not settle");
    }

    /// Lets `ms` of virtual time pass, in steps, firing the broker's and the node's timers.
    fn advance(&mut self, ms: u64) {
        for _ in 0..ms / 50 {
            self.now.mono = self.now.mono + Duration::from_millis(50);
            self.now.wall_ms += 50;
            self.broker.handle_input(self.now, Input::Tick);
            self.node.handle_tick(wall(self.now));
            self.settle();
        }
    }

    fn call(&mut self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let id = self.send(method, path, body);
        self.settle();
        self.advance(1_000);
        self.reply(id)
    }

    fn send(&mut self, method: &str, path: &str, body: Value) -> u64 {
        self.next_id += 1;
        let body = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
        let req = OwnedRequest { method: method.into(), path: path.into(), query: String::new(), body };
        self.node.handle_http(wall(self.now), self.next_id, req);
        self.next_id
    }

    fn reply(&mut self, id: u64) -> (u16, Value) {
        let i = self.replies.iter().position(|(i, _)| *i == id).expect("a reply");
        let (_, r) = self.replies.remove(i);
        let body = match r.body {
            Body::Json(v) => v,
            Body::Text(t) => Value::String(t),
        };
        (r.status, body)
    }

    fn register(&mut self, subject: &str, schema: &str) -> (u16, Value) {
        self.call("POST", &format!("/subjects/{subject}/versions"), json!({ "schema": schema }))
    }
}

fn wall(now: Now) -> u64 {
    u64::try_from(now.wall_ms).expect("positive")
}

#[test]
fn the_node_creates_its_topic_writes_through_it_and_reads_it_back_after_a_restart() {
    let mut w = World::new(MemStore::new());
    w.advance(1_000);
    assert!(w.node.is_ready());
    assert_eq!(w.register("users-value", SCHEMA_V1), (200, json!({"id": 1})));
    assert_eq!(w.register("orders-value", SCHEMA_V1), (200, json!({"id": 1})), "ids are global");
    assert_eq!(w.register("users-value", SCHEMA_V2), (200, json!({"id": 2})));
    assert_eq!(w.call("PUT", "/config/users-value", json!({"compatibility": "FULL"})).0, 200);
    assert_eq!(w.call("GET", "/subjects", Value::Null), (200, json!(["orders-value", "users-value"])));

    // A new broker and node over the same store: everything is read back from `_schemas`.
    let mut w = World::new(w.store);
    w.advance(1_000);
    assert!(w.node.is_ready());
    assert_eq!(w.node.skipped(), 0);
    assert_eq!(w.call("GET", "/subjects", Value::Null), (200, json!(["orders-value", "users-value"])));
    assert_eq!(w.call("GET", "/subjects/users-value/versions", Value::Null), (200, json!([1, 2])));
    assert_eq!(w.call("GET", "/config/users-value", Value::Null), (200, json!({"compatibilityLevel": "FULL"})));
    assert_eq!(w.register("users-value", SCHEMA_V2), (200, json!({"id": 2})), "already registered");
    let v3 = r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"},{"name":"n","type":"int","default":0}]}"#;
    assert_eq!(w.register("users-value", v3), (200, json!({"id": 3})), "the id sequence goes on");
}

#[test]
fn requests_before_the_topic_is_read_wait_and_writes_go_one_at_a_time() {
    let mut w = World::with(MemStore::new(), true);
    // Nothing stored yet: the node is not ready and the requests wait.
    let first = w.send("POST", "/subjects/a/versions", json!({ "schema": SCHEMA_V1 }));
    let second = w.send("POST", "/subjects/b/versions", json!({ "schema": SCHEMA_V2 }));
    let read = w.send("GET", "/subjects", Value::Null);
    w.settle();
    w.advance(1_000);
    assert!(w.replies.is_empty() && !w.node.is_ready());
    w.hold_storage = false;
    w.settle();
    w.advance(2_000);
    assert_eq!(w.reply(first), (200, json!({"id": 1})));
    assert_eq!(w.reply(second), (200, json!({"id": 2})));
    // The read was decided once the node was ready, before the writes were applied or after:
    // either way it is a list of subjects.
    assert_eq!(w.reply(read).0, 200);
    assert_eq!(w.call("GET", "/subjects", Value::Null), (200, json!(["a", "b"])));
}

#[test]
fn a_failed_write_answers_50001_and_changes_nothing() {
    let mut w = World::new(MemStore::new());
    w.advance(1_000);
    assert_eq!(w.register("a", SCHEMA_V1), (200, json!({"id": 1})));
    w.fail_appends = true;
    let (status, body) = w.register("b", SCHEMA_V2);
    assert_eq!((status, body["error_code"].clone()), (500, json!(50001)), "{body}");
    w.fail_appends = false;
    assert_eq!(w.call("GET", "/subjects", Value::Null), (200, json!(["a"])));
    assert_eq!(w.register("b", SCHEMA_V2), (200, json!({"id": 2})), "the id was not used");
}

#[test]
fn a_write_not_stored_in_time_answers_50002() {
    let mut w = World::new(MemStore::new());
    w.advance(1_000);
    w.hold_storage = true;
    let id = w.send("POST", "/subjects/a/versions", json!({ "schema": SCHEMA_V1 }));
    w.settle();
    w.advance(11_000);
    let (status, body) = w.reply(id);
    assert_eq!((status, body["error_code"].clone()), (500, json!(50002)), "{body}");
}

#[test]
fn records_another_writer_adds_to_the_topic_are_applied() {
    let mut w = World::new(MemStore::new());
    w.advance(1_000);
    // Another registry (another kelp on the same SeaweedMQ cluster, say) writes a schema.
    let key = json!({"keytype": "SCHEMA", "subject": "elsewhere", "version": 1, "magic": 1}).to_string();
    let value =
        json!({"subject": "elsewhere", "version": 1, "id": 42, "schema": SCHEMA_V1, "deleted": false}).to_string();
    let mut batch = RecordBatchBuilder::new(Compression::None);
    batch.append(0, Some(key.as_bytes()), Some(value.as_bytes()), &[]).expect("builds");
    let produce = RequestBody::Produce(ProduceRequest {
        acks: -1,
        timeout_ms: 1000,
        topic_data: vec![TopicProduceData {
            name: "_schemas".into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(batch.build().expect("builds")),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let frame = encode_request_frame(&produce, 9, 1, Some("other"));
    w.broker.handle_input(w.now, Input::Received { conn: OTHER_CONN, bytes: &frame });
    w.settle();
    w.advance(1_000);
    assert_eq!(w.call("GET", "/schemas/ids/42/subjects", Value::Null), (200, json!(["elsewhere"])));
    assert_eq!(w.register("mine", SCHEMA_V2), (200, json!({"id": 43})), "new ids follow the highest seen");
}

#[test]
fn a_write_is_answered_without_waiting_for_time_to_pass() {
    let mut w = World::new(MemStore::new());
    w.advance(1_000);
    // No virtual time passes: a write must not sit behind a fetch waiting at the broker.
    let id = w.send("POST", "/subjects/a/versions", json!({ "schema": SCHEMA_V1 }));
    w.settle();
    assert_eq!(w.reply(id), (200, json!({"id": 1})));
    let id = w.send("POST", "/subjects/b/versions", json!({ "schema": SCHEMA_V2 }));
    w.settle();
    assert_eq!(w.reply(id), (200, json!({"id": 2})));
}

#[test]
fn a_write_after_one_that_timed_out_is_decided_once_the_first_is_applied() {
    let mut w = World::new(MemStore::new());
    w.advance(1_000);
    w.hold_storage = true;
    let first = w.send("POST", "/subjects/a/versions", json!({ "schema": SCHEMA_V1 }));
    w.settle();
    w.advance(11_000);
    assert_eq!(w.reply(first).1["error_code"], 50002);
    // The first write is still on its way to the store; the second must not take its id.
    let second = w.send("POST", "/subjects/b/versions", json!({ "schema": SCHEMA_V2 }));
    w.settle();
    w.hold_storage = false;
    w.settle();
    w.advance(1_000);
    assert_eq!(w.reply(second), (200, json!({"id": 2})));
    assert_eq!(w.call("GET", "/schemas/ids/1/subjects", Value::Null), (200, json!(["a"])));
    assert_eq!(w.call("GET", "/schemas/ids/2/subjects", Value::Null), (200, json!(["b"])));
}

#[test]
fn requests_waiting_longer_than_the_write_timeout_are_answered_50002() {
    let mut w = World::with(MemStore::new(), true);
    let id = w.send("GET", "/subjects", Value::Null);
    w.settle();
    w.advance(11_000);
    assert_eq!(w.reply(id).1["error_code"], 50002);
}

#[test]
fn writes_queued_behind_a_write_in_flight_go_in_one_produce_each_decided_after_the_one_before() {
    let mut w = World::new(MemStore::new());
    w.advance(1_000);
    let first = w.send("POST", "/subjects/s0/versions", json!({ "schema": SCHEMA_V1 }));
    w.hold_storage = true;
    w.settle();
    let before = w.appends;
    // Queued while the first is in flight: new schemas, a new version, a config change, then
    // a schema registered a moment earlier in the same queue (its answer depends on the queue:
    // it waits for it to be read back), and one more write after it.
    let mut queued = Vec::new();
    for i in 1..=5 {
        let schema = format!(r#"{{"type":"record","name":"R{i}","fields":[{{"name":"a","type":"int"}}]}}"#);
        queued.push(w.send("POST", &format!("/subjects/s{i}/versions"), json!({ "schema": schema })));
    }
    let v2 = w.send("POST", "/subjects/s0/versions", json!({ "schema": SCHEMA_V2 }));
    let config = w.send("PUT", "/config/s1", json!({"compatibility": "NONE"}));
    let again = w.send(
        "POST",
        "/subjects/s3/versions",
        json!({ "schema": r#"{"type":"record","name":"R3","fields":[{"name":"a","type":"int"}]}"# }),
    );
    let last = w.send("POST", "/subjects/s9/versions", json!({ "schema": SCHEMA_V1 }));
    w.settle();
    assert!(w.replies.is_empty(), "nothing is answered before it is stored");
    w.hold_storage = false;
    w.settle();
    w.advance(1_000);
    assert_eq!(w.reply(first), (200, json!({"id": 1})));
    for (i, id) in queued.into_iter().enumerate() {
        assert_eq!(w.reply(id), (200, json!({"id": i + 2})), "s{}", i + 1);
    }
    assert_eq!(w.reply(v2), (200, json!({"id": 7})));
    assert_eq!(w.reply(config), (200, json!({"compatibility": "NONE"})));
    assert_eq!(w.reply(again), (200, json!({"id": 4})), "the same schema keeps its id");
    assert_eq!(w.reply(last), (200, json!({"id": 1})), "s0's first schema, now under s9 too");
    // The first write, one group of seven, then the one after the request that waited.
    assert_eq!(w.appends - before, 3, "produces");

    // What a restart reads back is what was answered.
    let subjects = w.call("GET", "/schemas", Value::Null);
    let mut w = World::new(w.store);
    w.advance(1_000);
    assert_eq!(w.call("GET", "/schemas", Value::Null), subjects);
    assert_eq!(w.call("GET", "/config/s1", Value::Null), (200, json!({"compatibilityLevel": "NONE"})));
}
