//! Counters the broker keeps about its own work, and their Prometheus text rendering.
//!
//! Only the core sees requests, their APIs, their error codes and the time from a request's
//! arrival to its response, so the core counts them. Counting is cheap and fixed-size: plain
//! integer adds into arrays allocated once with the broker, no lock, no allocation per request
//! (error codes go into a small map whose entries are created once per API and code). Drivers
//! read the counters through [`crate::Broker::write_metrics`], on the task that owns the broker.
//!
//! Gauges that can be derived from broker state (open connections, partitions, consumer lag)
//! are computed when rendered, not maintained on the request path.

use core::fmt::Write as _;

use hashbrown::HashMap;

use crate::codec::generated::ResponseBody;
use crate::codec::{ApiKey, ErrorCode};
use crate::time::Duration;

/// API keys counted (Kafka's keys are all below this); requests with larger keys are never
/// decoded, so never counted.
const MAX_API: usize = 128;

/// Latency buckets: bucket `i` counts responses that took less than 2^i µs (1 µs .. ~33.6 s);
/// the last slot counts what took longer.
const LATENCY_BUCKETS: usize = 26;

/// One API's counters.
#[derive(Clone, Copy, Debug)]
struct ApiStats {
    /// Requests answered (including acks=0 produces, answered with nothing).
    responses: u64,
    /// Sum of receive-to-response times, in nanoseconds.
    latency_sum_ns: u64,
    /// Receive-to-response times, by bucket (not cumulative); the extra slot is overflow.
    latency: [u64; LATENCY_BUCKETS + 1],
}

const ZERO_API: ApiStats = ApiStats { responses: 0, latency_sum_ns: 0, latency: [0; LATENCY_BUCKETS + 1] };

/// The broker's counters. See the module docs.
#[derive(Debug)]
pub struct Stats {
    apis: Box<[ApiStats; MAX_API]>,
    /// Requests read, by API (a request is counted when its header is decoded).
    requests: Box<[u64; MAX_API]>,
    /// Error codes other than NONE found in responses, by (API, code): top-level and
    /// per-topic/partition/group codes, as Kafka's `ErrorsPerSec` counts them.
    errors: HashMap<(i16, i16), u64>,
    /// Bytes received from clients.
    pub(crate) bytes_in: u64,
    /// Response bytes handed to drivers for sending.
    pub(crate) bytes_out: u64,
    /// Connections accepted since start.
    pub(crate) connections_accepted: u64,
    /// Connections the broker closed (framing errors, limits).
    pub(crate) connections_closed_by_broker: u64,
    /// SASL authentications that succeeded.
    pub(crate) sasl_succeeded: u64,
    /// SASL authentications that failed (the connection was closed).
    pub(crate) sasl_failed: u64,
    /// What the log cleaner's passes did, summed.
    cleaner: CleanerTotals,
}

/// The log cleaner's counters: sums over the passes the store reported.
#[derive(Clone, Copy, Debug, Default)]
struct CleanerTotals {
    /// Passes that rewrote something.
    passes: u64,
    /// Bytes of log the passes rewrote.
    bytes_read: u64,
    /// Bytes written in their place.
    bytes_written: u64,
    /// Records removed.
    records_removed: u64,
    /// Time the passes took, in microseconds as the store measured it.
    micros: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            apis: Box::new([ZERO_API; MAX_API]),
            requests: Box::new([0; MAX_API]),
            errors: HashMap::new(),
            bytes_in: 0,
            bytes_out: 0,
            connections_accepted: 0,
            connections_closed_by_broker: 0,
            sasl_succeeded: 0,
            sasl_failed: 0,
            cleaner: CleanerTotals::default(),
        }
    }
}

fn api_index(api: ApiKey) -> Option<usize> {
    usize::try_from(api.0).ok().filter(|&i| i < MAX_API)
}

/// The bucket of a latency: the number of bits of its microseconds, capped at the overflow slot.
fn bucket(elapsed: Duration) -> usize {
    let us = elapsed.0 / 1000;
    ((u64::BITS - us.leading_zeros()) as usize).min(LATENCY_BUCKETS)
}

