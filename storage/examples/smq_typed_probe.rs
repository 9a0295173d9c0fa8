//! Probe of SeaweedMQ typed records (`schema_pb.RecordType` / `RecordValue`): what a topic's
//! records look like to a subscriber before and after `weed shell mq.topic.compact`.
//! Driven by scripts/probe-smq-typed.sh; findings in docs/notes/2026-12-07-seaweedmq-typed-records.md.
//!
//!   smq_typed_probe BROKER_GRPC_ADDR NAMESPACE publish   creates topics A, B, C, publishes, dumps
//!   smq_typed_probe BROKER_GRPC_ADDR NAMESPACE dump [LABEL [TOPIC...]]  subscribes from offset 0, dumps
//!   smq_typed_probe BROKER_GRPC_ADDR NAMESPACE append    publishes one more record to A and B
//!
//! (BROKER_GRPC_ADDR may also come from `SMQ_BROKER`, NAMESPACE from `SMQ_NAMESPACE`.)
//!
//! Topics: `typed_a` (a RecordType with a column of each scalar type, lists, a nested record and a
//! binary `kelp_envelope`), `opaque_b` (no RecordType; opaque bytes and one RecordValue) and
//! `evolve_c` (RecordType v1 with 2 columns, then re-configured with a superset v2 of 3 columns)
//! and `simple_d` (2 columns, every field and key present).
//! Every published record is deterministic, so the `dump` phase compares what it is delivered with
//! what was published, offset by offset and field by field.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

