//! `otelraft admin …`: the operator's commands, each one HTTP call to a
//! member's admin API (which proxies membership calls to the leader).

use std::collections::BTreeMap;

use clap::Subcommand;

use crate::admin::status::Status;
use crate::admin::TransferRequest;
use crate::admin::{
    ChangeReply, InitRequest, JoinRequest, MemberSpec, NodeRequest, ReplaceRequest,
};
use crate::node::handover::HandoverRequest;
use crate::peer::admin_client::{AdminClient, ClientError};
use crate::raft::Role;

/// The admin subcommands.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Show the node's view of the cluster: roles, quorum, margin, sinks.
    Status {
        /// Print the full JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Initialise a new cluster (default: the contacted node alone).
    Init {
        /// A voter as `ID=PEER_ADDR,ADMIN_ADDR[,witness]`; repeat for each.
        #[arg(long = "member")]
        members: Vec<String>,
    },
    /// Add a node as a learner and wait until it has caught up.
    AddLearner {
        #[command(flatten)]
        node: NewNode,
    },
    /// Add a witness (its config says `role = "witness"`): it joins as a
    /// learner, catches up and becomes a voter.
    AddWitness {
        #[command(flatten)]
        node: NewNode,
    },
    /// Make a caught-up learner a voter.
    Promote {
        #[arg(long)]
        id: u64,
        /// Promote even if it has not caught up.
        #[arg(long)]
        force: bool,
    },
    /// Remove a voter or learner; its id is retired for good.
    Remove {
        #[arg(long)]
        id: u64,
        /// Remove even if the cluster then survives no further failure.
        #[arg(long)]
        force: bool,
    },
    /// Replace member OLD by a new node: add it, catch it up, swap the
    /// voters in one joint change.
    Replace {
        /// The member to retire.
        #[arg(long)]
        old: u64,
        #[command(flatten)]
        node: NewNode,
        /// Replace even if the cluster then survives no further failure.
        #[arg(long)]
        force: bool,
    },
    /// Hand leadership to another data voter.
    TransferLeader {
        #[arg(long)]
        to: u64,
    },
    /// The 2 + witness hazard's way out, run against the witness: it leads
    /// just long enough to catch a data node up, then hands over.
    WitnessHandover {
        /// The data node to hand over to (default: the most up to date).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Build a snapshot on the contacted node now.
    Snapshot,
    /// Drain the contacted node before stopping it: it refuses new OTLP
    /// requests (clients retry elsewhere), finishes the accepted ones and,
    /// if it leads, hands leadership over. The process keeps running until
    /// it is stopped; use it as a pre-stop hook.
    Drain,
    /// Show each sink's dead-letter record (counts and newest items) as JSON.
    DeadLetters {
        /// Only this sink.
        #[arg(long)]
        sink: Option<String>,
    },
}

/// A node joining the cluster.
#[derive(clap::Args)]
pub struct NewNode {
    /// Its node id (never used before in this cluster).
    #[arg(long)]
    id: u64,
    /// Its peer `host:port`.
    #[arg(long)]
    peer_addr: String,
    /// Its admin `host:port`.
    #[arg(long)]
    admin_addr: String,
}

impl NewNode {
    fn request(self, role: Option<Role>) -> JoinRequest {
        JoinRequest {
            id: self.id,
            peer_addr: self.peer_addr,
            admin_addr: self.admin_addr,
            role,
        }
    }
}

/// Parses `ID=PEER_ADDR,ADMIN_ADDR[,witness]`.
pub fn parse_member(s: &str) -> Result<MemberSpec, String> {
    let bad = || format!("`{s}`: expected ID=PEER_ADDR,ADMIN_ADDR[,witness]");
    let (id, addrs) = s.split_once('=').ok_or_else(bad)?;
    let mut parts = addrs.split(',');
    let (Some(peer), Some(admin)) = (parts.next(), parts.next()) else {
        return Err(bad());
    };
    let role = match parts.next() {
        None | Some("data") => Role::Data,
        Some("witness") => Role::Witness,
        Some(_) => return Err(bad()),
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(MemberSpec {
        id: id.parse().map_err(|_| format!("`{id}` is not a node id"))?,
        peer_addr: peer.to_string(),
        admin_addr: admin.to_string(),
        role,
    })
}

fn printed(r: Result<ChangeReply, ClientError>) -> Result<(), String> {
    let r = r.map_err(|e| e.to_string())?;
    println!("{}", r.message);
    Ok(())
}

/// Runs `cmd` against the member at `endpoint` (`http://host:port`, or
/// `https://host:port` with `tls`).
pub async fn run(
    endpoint: &str,
    tls: Option<crate::tls::ClientTls>,
    token: Option<String>,
    cmd: AdminCommand,
) -> Result<(), String> {
    if tls.is_some() && !endpoint.starts_with("https://") {
        return Err(format!(
            "--ca is given but the endpoint {endpoint} is not https://"
        ));
    }
    let client = AdminClient::with_tls(
        endpoint,
        crate::peer::admin_client::MEMBERSHIP_TIMEOUT,
        tls.as_ref(),
    )
    .map_err(|e| e.to_string())?
    .with_token(token.as_deref());
    match cmd {
        AdminCommand::Status { json } => {
            let s: Status = client
                .get_json("/admin/v1/status")
                .await
                .map_err(|e| e.to_string())?;
            if json {
                let doc = serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?;
                println!("{doc}");
            } else {
                print!("{}", s.render_text());
            }
            Ok(())
        }
        AdminCommand::Init { members } => {
            let members = members
                .iter()
                .map(|m| parse_member(m))
                .collect::<Result<Vec<_>, _>>()?;
            printed(
                client
                    .post_json("/admin/v1/init", &InitRequest { members })
                    .await,
            )
        }
        AdminCommand::AddLearner { node } => printed(
            client
                .post_json("/admin/v1/add-learner", &node.request(None))
                .await,
        ),
        AdminCommand::AddWitness { node } => printed(
            client
                .post_json("/admin/v1/add-witness", &node.request(Some(Role::Witness)))
                .await,
        ),
        AdminCommand::Promote { id, force } => printed(
            client
                .post_json("/admin/v1/promote", &NodeRequest { id, force })
                .await,
        ),
        AdminCommand::Remove { id, force } => printed(
            client
                .post_json("/admin/v1/remove", &NodeRequest { id, force })
                .await,
        ),
        AdminCommand::Replace { old, node, force } => {
            let req = ReplaceRequest {
                old,
                new: node.request(None),
                force,
            };
            printed(client.post_json("/admin/v1/replace", &req).await)
        }
        AdminCommand::TransferLeader { to } => printed(
            client
                .post_json("/admin/v1/transfer-leader", &TransferRequest { to })
                .await,
        ),
        AdminCommand::WitnessHandover { to } => printed(
            client
                .post_json("/admin/v1/witness-handover", &HandoverRequest { to })
                .await,
        ),
        AdminCommand::Snapshot => printed(
            client
                .post_json("/admin/v1/snapshot", &serde_json::json!({}))
                .await,
        ),
        AdminCommand::Drain => {
            let report: crate::drain::DrainReport = client
                .post_json("/admin/v1/drain", &serde_json::json!({}))
                .await
                .map_err(|e| e.to_string())?;
            println!("{}", report.message);
            if report.complete {
                Ok(())
            } else {
                Err(report.message)
            }
        }
        AdminCommand::DeadLetters { sink } => {
            let mut all: BTreeMap<String, serde_json::Value> = client
                .get_json("/admin/v1/dead-letters")
                .await
                .map_err(|e| e.to_string())?;
            if let Some(sink) = sink {
                all.retain(|name, _| *name == sink);
            }
            let text = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
            println!("{text}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_with_an_optional_role() {
        let m = parse_member("3=10.0.0.3:4400,10.0.0.3:4480,witness").unwrap();
        assert_eq!((m.id, m.role), (3, Role::Witness));
        assert_eq!(m.admin_addr, "10.0.0.3:4480");
        assert_eq!(parse_member("1=a:1,a:2").unwrap().role, Role::Data);
        assert!(parse_member("1=a:1,a:2,voter").is_err());
        assert!(parse_member("1=a:1").is_err());
        assert!(parse_member("x=a:1,a:2").is_err());
    }
}