impl Stats {
    /// A request of `api` was read.
    pub(crate) fn request(&mut self, api: ApiKey) {
        if let Some(i) = api_index(api) {
            self.requests[i] += 1;
        }
    }

    /// A request of `api` was answered `elapsed` after it arrived.
    pub(crate) fn response(&mut self, api: ApiKey, elapsed: Duration) {
        if let Some(i) = api_index(api) {
            let s = &mut self.apis[i];
            s.responses += 1;
            s.latency_sum_ns = s.latency_sum_ns.saturating_add(elapsed.0);
            s.latency[bucket(elapsed)] += 1;
        }
    }

    /// A log cleaner pass reported `r` (passes that found nothing to clean count their time
    /// only).
    pub(crate) fn cleaned(&mut self, r: &crate::io::CleanReport) {
        let c = &mut self.cleaner;
        c.passes += u64::from(r.cleaned);
        c.bytes_read = c.bytes_read.saturating_add(r.bytes_read);
        c.bytes_written = c.bytes_written.saturating_add(r.bytes_written);
        c.records_removed = c.records_removed.saturating_add(r.records_removed);
        c.micros = c.micros.saturating_add(r.micros);
    }

    /// Counts the error codes in a response body.
    pub(crate) fn errors_in(&mut self, api: ApiKey, body: &ResponseBody) {
        let mut count = |code: i16| {
            if code != 0 {
                *self.errors.entry((api.0, code)).or_insert(0) += 1;
            }
        };
        visit_error_codes(body, &mut count);
    }