use kelp_storage::seaweedmq::pb::messaging_pb::{
    self, publish_message_request, seaweed_messaging_client::SeaweedMessagingClient, subscribe_message_request,
    subscribe_message_response,
};
use kelp_storage::seaweedmq::pb::schema_pb::{
    self, DateValue, DecimalValue, Field, ListType, ListValue, RecordType, RecordValue, ScalarType, TimeValue,
    TimestampValue, Type, Value, r#type, value,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

type Client = SeaweedMessagingClient<Channel>;
type BoxError = Box<dyn std::error::Error>;

/// One record as published.
struct Rec {
    case: &'static str,
    key: Bytes,
    value: Bytes,
}

// ---------------------------------------------------------------------------------------------
// Values and types

fn v(kind: value::Kind) -> Value {
    Value { kind: Some(kind) }
}
fn scalar(t: ScalarType) -> Type {
    Type { kind: Some(r#type::Kind::ScalarType(t as i32)) }
}
fn field(name: &str, index: i32, ty: Type, is_repeated: bool) -> Field {
    Field { name: name.into(), field_index: index, r#type: Some(ty), is_repeated, is_required: false }
}
fn record(fields: impl IntoIterator<Item = (&'static str, Value)>) -> RecordValue {
    RecordValue { fields: fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect() }
}
fn int64(x: i64) -> Value {
    v(value::Kind::Int64Value(x))
}
fn int32(x: i32) -> Value {
    v(value::Kind::Int32Value(x))
}
fn bytes_v(b: &[u8]) -> Value {
    v(value::Kind::BytesValue(Bytes::copy_from_slice(b)))
}
fn string_v(s: &str) -> Value {
    v(value::Kind::StringValue(s.into()))
}
fn list_i64(xs: &[i64]) -> Value {
    v(value::Kind::ListValue(ListValue { values: xs.iter().map(|&x| int64(x)).collect() }))
}

/// ~1 KiB of binary that is not UTF-8: 0x00, 0xFF, a lone continuation byte, an overlong
/// encoding, and every byte value, starting with 0x4B like kelp's envelope.
fn envelope(seed: u8) -> Vec<u8> {
    let mut b = vec![0x4B, 0x00, 0xFF, 0x80, 0xC0, 0xAF, 0xFE, seed];
    b.extend((0..=255u8).cycle().take(1016).map(|x| x.wrapping_add(seed)));
    b
}

/// Topic A's RecordType. Names sort in the order listed (the broker and Parquet sort columns by name).
fn record_type_a() -> RecordType {
    use ScalarType::*;
    let nested = RecordType {
        fields: vec![
            field("x", 0, scalar(Int64), false),
            field("y", 1, scalar(String), false),
            field("z", 2, scalar(Bytes), false),
        ],
    };
    let list =
        Type { kind: Some(r#type::Kind::ListType(Box::new(ListType { element_type: Some(Box::new(scalar(Int64))) }))) };
    let columns: Vec<(&str, Type, bool)> = vec![
        ("a0_case", scalar(String), false),
        ("a_bool", scalar(Bool), false),
        ("b_int32", scalar(Int32), false),
        ("c_int64", scalar(Int64), false),
        ("d_float", scalar(Float), false),
        ("e_double", scalar(Double), false),
        ("f_bytes", scalar(Bytes), false),
        ("g_string", scalar(String), false),
        ("h_timestamp", scalar(Timestamp), false),
        ("i_date", scalar(Date), false),
        ("j_decimal", scalar(Decimal), false),
        ("k_time", scalar(Time), false),
        ("kelp_envelope", scalar(Bytes), false),
        ("l_list_int64", list, false),
        ("m_repeated_int64", scalar(Int64), true),
        ("n_nested", Type { kind: Some(r#type::Kind::RecordType(nested)) }, false),
    ];
    RecordType { fields: columns.into_iter().enumerate().map(|(i, (n, t, rep))| field(n, i as i32, t, rep)).collect() }
}

/// Every column of topic A with the Value kind that matches its type.
fn native_a(case: &'static str, seed: u8) -> RecordValue {
    let mut decimal = 12345i64.to_be_bytes().to_vec(); // unscaled 12345, scale 2 = 123.45
    decimal.drain(..6);
    record([
        ("a0_case", string_v(case)),
        ("a_bool", v(value::Kind::BoolValue(true))),
        ("b_int32", int32(-123_456)),
        ("c_int64", int64(-9_000_000_000_123)),
        ("d_float", v(value::Kind::FloatValue(1.5))),
        ("e_double", v(value::Kind::DoubleValue(-2.25e100))),
        ("f_bytes", bytes_v(&[0x00, 0xFF, 0xC0, 0xAF, 0x80, 0x4B, 0x00])),
        ("g_string", string_v("héllo ✓")),
        (
            "h_timestamp",
            v(value::Kind::TimestampValue(TimestampValue { timestamp_micros: 1_765_000_000_123_456, is_utc: true })),
        ),
        ("i_date", v(value::Kind::DateValue(DateValue { days_since_epoch: 20_429 }))),
        (
            "j_decimal",
            v(value::Kind::DecimalValue(DecimalValue { value: Bytes::from(decimal), precision: 10, scale: 2 })),
        ),
        ("k_time", v(value::Kind::TimeValue(TimeValue { time_micros: 45_296_789_012 }))),
        ("kelp_envelope", bytes_v(&envelope(seed))),
        ("l_list_int64", list_i64(&[1, -2, 3])),
        ("m_repeated_int64", list_i64(&[10, 20])),
        (
            "n_nested",
            v(value::Kind::RecordValue(record([
                ("x", int64(7)),
                ("y", string_v("nested")),
                ("z", bytes_v(&[0x00, 0xFF, 0xFE])),
            ]))),
        ),
    ])
}

fn recs_a() -> Vec<Rec> {
    let mut out = Vec::new();
    let mut push = |case: &'static str, key: &[u8], rv: RecordValue| {
        out.push(Rec { case, key: Bytes::copy_from_slice(key), value: Bytes::from(rv.encode_to_vec()) })
    };
    // 0: every column native, plus a field that is not in the RecordType
    let mut r = native_a("native", 0);
    r.fields.insert("zz_extra".into(), string_v("not in the RecordType"));
    push("native", b"key-0\x00\xff", r);
    // 1: the plausible alternative kinds
    let mut r = native_a("alt1", 1);
    for (k, val) in [
        ("b_int32", int64(-123_456)),
        ("c_int64", int32(-123_456)),
        ("d_float", v(value::Kind::DoubleValue(1.5))),
        ("e_double", v(value::Kind::FloatValue(-2.25))),
        ("f_bytes", string_v("bytes as string")),
        ("g_string", bytes_v(b"string as bytes")),
        ("h_timestamp", int64(1_765_000_000_123_456)),
        ("i_date", int32(20_429)),
        ("j_decimal", bytes_v(&[0x30, 0x39])),
        ("k_time", int64(45_296_789_012)),
        ("l_list_int64", int64(5)),
        ("m_repeated_int64", int64(11)),
    ] {
        r.fields.insert(k.into(), val);
    }
    push("alt1", b"key-1", r);
    // 2: further alternatives
    let mut r = native_a("alt2", 2);
    for (k, val) in [
        ("a_bool", int32(1)),
        ("b_int32", string_v("42")),
        ("c_int64", string_v("42")),
        ("g_string", bytes_v(&[0xFF, 0x00, 0xC0, 0xAF])),
        ("h_timestamp", string_v("2025-12-06T05:46:40.123456Z")),
        ("i_date", int64(20_429)),
        ("j_decimal", string_v("123.45")),
        ("k_time", int32(45_296)),
        ("n_nested", bytes_v(b"\x0a\x03abc")),
    ] {
        r.fields.insert(k.into(), val);
    }
    push("alt2", b"key-2", r);
    // 3: a null in the middle of the (name-sorted) columns
    let mut r = native_a("null_g_string", 3);
    r.fields.remove("g_string");
    push("null_g_string", b"key-3", r);
    // 4: the nested record lacks its middle field
    let mut r = native_a("nested_null_y", 4);
    r.fields.insert(
        "n_nested".into(),
        v(value::Kind::RecordValue(record([("x", int64(8)), ("z", bytes_v(&[0x00, 0xFF]))]))),
    );
    push("nested_null_y", b"key-4", r);
    // 5: the first data column null, an empty list, and the nested record without its first field
    let mut r = native_a("null_a_bool_empty_list", 5);
    r.fields.remove("a_bool");
    r.fields.insert("l_list_int64".into(), list_i64(&[]));
    r.fields.insert(
        "n_nested".into(),
        v(value::Kind::RecordValue(record([("y", string_v("no x")), ("z", bytes_v(&[0x01]))]))),
    );
    push("null_a_bool_empty_list", b"key-5", r);
    // 6: almost everything null
    push(
        "mostly_null",
        b"key-6",
        record([("a0_case", string_v("mostly_null")), ("kelp_envelope", bytes_v(&envelope(6)))]),
    );
    // 7: complete again, after the null rows
    push("native_again", b"key-7", native_a("native_again", 7));
    // 8: complete, but with an empty key
    push("native_empty_key", b"", native_a("native_empty_key", 8));
    out
}

fn recs_b() -> Vec<Rec> {
    let rv = record([("a", int64(1)), ("b", string_v("x"))]);
    let b = |k: &[u8], v: Vec<u8>, case| Rec { case, key: Bytes::copy_from_slice(k), value: Bytes::from(v) };
    vec![
        b(b"k0", envelope(0), "envelope_1k"),
        b(b"", rv.encode_to_vec(), "record_value"),
        b(b"k2", b"plain text".to_vec(), "text"),
        b(b"", vec![0x4B, 0x01, 0x00, 0xFF], "envelope_short"),
        b(b"k4", vec![0x0A, 0x00], "parses_as_empty_map_entry"),
        b(b"k5", envelope(5), "envelope_1k_again"),
    ]
}

/// Topic D: two columns, every field present, every key non-empty: the plainest typed topic.
fn record_type_d() -> RecordType {
    let mut fields =
        vec![field("a_id", 0, scalar(ScalarType::Int64), false), field("b_blob", 1, scalar(ScalarType::Bytes), false)];
    // PROBE_OFFSET_COLUMN=1: the RecordType itself declares `_offset`, the column the broker's
    // Parquet reader expects and its writer leaves out.
    if std::env::var("PROBE_OFFSET_COLUMN").is_ok_and(|v| v == "1") {
        fields.push(field("_offset", 2, scalar(ScalarType::Int64), false));
    }
    RecordType { fields }
}

fn recs_d() -> Vec<Rec> {
    (0..3)
        .map(|i| {
            let r = record([("a_id", int64(100 + i)), ("b_blob", bytes_v(&envelope(i as u8)))]);
            Rec { case: "plain", key: Bytes::from(format!("d{i}")), value: r.encode_to_vec().into() }
        })
        .collect()
}

fn record_type_c(v2: bool) -> RecordType {
    let mut fields =
        vec![field("a_id", 0, scalar(ScalarType::Int64), false), field("b_name", 1, scalar(ScalarType::String), false)];
    if v2 {
        fields.push(field("c_blob", 2, scalar(ScalarType::Bytes), false));
    }
    RecordType { fields }
}

fn recs_c(v2: bool) -> Vec<Rec> {
    let range = if v2 { 3..6 } else { 0..3 };
    range
        .map(|i| {
            let mut r = record([("a_id", int64(i)), ("b_name", string_v(&format!("name-{i}")))]);
            if v2 {
                r.fields.insert("c_blob".into(), bytes_v(&[0x00, 0xFF, i as u8]));
            }
            Rec {
                case: if v2 { "v2" } else { "v1" },
                key: Bytes::from(format!("c{i}")),
                value: r.encode_to_vec().into(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Formatting

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn short_hex(b: &[u8]) -> String {
    if b.len() <= 40 {
        hex(b)
    } else {
        format!("{}..{} ({} B, fnv {:016x})", hex(&b[..16]), hex(&b[b.len() - 8..]), b.len(), fnv(b))
    }
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100000001b3))
}

fn fmt_value(val: &Value) -> String {
    use value::Kind::*;
    match &val.kind {
        None => "<no kind>".into(),
        Some(BoolValue(x)) => format!("bool({x})"),
        Some(Int32Value(x)) => format!("int32({x})"),
        Some(Int64Value(x)) => format!("int64({x})"),
        Some(FloatValue(x)) => format!("float({x})"),
        Some(DoubleValue(x)) => format!("double({x})"),
        Some(BytesValue(x)) => format!("bytes({})", short_hex(x)),
        Some(StringValue(x)) => format!("string({x:?})"),
        Some(TimestampValue(t)) => format!("timestamp({}, utc={})", t.timestamp_micros, t.is_utc),
        Some(DateValue(d)) => format!("date({})", d.days_since_epoch),
        Some(DecimalValue(d)) => format!("decimal({}, p={}, s={})", hex(&d.value), d.precision, d.scale),
        Some(TimeValue(t)) => format!("time({})", t.time_micros),
        Some(ListValue(l)) => format!("list[{}]", l.values.iter().map(fmt_value).collect::<Vec<_>>().join(", ")),
        Some(RecordValue(r)) => format!("record{{{}}}", fmt_record(r)),
    }
}

fn fmt_record(r: &RecordValue) -> String {
    let sorted: BTreeMap<_, _> = r.fields.iter().collect();
    sorted.iter().map(|(k, v)| format!("{k}: {}", fmt_value(v))).collect::<Vec<_>>().join(", ")
}

/// Decodes `b` as a RecordValue if it is one with at least one field.
fn as_record(b: &[u8]) -> Option<RecordValue> {
    RecordValue::decode(b).ok().filter(|r| !r.fields.is_empty())
}

fn fmt_type(t: &Option<Type>) -> String {
    match t.as_ref().and_then(|t| t.kind.as_ref()) {
        Some(r#type::Kind::ScalarType(s)) => {
            ScalarType::try_from(*s).map(|s| s.as_str_name().to_string()).unwrap_or_else(|_| s.to_string())
        }
        Some(r#type::Kind::ListType(l)) => format!("LIST<{}>", fmt_type(&l.element_type.as_deref().cloned())),
        Some(r#type::Kind::RecordType(r)) => format!("RECORD{{{}}}", fmt_record_type(r)),
        None => "<none>".into(),
    }
}

fn fmt_record_type(r: &RecordType) -> String {
    r.fields
        .iter()
        .map(|f| {
            format!(
                "{}#{}:{}{}{}",
                f.name,
                f.field_index,
                fmt_type(&f.r#type),
                if f.is_repeated { " repeated" } else { "" },
                if f.is_required { " required" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Broker calls

async fn connect(broker: &str) -> Result<Client, BoxError> {
    let ch = Endpoint::from_shared(format!("http://{broker}"))?
        .tcp_nodelay(true)
        .initial_connection_window_size(64 << 20)
        .initial_stream_window_size(32 << 20)
        .connect()
        .await?;
    Ok(SeaweedMessagingClient::new(ch))
}

fn topic(ns: &str, name: &str) -> schema_pb::Topic {
    schema_pb::Topic { namespace: ns.into(), name: name.into() }
}

async fn configure(client: &mut Client, t: &schema_pb::Topic, rt: Option<RecordType>) -> Result<(), BoxError> {
    let req = messaging_pb::ConfigureTopicRequest {
        topic: Some(t.clone()),
        partition_count: 1,
        message_record_type: rt,
        ..Default::default()
    };
    let resp = client.configure_topic(req).await?.into_inner();
    let parts: Vec<_> = resp.broker_partition_assignments.iter().filter_map(|a| a.partition).collect();
    println!(
        "configure {}: partitions {:?}; response record type: {}",
        t.name,
        parts.iter().map(|p| (p.range_start, p.range_stop, p.unix_time_ns)).collect::<Vec<_>>(),
        resp.message_record_type.as_ref().map(fmt_record_type).unwrap_or_else(|| "<none>".into())
    );
    Ok(())
}

async fn partition(client: &mut Client, t: &schema_pb::Topic) -> Result<schema_pb::Partition, BoxError> {
    let req = messaging_pb::LookupTopicBrokersRequest { topic: Some(t.clone()) };
    let resp = client.lookup_topic_brokers(req).await?.into_inner();
    let p = resp.broker_partition_assignments.first().and_then(|a| a.partition).ok_or("no partition")?;
    Ok(p)
}

async fn show_config(client: &mut Client, t: &schema_pb::Topic) -> Result<(), BoxError> {
    let req = messaging_pb::GetTopicConfigurationRequest { topic: Some(t.clone()) };
    let c = client.get_topic_configuration(req).await?.into_inner();
    let p = partition(client, t).await?;
    let range = client
        .get_partition_range_info(messaging_pb::GetPartitionRangeInfoRequest {
            topic: Some(t.clone()),
            partition: Some(p),
        })
        .await?
        .into_inner();
    println!(
        "config {}: partition_count {}, partition ({}, {}, gen {}), record type: {}; key_columns {:?}; schema_format {:?}",
        t.name,
        c.partition_count,
        p.range_start,
        p.range_stop,
        p.unix_time_ns,
        c.message_record_type.as_ref().map(fmt_record_type).unwrap_or_else(|| "<none>".into()),
        c.key_columns,
        c.schema_format
    );
    println!(
        "range {}: {:?}, record_count {}, error {:?}",
        t.name, range.offset_range, range.record_count, range.error
    );
    Ok(())
}

async fn publish(client: &mut Client, t: &schema_pb::Topic, recs: &[Rec], first_ts: i64) -> Result<(), BoxError> {
    let p = partition(client, t).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let init = publish_message_request::InitMessage {
        topic: Some(t.clone()),
        partition: Some(p),
        ack_interval: 1,
        publisher_name: "typed-probe".into(),
        ..Default::default()
    };
    tx.send(messaging_pb::PublishMessageRequest { message: Some(publish_message_request::Message::Init(init)) })
        .await?;
    let mut acks = client.publish_message(ReceiverStream::new(rx)).await?.into_inner();
    for (i, r) in recs.iter().enumerate() {
        let data = messaging_pb::DataMessage {
            key: r.key.clone(),
            value: r.value.clone(),
            ts_ns: first_ts + i as i64,
            ctrl: None,
        };
        tx.send(messaging_pb::PublishMessageRequest { message: Some(publish_message_request::Message::Data(data)) })
            .await?;
    }
    let mut got = 0;
    let mut hello = false; // the broker greets a new stream with an empty response
    while got < recs.len() {
        let a = tokio::time::timeout(Duration::from_secs(10), acks.message()).await?.map_err(|e| e.to_string())?;
        let Some(a) = a else { return Err("publish stream ended".into()) };
        if !a.error.is_empty() {
            return Err(format!("publish error: {}", a.error).into());
        }
        if !hello {
            hello = true;
            continue;
        }
        println!("  published {} #{got} ({}) -> offset {}", t.name, recs[got].case, a.assigned_offset);
        got += 1;
    }
    drop(tx);
    Ok(())
}

/// Subscribes from offset 0 until `want` messages arrived (re-subscribing where a read stalls).
async fn subscribe_all(
    client: &mut Client,
    t: &schema_pb::Topic,
    want: usize,
) -> Result<Vec<messaging_pb::DataMessage>, BoxError> {
    let p = partition(client, t).await?;
    let mut out = Vec::new();
    for attempt in 0..4 {
        let (stx, srx) = tokio::sync::mpsc::channel(4);
        let init = subscribe_message_request::InitMessage {
            consumer_group: format!("probe-{}", std::process::id()),
            consumer_id: format!("probe-{}-{attempt}", std::process::id()),
            client_id: "typed-probe".into(),
            topic: Some(t.clone()),
            partition_offset: Some(schema_pb::PartitionOffset {
                partition: Some(p),
                start_ts_ns: 0,
                start_offset: out.len() as i64,
            }),
            offset_type: schema_pb::OffsetType::ExactOffset as i32,
            sliding_window_size: 1024,
            ..Default::default()
        };
        stx.send(messaging_pb::SubscribeMessageRequest {
            message: Some(subscribe_message_request::Message::Init(init)),
        })
        .await?;
        let call = client.subscribe_message(ReceiverStream::new(srx));
        let mut msgs = match tokio::time::timeout(Duration::from_secs(3), call).await {
            Ok(r) => r?.into_inner(),
            Err(_) => {
                println!("  (subscription {attempt} from offset {} got no response in 3 s)", out.len());
                break;
            }
        };
        while out.len() < want {
            let Ok(m) = tokio::time::timeout(Duration::from_secs(3), msgs.message()).await else {
                println!("  (subscription {attempt} stalled after {} messages)", out.len());
                break;
            };
            match m {
                Err(e) => {
                    println!("  (subscription {attempt} error after {} messages: {e})", out.len());
                    break;
                }
                Ok(None) => {
                    println!("  (subscription {attempt} ended after {} messages)", out.len());
                    break;
                }
                Ok(Some(m)) => match m.message {
                    Some(subscribe_message_response::Message::Data(d)) => out.push(d),
                    Some(subscribe_message_response::Message::Ctrl(c)) => {
                        println!("  (ctrl: {c:?})");
                    }
                    None => {}
                },
            }
        }
        drop(stx);
        if out.len() >= want {
            break;
        }
    }
    Ok(out)
}

/// Prints every delivered message next to the published one.
async fn dump(client: &mut Client, t: &schema_pb::Topic, recs: &[Rec], label: &str) -> Result<(), BoxError> {
    println!("== dump {label} {} (published {})", t.name, recs.len());
    show_config(client, t).await?;
    let p = partition(client, t).await?;
    let range = client
        .get_partition_range_info(messaging_pb::GetPartitionRangeInfoRequest {
            topic: Some(t.clone()),
            partition: Some(p),
        })
        .await?
        .into_inner();
    let hwm = range.offset_range.map(|r| r.high_water_mark).unwrap_or(0);
    let got = subscribe_all(client, t, recs.len().max(hwm as usize)).await?;
    println!("  delivered {} messages", got.len());
    for (i, d) in got.iter().enumerate() {
        let publ = recs.get(i);
        println!(
            "-- {label} {} #{i}: case {} ts_ns {} key {} (key identical: {}) value {} B (value identical: {})",
            t.name,
            publ.map(|r| r.case).unwrap_or("?"),
            d.ts_ns,
            short_hex(&d.key),
            publ.map(|r| r.key == d.key).unwrap_or(false),
            d.value.len(),
            publ.map(|r| r.value == d.value).unwrap_or(false),
        );
        let delivered = as_record(&d.value);
        let published = publ.and_then(|r| as_record(&r.value));
        match (&published, &delivered) {
            (_, None) => println!("   value (not a RecordValue): {}", short_hex(&d.value)),
            (None, Some(dv)) => {
                println!("   published {}", publ.map(|r| short_hex(&r.value)).unwrap_or_default());
                println!("   delivered RecordValue: {}", fmt_record(dv));
            }
            (Some(pv), Some(dv)) => {
                let names: BTreeSet<&String> = pv.fields.keys().chain(dv.fields.keys()).collect();
                for n in names {
                    let (a, b) = (pv.fields.get(n), dv.fields.get(n));
                    let verdict = match (a, b) {
                        (Some(a), Some(b)) if a == b => "same",
                        (Some(_), Some(_)) => "CHANGED",
                        (Some(_), None) => "GONE",
                        (None, Some(_)) => "ADDED",
                        (None, None) => unreachable!(),
                    };
                    println!(
                        "   {n:18} {verdict:7} published {:40} delivered {}",
                        a.map(fmt_value).unwrap_or_else(|| "-".into()),
                        b.map(fmt_value).unwrap_or_else(|| "-".into())
                    );
                }
            }
        }
        if let (Some(dv), Some(r)) = (&delivered, publ)
            && let Some(Value { kind: Some(value::Kind::BytesValue(b)) }) = dv.fields.get("kelp_envelope")
        {
            println!("   kelp_envelope byte-exact: {}", envelope(recs_index_seed(r.case)) == b.as_ref());
        }
    }
    Ok(())
}

/// The envelope seed of a topic-A case (its index in `recs_a`).
fn recs_index_seed(case: &str) -> u8 {
    recs_a().iter().position(|r| r.case == case).unwrap_or(0) as u8
}

fn all_recs_c() -> Vec<Rec> {
    recs_c(false).into_iter().chain(recs_c(true)).collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let broker = args.get(1).cloned().or_else(|| std::env::var("SMQ_BROKER").ok()).ok_or("broker address")?;
    let ns = args.get(2).cloned().or_else(|| std::env::var("SMQ_NAMESPACE").ok()).unwrap_or_else(|| "probe".into());
    let phase = args.get(3).cloned().unwrap_or_else(|| "publish".into());
    let mut client = connect(&broker).await?;
    let (a, b, c) = (topic(&ns, "typed_a"), topic(&ns, "opaque_b"), topic(&ns, "evolve_c"));
    let d = topic(&ns, "simple_d");
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as i64;
    match phase.as_str() {
        "publish" => {
            println!("record type A: {}", fmt_record_type(&record_type_a()));
            configure(&mut client, &a, Some(record_type_a())).await?;
            configure(&mut client, &b, None).await?;
            configure(&mut client, &c, Some(record_type_c(false))).await?;
            configure(&mut client, &d, Some(record_type_d())).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            publish(&mut client, &a, &recs_a(), now_ns).await?;
            publish(&mut client, &b, &recs_b(), now_ns).await?;
            publish(&mut client, &c, &recs_c(false), now_ns).await?;
            publish(&mut client, &d, &recs_d(), now_ns).await?;
            show_config(&mut client, &c).await?;
            // v2: a superset RecordType, same partition count
            configure(&mut client, &c, Some(record_type_c(true))).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            show_config(&mut client, &c).await?;
            // weed 4.48: the first publish after the re-configure fails ("log buffer is stopping")
            for attempt in 1.. {
                match publish(&mut client, &c, &recs_c(true), now_ns + 1000).await {
                    Ok(()) => break,
                    Err(e) if attempt < 10 => {
                        println!("  publish v2 attempt {attempt} failed: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
            dump(&mut client, &a, &recs_a(), "before").await?;
            dump(&mut client, &b, &recs_b(), "before").await?;
            dump(&mut client, &c, &all_recs_c(), "before").await?;
            dump(&mut client, &d, &recs_d(), "before").await?;
        }
        "dump" => {
            let label = args.get(4).cloned().unwrap_or_else(|| "after".into());
            let only: Vec<&str> = args.iter().skip(5).map(String::as_str).collect();
            let want = |t: &schema_pb::Topic| only.is_empty() || only.contains(&t.name.as_str());
            if want(&a) {
                dump(&mut client, &a, &recs_a(), &label).await?;
            }
            if want(&b) {
                dump(&mut client, &b, &recs_b(), &label).await?;
            }
            if want(&c) {
                dump(&mut client, &c, &all_recs_c(), &label).await?;
            }
            if want(&d) {
                dump(&mut client, &d, &recs_d(), &label).await?;
            }
        }
        "append" => {
            // one more record on A and B after compaction: which offset does the broker assign?
            publish(&mut client, &a, &recs_a()[..1], now_ns).await?;
            publish(&mut client, &b, &recs_b()[..1], now_ns).await?;
        }
        other => return Err(format!("unknown phase {other:?} (publish | dump | append)").into()),
    }
    Ok(())
}
