//! Cluster discovery: from the master's address to a [`Cluster`] whose broker serves.
//!
//! The master lists the cluster's brokers and filers; kelp takes the first of each, then waits
//! until the broker answers a topic listing. Nothing here runs once the store has started.

use std::time::Duration;

use tokio::time::Instant;

use super::cluster::{Cluster, endpoint};
use super::pb::master_pb::{self, seaweed_client::SeaweedClient};
use super::pb::messaging_pb;
use super::{SeaweedMqConfig, StartError};

/// Pause between two attempts while the cluster is still starting.
const RETRY: Duration = Duration::from_millis(250);
/// How long the master may take to list a broker or a filer, in RPC deadlines.
const FIND_DEADLINES: u32 = 3;
/// How long the broker may take to serve after it is listed, in RPC deadlines.
const SERVE_DEADLINES: u32 = 6;

/// Parses SeaweedFS's `host:port[.grpcPort]` into the gRPC `host:port` (gRPC defaults to the
/// HTTP port + 10000, as in SeaweedFS).
#[must_use]
pub fn grpc_address(addr: &str) -> Option<String> {
    let (host, ports) = addr.rsplit_once(':')?;
    let grpc = match ports.split_once('.') {
        Some((_, g)) => g.parse::<u16>().ok()?,
        None => ports.parse::<u16>().ok()?.checked_add(10000)?,
    };
    Some(format!("{host}:{grpc}"))
}

impl Cluster {
    /// Asks the master for a broker and a filer and returns once the broker serves.
    pub(super) async fn connect(cfg: SeaweedMqConfig) -> Result<Self, StartError> {
        let master = grpc_address(&cfg.master)
            .ok_or_else(|| StartError(format!("bad master address {:?} (want host:port.grpcPort)", cfg.master)))?;
        let ch = endpoint(&master)
            .map_err(|e| StartError(format!("master {master}: {e}")))?
            .connect()
            .await
            .map_err(|e| StartError(format!("cannot reach the SeaweedFS master at {master}: {e}")))?;
        let mut m = SeaweedClient::new(ch);
        let patience = cfg.rpc_timeout * FIND_DEADLINES;
        let broker_addr = find_node(&mut m, &master, "broker", patience).await?;
        let filer = find_node(&mut m, &master, "filer", patience).await?;
        let filer_addr =
            grpc_address(&filer).ok_or_else(|| StartError(format!("bad filer address {filer:?} from the master")))?;
        tracing::info!(broker = %broker_addr, filer = %filer_addr, "seaweedmq: discovered");
        let c = Self::new(cfg, master, broker_addr, filer_addr);
        c.wait_until_serving().await?;
        Ok(c)
    }

    /// Waits until the broker lists topics: it accepts connections before it can serve.
    async fn wait_until_serving(&self) -> Result<(), StartError> {
        let deadline = Instant::now() + self.cfg.rpc_timeout * SERVE_DEADLINES;
        loop {
            match self.broker(&self.broker_addr).list_topics(messaging_pb::ListTopicsRequest {}).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(StartError(format!(
                        "the SeaweedMQ broker at {} does not serve: {e}",
                        self.broker_addr
                    )));
                }
                Err(_) => tokio::time::sleep(RETRY).await,
            }
        }
    }
}

/// The address of the first cluster node of `kind` (`broker`, `filer`) the master lists,
/// asking again until `patience` has passed (nodes register with the master as they start).
async fn find_node(
    m: &mut SeaweedClient<tonic::transport::Channel>,
    master: &str,
    kind: &str,
    patience: Duration,
) -> Result<String, StartError> {
    let deadline = Instant::now() + patience;
    loop {
        let req = master_pb::ListClusterNodesRequest { client_type: kind.into(), ..Default::default() };
        if let Ok(r) = m.list_cluster_nodes(req).await
            && let Some(n) = r.into_inner().cluster_nodes.into_iter().next()
        {
            return Ok(n.address);
        }
        if Instant::now() > deadline {
            return Err(StartError(format!("the master at {master} knows no {kind}")));
        }
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::grpc_address;

    #[test]
    fn seaweedfs_addresses() {
        assert_eq!(grpc_address("127.0.0.1:18010.18011").as_deref(), Some("127.0.0.1:18011"));
        assert_eq!(grpc_address("localhost:9333").as_deref(), Some("localhost:19333"));
        assert_eq!(grpc_address("nonsense"), None);
        assert_eq!(grpc_address("h:70000"), None);
    }
}
