//! The filer's distributed lock service, used to fence single-writer ownership (for example of a
//! Kafka partition's ledger) across processes.

use std::time::Duration;

use smq_proto::filer_pb::seaweed_filer_client::SeaweedFilerClient;
use smq_proto::filer_pb::{LockRequest, UnlockRequest};
use smq_proto::master_pb::ListClusterNodesRequest;
use smq_proto::master_pb::seaweed_client::SeaweedClient;

use crate::client::SmqClient;
use crate::error::{SmqError, SmqResult};

/// A held lock. Renew it before `ttl` runs out or another process may take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockLease {
    pub name: String,
    pub owner: String,
    pub renew_token: String,
    /// Increases every time the lock changes hands: a fencing token.
    pub generation: i64,
    filer: String,
}

impl LockLease {
    /// A lease known only by its renew token (kept by a process that has since died): renewing
    /// it takes the lock over at once if that token is still the lock's, without waiting for it
    /// to expire. `filer` is the one that answered for the lock ([`LockLease::filer`]).
    pub fn resume(name: &str, owner: &str, renew_token: &str, filer: &str) -> Self {
        Self {
            name: name.to_string(),
            owner: owner.to_string(),
            renew_token: renew_token.to_string(),
            generation: 0,
            filer: filer.to_string(),
        }
    }

    /// The filer (gRPC address) that holds the lock.
    pub fn filer(&self) -> &str {
        &self.filer
    }
}

/// The outcome of a lock attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    Acquired(LockLease),
    /// Someone else holds it.
    HeldBy(String),
}

/// Filers advertise themselves as `host:httpPort.grpcPort`.
pub(crate) fn filer_grpc_address(advertised: &str) -> String {
    match advertised.rsplit_once(':') {
        Some((host, ports)) => match ports.split_once('.') {
            Some((_, grpc)) => format!("{host}:{grpc}"),
            None => match ports.parse::<u32>() {
                Ok(http) => format!("{host}:{}", http + 10000),
                Err(_) => advertised.to_string(),
            },
        },
        None => advertised.to_string(),
    }
}

/// The HTTP address (`host:httpPort`) of a filer advertised as `host:httpPort.grpcPort`.
impl SmqClient {
    /// Filer gRPC addresses, from the master.
    pub async fn filers(&self) -> SmqResult<Vec<String>> {
        Ok(self
            .filer_nodes()
            .await?
            .iter()
            .map(|a| filer_grpc_address(a))
            .collect())
    }

    /// Filers as the master advertises them (`host:httpPort.grpcPort`), never empty.
    pub(crate) async fn filer_nodes(&self) -> SmqResult<Vec<String>> {
        let master =
            self.config().master.clone().ok_or_else(|| {
                SmqError::NoBroker("no master configured to find filers".to_string())
            })?;
        let mut client = SeaweedClient::new(self.channel(&master)?);
        let resp = tokio::time::timeout(
            self.config().request_timeout,
            client.list_cluster_nodes(ListClusterNodesRequest {
                client_type: "filer".to_string(),
                filer_group: String::new(),
                limit: 0,
            }),
        )
        .await
        .map_err(|_| SmqError::Timeout {
            what: "ListClusterNodes(filer)".to_string(),
            after: self.config().request_timeout,
        })?
        .map_err(|s| SmqError::rpc(&master, s))?;
        let filers: Vec<String> = resp
            .into_inner()
            .cluster_nodes
            .into_iter()
            .map(|n| n.address)
            .filter(|a| !a.is_empty())
            .collect();
        if filers.is_empty() {
            return Err(SmqError::NoBroker("the master lists no filer".to_string()));
        }
        Ok(filers)
    }

    /// Acquires `name` for `ttl`, or renews `current` when given.
    pub async fn lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        current: Option<&LockLease>,
    ) -> SmqResult<LockOutcome> {
        let mut filer = match current {
            Some(l) => l.filer.clone(),
            None => self.filers().await?.remove(0),
        };
        let mut moved = false;
        for _ in 0..3 {
            let mut client = SeaweedFilerClient::new(self.channel(&filer)?);
            let req = LockRequest {
                name: name.to_string(),
                seconds_to_lock: ttl.as_secs().max(1) as i64,
                renew_token: current.map(|l| l.renew_token.clone()).unwrap_or_default(),
                is_moved: moved,
                owner: owner.to_string(),
            };
            let r =
                tokio::time::timeout(self.config().request_timeout, client.distributed_lock(req))
                    .await
                    .map_err(|_| SmqError::Timeout {
                        what: format!("DistributedLock({name})"),
                        after: self.config().request_timeout,
                    })?
                    .map_err(|s| SmqError::rpc(&filer, s))?
                    .into_inner();
            if !r.lock_host_moved_to.is_empty() {
                // Another filer is responsible for this name.
                filer = filer_grpc_address(&r.lock_host_moved_to);
                moved = true;
                continue;
            }
            if r.error.is_empty() && !r.renew_token.is_empty() {
                return Ok(LockOutcome::Acquired(LockLease {
                    name: name.to_string(),
                    owner: owner.to_string(),
                    renew_token: r.renew_token,
                    generation: r.generation,
                    filer,
                }));
            }
            if !r.lock_owner.is_empty() && r.lock_owner != owner {
                return Ok(LockOutcome::HeldBy(r.lock_owner));
            }
            // 4.48 answers a taken lock with only the text "lock already owned by OWNER" (also
            // when OWNER is the caller, without the renew token: a restarted process must wait
            // for its old hold to expire).
            if let Some(holder) = r.error.strip_prefix("lock already owned by ") {
                return Ok(LockOutcome::HeldBy(holder.trim().to_string()));
            }
            return Err(SmqError::Broker {
                code: crate::codes::UNKNOWN,
                message: format!("lock {name}: {}", r.error),
            });
        }
        Err(SmqError::Protocol(format!(
            "lock {name}: filers keep redirecting"
        )))
    }

    /// Releases a lock (best effort: it expires anyway).
    pub async fn unlock(&self, lease: &LockLease) -> SmqResult<()> {
        let mut client = SeaweedFilerClient::new(self.channel(&lease.filer)?);
        let r = client
            .distributed_unlock(UnlockRequest {
                name: lease.name.clone(),
                renew_token: lease.renew_token.clone(),
                is_moved: false,
            })
            .await
            .map_err(|s| SmqError::rpc(&lease.filer, s))?
            .into_inner();
        if r.error.is_empty() {
            Ok(())
        } else {
            Err(SmqError::Broker {
                code: crate::codes::UNKNOWN,
                message: format!("unlock {}: {}", lease.name, r.error),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::filer_grpc_address;

    #[test]
    fn filer_addresses_name_their_grpc_port() {
        assert_eq!(
            filer_grpc_address("127.0.0.1:8988.18988"),
            "127.0.0.1:18988"
        );
        assert_eq!(filer_grpc_address("10.0.0.1:8888"), "10.0.0.1:18888");
    }
}
