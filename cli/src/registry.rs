//! The schema registry inside `kelp serve`: Confluent's REST API on `--schema-registry-listen`.
//!
//! It runs on a thread of its own with a small tokio runtime, under either broker runtime: an
//! HTTP server (`kelp-registry-http`) hands each request to one task, which owns the registry
//! node (`kelp_registry::node`) and talks to the broker through an in-process Kafka connection
//! (`Control::connect_local`). The node keeps the registry's state in the `_schemas` topic; if
//! the connection closes (it should not while kelp runs) the task opens another and the node
//! goes on from where it was. When the broker stops, so does the registry.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kelp_driver::Control;
use kelp_registry::catalog::Catalog;
use kelp_registry::node::{Node, NodeConfig, NodeOutput};
use kelp_registry::{Registry, Response};
use kelp_registry_http::{Handler, Job, Limits};
use tokio::sync::{mpsc, oneshot};

/// HTTP requests waiting for the registry task, at most; more wait in their connections.
const JOBS: usize = 1024;

/// Serves the registry on `listener` from a new thread, once the broker loop runs. The
/// receiver hears when the thread has finished (after the broker stopped, and the requests in
/// flight were answered).
pub fn spawn(
    listener: std::net::TcpListener,
    control: Control,
    cluster_id: String,
    max_body: usize,
    catalog: Arc<Catalog>,
) -> std::io::Result<Receiver<()>> {
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("kelp-registry".into()).spawn(move || {
        let _done = Done(done_tx);
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "schema registry: cannot start its runtime");
                return;
            }
        };
        if let Err(e) = rt.block_on(run(listener, control, cluster_id, max_body, catalog)) {
            tracing::error!(error = %e, "schema registry stopped");
        }
    })?;
    Ok(done)
}

/// Tells the waiting thread, however the registry thread ends.
struct Done(std::sync::mpsc::Sender<()>);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

async fn run(
    listener: std::net::TcpListener,
    control: Control,
    cluster_id: String,
    max_body: usize,
    catalog: Arc<Catalog>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (jobs_tx, jobs) = mpsc::channel::<Job>(JOBS);
    let (stopped_tx, stopped_rx) = oneshot::channel::<()>();
    let limits = Limits { max_body, ..Limits::default() };
    let http = tokio::spawn(kelp_registry_http::serve(listener, Handler::channel(jobs_tx), limits, async move {
        let _ = stopped_rx.await;
    }));
    let clock = Clock::start();
    let node = Node::new(Registry::new(cluster_id), NodeConfig::default(), clock.now_ms()).with_catalog(catalog);
    drive(node, &control, jobs, &clock).await;
    // The broker has stopped: no more requests are answered.
    let _ = stopped_tx.send(());
    http.await.map_err(std::io::Error::other)?
}

/// Runs the node until the broker stops: HTTP requests in, the broker's bytes in and out,
/// timers.
async fn drive(mut node: Node, control: &Control, mut jobs: mpsc::Receiver<Job>, clock: &Clock) {
    let now_ms = || clock.now_ms();
    let mut replies: HashMap<u64, oneshot::Sender<Response>> = HashMap::new();
    let mut next_id = 0u64;
    let mut first = true;
    // One timer for the node's next tick, moved only when that time changes: a timer made
    // afresh on every turn of the loop cost a timer-wheel insert and removal per HTTP request.
    let tick = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(tick);
    let mut armed: Option<u64> = None;
    while let Some(conn) = control.connect_local() {
        if !first {
            node.handle_reconnected(now_ms());
        }
        first = false;
        let (mut writer, mut reader) = conn.split();
        'conn: loop {
            while let Some(out) = node.poll_output() {
                match out {
                    NodeOutput::Kafka(bytes) => {
                        if writer.send(bytes).await.is_err() {
                            break 'conn;
                        }
                    }
                    NodeOutput::Reply { id, response } => {
                        if let Some(tx) = replies.remove(&id) {
                            // The client may have gone.
                            let _ = tx.send(response);
                        }
                    }
                }
            }
            let due = node.poll_timeout();
            if due != armed {
                if let Some(at) = due {
                    let wait = Duration::from_millis(at.saturating_sub(now_ms()));
                    tick.as_mut().reset(tokio::time::Instant::now() + wait);
                }
                armed = due;
            }
            tokio::select! {
                bytes = reader.recv() => match bytes {
                    Some(bytes) => {
                        if let Err(e) = node.handle_kafka(now_ms(), &bytes) {
                            tracing::error!(error = e, "schema registry: unreadable answer from the broker; reconnecting");
                            break 'conn;
                        }
                    }
                    None => break 'conn,
                },
                job = jobs.recv() => match job {
                    Some(job) => {
                        // Every request already queued, before the replies go out.
                        let now = now_ms();
                        let mut job = Some(job);
                        while let Some((req, tx)) = job {
                            next_id += 1;
                            replies.insert(next_id, tx);
                            node.handle_http(now, next_id, req);
                            job = jobs.try_recv().ok();
                        }
                    }
                    // The HTTP server has gone.
                    None => return,
                },
                () = &mut tick, if armed.is_some() => {
                    // Fired: armed again on the next turn, even for the same time.
                    armed = None;
                    node.handle_tick(now_ms());
                }
            }
        }
        // A closed connection while kelp keeps running is unexpected; do not spin.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Milliseconds for the node: the wall clock at start, moved on by a monotonic clock, so that
/// its timers neither stall nor fire early when the wall clock is set (and record timestamps
/// still read as wall-clock time).
struct Clock {
    wall_ms: u64,
    start: Instant,
}

impl Clock {
    fn start() -> Self {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self { wall_ms, start: Instant::now() }
    }

    fn now_ms(&self) -> u64 {
        self.wall_ms.saturating_add(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}