    /// The error codes counted so far, as (API, code, count).
    pub fn errors(&self) -> impl Iterator<Item = (ApiKey, ErrorCode, u64)> + '_ {
        self.errors.iter().map(|(&(a, c), &n)| (ApiKey(a), ErrorCode(c), n))
    }

    /// Requests read for `api`.
    #[must_use]
    pub fn requests(&self, api: ApiKey) -> u64 {
        api_index(api).map_or(0, |i| self.requests[i])
    }

    /// Responses given for `api`.
    #[must_use]
    pub fn responses(&self, api: ApiKey) -> u64 {
        api_index(api).map_or(0, |i| self.apis[i].responses)
    }

    /// Bytes received from clients.
    #[must_use]
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// Response bytes handed out for sending.
    #[must_use]
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    /// Writes the per-API and traffic families in Prometheus text format.
    pub(crate) fn write_prometheus(&self, out: &mut String) {
        family(out, "kelp_requests_total", "counter", "Requests read, by API.");
        for (i, &n) in self.requests.iter().enumerate() {
            if n > 0 {
                let _ = writeln!(out, "kelp_requests_total{{api=\"{}\"}} {n}", api_label(i));
            }
        }
        family(
            out,
            "kelp_request_errors_total",
            "counter",
            "Error codes other than NONE in responses, by API and code (top-level and per topic, partition or group).",
        );
        let mut errors: Vec<_> = self.errors.iter().collect();
        errors.sort_unstable();
        for (&(api, code), &n) in errors {
            let name = ErrorCode(code).name().unwrap_or("UNKNOWN_SERVER_ERROR");
            let api = usize::try_from(api).map_or_else(|_| api.to_string(), api_label);
            let _ = writeln!(out, "kelp_request_errors_total{{api=\"{api}\",code=\"{code}\",error=\"{name}\"}} {n}");
        }
        family(
            out,
            "kelp_request_latency_seconds",
            "histogram",
            "Time from a request's arrival to its response being queued for sending, by API.",
        );
        for (i, s) in self.apis.iter().enumerate().filter(|(_, s)| s.responses > 0) {
            let api = api_label(i);
            let mut cumulative = 0u64;
            for (b, &n) in s.latency[..LATENCY_BUCKETS].iter().enumerate() {
                cumulative += n;
                let le = (1u64 << b) as f64 / 1e6;
                let _ = writeln!(out, "kelp_request_latency_seconds_bucket{{api=\"{api}\",le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(out, "kelp_request_latency_seconds_bucket{{api=\"{api}\",le=\"+Inf\"}} {}", s.responses);
            let _ =
                writeln!(out, "kelp_request_latency_seconds_sum{{api=\"{api}\"}} {}", s.latency_sum_ns as f64 / 1e9);
            let _ = writeln!(out, "kelp_request_latency_seconds_count{{api=\"{api}\"}} {}", s.responses);
        }
        family(out, "kelp_received_bytes_total", "counter", "Bytes received from Kafka clients.");
        let _ = writeln!(out, "kelp_received_bytes_total {}", self.bytes_in);
        family(out, "kelp_sent_bytes_total", "counter", "Response bytes sent to Kafka clients.");
        let _ = writeln!(out, "kelp_sent_bytes_total {}", self.bytes_out);
        family(out, "kelp_connections_accepted_total", "counter", "Client connections accepted.");
        let _ = writeln!(out, "kelp_connections_accepted_total {}", self.connections_accepted);
        family(
            out,
            "kelp_connections_closed_by_broker_total",
            "counter",
            "Connections kelp closed (bad framing, limits).",
        );
        let _ = writeln!(out, "kelp_connections_closed_by_broker_total {}", self.connections_closed_by_broker);
        family(out, "kelp_sasl_authentications_total", "counter", "SASL authentications, by result.");
        let _ = writeln!(out, "kelp_sasl_authentications_total{{result=\"succeeded\"}} {}", self.sasl_succeeded);
        let _ = writeln!(out, "kelp_sasl_authentications_total{{result=\"failed\"}} {}", self.sasl_failed);
        self.cleaner.write_prometheus(out);
    }
}

impl CleanerTotals {
    fn write_prometheus(&self, out: &mut String) {
        let counters = [
            ("kelp_cleaner_passes_total", "Log cleaner passes that rewrote part of a log.", self.passes),
            ("kelp_cleaner_bytes_read_total", "Bytes of log the cleaner rewrote.", self.bytes_read),
            ("kelp_cleaner_bytes_written_total", "Bytes the cleaner wrote in their place.", self.bytes_written),
            ("kelp_cleaner_records_removed_total", "Records the cleaner removed.", self.records_removed),
        ];
        for (name, help, n) in counters {
            family(out, name, "counter", help);
            let _ = writeln!(out, "{name} {n}");
        }
        family(out, "kelp_cleaner_run_seconds_total", "counter", "Time the log cleaner's passes took.");
        let _ = writeln!(out, "kelp_cleaner_run_seconds_total {}", self.micros as f64 / 1e6);
    }
}

/// Writes the gauges read from the broker's state: connections, topics and partitions, each
/// partition's offsets, and each group's committed offsets and lag.
pub(crate) fn write_state(b: &crate::Broker, out: &mut String) {
    family(out, "kelp_ready", "gauge", "1 once the store has recovered and requests are served.");
    let _ = writeln!(out, "kelp_ready {}", u8::from(b.is_ready()));
    family(out, "kelp_open_connections", "gauge", "Client connections open.");
    let _ = writeln!(out, "kelp_open_connections {}", b.conns.len());
    let visible = || b.st.topics.visible();
    family(out, "kelp_topics", "gauge", "Topics.");
    let _ = writeln!(out, "kelp_topics {}", visible().count());
    family(out, "kelp_partitions", "gauge", "Partitions, over all topics.");
    let _ = writeln!(out, "kelp_partitions {}", visible().map(|t| t.partitions.len()).sum::<usize>());
    let mut topics: Vec<_> = visible().collect();
    topics.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    family(
        out,
        "kelp_partition_high_watermark",
        "gauge",
        "The offset after the last durable record: what consumers read up to and acks=-1 confirms.",
    );
    for t in &topics {
        let name = escape(&t.name);
        for (i, p) in t.partitions.iter().enumerate() {
            let _ = writeln!(out, "kelp_partition_high_watermark{{topic=\"{name}\",partition=\"{i}\"}} {}", p.hwm());
        }
    }
    family(
        out,
        "kelp_partition_stored_offset",
        "gauge",
        "The offset after the last record the store holds; above the high watermark while records wait to become durable.",
    );
    for t in &topics {
        let name = escape(&t.name);
        for (i, p) in t.partitions.iter().enumerate() {
            let _ = writeln!(out, "kelp_partition_stored_offset{{topic=\"{name}\",partition=\"{i}\"}} {}", p.stored());
        }
    }
    let fenced = || topics.iter().flat_map(|t| t.partitions.iter().enumerate().map(move |(i, p)| (t, i, p)));
    family(
        out,
        "kelp_partitions_fenced",
        "gauge",
        "Partitions refusing appends because the store will not let them go on where they stand (see the log).",
    );
    let _ = writeln!(out, "kelp_partitions_fenced {}", fenced().filter(|(_, _, p)| p.fenced().is_some()).count());
    family(out, "kelp_partition_fenced", "gauge", "1 for each fenced partition.");
    for (t, i, _) in fenced().filter(|(_, _, p)| p.fenced().is_some()) {
        let _ = writeln!(out, "kelp_partition_fenced{{topic=\"{}\",partition=\"{i}\"}} 1", escape(&t.name));
    }
    family(out, "kelp_partition_log_start_offset", "gauge", "The first offset still stored.");
    for t in &topics {
        let name = escape(&t.name);
        for (i, p) in t.partitions.iter().enumerate() {
            let _ = writeln!(
                out,
                "kelp_partition_log_start_offset{{topic=\"{name}\",partition=\"{i}\"}} {}",
                p.log_start()
            );
        }
    }
    family(
        out,
        "kelp_cleaner_dirty_ratio",
        "gauge",
        "The dirty share of a compacted partition's cleanable log, as the cleaner last found it.",
    );
    for t in topics.iter().filter(|t| t.settings.cleanup_compact) {
        let name = escape(&t.name);
        for (i, p) in t.partitions.iter().enumerate() {
            if let Some(r) = b.st.cleaning.dirty_ratio(p.key) {
                let _ = writeln!(out, "kelp_cleaner_dirty_ratio{{topic=\"{name}\",partition=\"{i}\"}} {r}");
            }
        }
    }
    let mut committed: Vec<_> = b.st.groups.offsets.iter().collect();
    committed.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    family(out, "kelp_consumer_group_committed_offset", "gauge", "A group's committed offset of a partition.");
    for (g, (t, p), c) in &committed {
        let (g, t) = (escape(g), escape(t));
        let _ = writeln!(
            out,
            "kelp_consumer_group_committed_offset{{group=\"{g}\",topic=\"{t}\",partition=\"{p}\"}} {}",
            c.offset
        );
    }
    family(
        out,
        "kelp_consumer_group_lag",
        "gauge",
        "Last stable offset (the high watermark unless a transaction is open) minus the group's committed offset (0 when the commit is ahead), for partitions that exist.",
    );
    for (g, (t, p), c) in &committed {
        let Some(log) = b.st.topics.by_name(t).and_then(|topic| topic.partitions.get(usize::try_from(*p).ok()?)) else {
            continue;
        };
        // Measured to what a read_committed consumer can reach; without open transactions
        // that is the high watermark.
        let lag = (log.lso() - c.offset).max(0);
        let (g, t) = (escape(g), escape(t));
        let _ = writeln!(out, "kelp_consumer_group_lag{{group=\"{g}\",topic=\"{t}\",partition=\"{p}\"}} {lag}");
    }
}

/// Writes a family's HELP and TYPE lines.
pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn api_label(i: usize) -> String {
    let key = ApiKey(i16::try_from(i).unwrap_or(i16::MAX));
    key.name().map_or_else(|| i.to_string(), str::to_string)
}

/// Escapes a label value (topic and group names may hold `"` or `\`).
pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Calls `f` with every error code in `body`: the top-level one and those of each topic,
/// partition, group or resource. APIs kelp does not serve report nothing.
fn visit_error_codes(body: &ResponseBody, f: &mut impl FnMut(i16)) {
    use ResponseBody as R;
    match body {
        R::Produce(r) => r.responses.iter().flat_map(|t| &t.partition_responses).for_each(|p| f(p.error_code)),
        R::Fetch(r) => {
            f(r.error_code);
            r.responses.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        R::ListOffsets(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code)),
        R::Metadata(r) => {
            f(r.error_code);
            for t in &r.topics {
                f(t.error_code);
                t.partitions.iter().for_each(|p| f(p.error_code));
            }
        }
        R::OffsetCommit(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code)),
        R::OffsetFetch(r) => {
            f(r.error_code);
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
            for g in &r.groups {
                f(g.error_code);
                g.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
            }
        }
        R::FindCoordinator(r) => {
            f(r.error_code);
            r.coordinators.iter().for_each(|c| f(c.error_code));
        }
        R::JoinGroup(r) => f(r.error_code),
        R::Heartbeat(r) => f(r.error_code),
        R::LeaveGroup(r) => {
            f(r.error_code);
            r.members.iter().for_each(|m| f(m.error_code));
        }
        R::SyncGroup(r) => f(r.error_code),
        R::DescribeGroups(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        R::ListGroups(r) => f(r.error_code),
        R::DeleteGroups(r) => r.results.iter().for_each(|g| f(g.error_code)),
        R::OffsetDelete(r) => {
            f(r.error_code);
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        R::ApiVersions(r) => f(r.error_code),
        R::CreateTopics(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        R::DeleteTopics(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        R::CreatePartitions(r) => r.results.iter().for_each(|t| f(t.error_code)),
        R::InitProducerId(r) => f(r.error_code),
        R::DescribeConfigs(r) => r.results.iter().for_each(|t| f(t.error_code)),
        R::AlterConfigs(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        R::IncrementalAlterConfigs(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        R::DeleteRecords(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code)),
        R::OffsetForLeaderEpoch(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code)),
        R::DescribeProducers(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code)),
        R::DescribeCluster(r) => f(r.error_code),
        R::ConsumerGroupHeartbeat(r) => f(r.error_code),
        R::ConsumerGroupDescribe(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        R::DescribeTopicPartitions(r) => {
            for t in &r.topics {
                f(t.error_code);
                t.partitions.iter().for_each(|p| f(p.error_code));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_powers_of_two_microseconds() {
        assert_eq!(bucket(Duration(0)), 0);
        assert_eq!(bucket(Duration(999)), 0);
        assert_eq!(bucket(Duration(1_000)), 1);
        assert_eq!(bucket(Duration(1_999)), 1);
        assert_eq!(bucket(Duration(2_000)), 2);
        assert_eq!(bucket(Duration(1_000_000)), 10);
        assert_eq!(bucket(Duration(u64::MAX)), LATENCY_BUCKETS);
    }

    #[test]
    fn histogram_is_cumulative_and_counts_match() {
        let mut s = Stats::default();
        s.request(ApiKey::PRODUCE);
        s.response(ApiKey::PRODUCE, Duration(500));
        s.request(ApiKey::PRODUCE);
        s.response(ApiKey::PRODUCE, Duration(3_000_000));
        let mut out = String::new();
        s.write_prometheus(&mut out);
        assert!(out.contains("kelp_requests_total{api=\"Produce\"} 2"), "{out}");
        assert!(out.contains("kelp_request_latency_seconds_bucket{api=\"Produce\",le=\"0.000001\"} 1"), "{out}");
        assert!(out.contains("kelp_request_latency_seconds_bucket{api=\"Produce\",le=\"0.004096\"} 2"), "{out}");
        assert!(out.contains("kelp_request_latency_seconds_count{api=\"Produce\"} 2"), "{out}");
    }

    #[test]
    fn cleaner_counters_sum_the_passes_reported() {
        let mut s = Stats::default();
        let pass = crate::io::CleanReport {
            dirty_ratio: 0.6,
            cleaned: true,
            bytes_read: 1000,
            bytes_written: 400,
            records_removed: 12,
            micros: 1_500_000,
        };
        s.cleaned(&pass);
        s.cleaned(&crate::io::CleanReport { dirty_ratio: 0.1, micros: 500_000, ..Default::default() });
        let mut out = String::new();
        s.write_prometheus(&mut out);
        for line in [
            "kelp_cleaner_passes_total 1",
            "kelp_cleaner_bytes_read_total 1000",
            "kelp_cleaner_bytes_written_total 400",
            "kelp_cleaner_records_removed_total 12",
            "kelp_cleaner_run_seconds_total 2",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
        }
    }
}
