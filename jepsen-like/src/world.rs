//! The running system under test: node processes by slot, the proxies' delay
//! knobs, and the client target list, with the primitive actions the
//! nemesis composes (cut, kill, pause, slow, replace) and the final heal.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;

use crate::nodes::{
    status, InitialMember, NodeError, NodeProc, NodeSettings, Role, PEER_PROXY_PORT,
};
use crate::proxy::Delay;
use crate::topology::{
    inner_if, ip, run_in, slot_host, slot_ns, TopologyError, HARNESS_HOST, SINKS,
};
use crate::workload::Targets;

/// Ports of the sinks: the Prometheus recording proxy, Loki, S3.
pub const PROM_PORT: u16 = 9091;
/// The strict Loki receiver's port.
pub const LOKI_PORT: u16 = 3100;
/// s3s-fs's port.
pub const S3_PORT: u16 = 9000;

/// The system under test.
pub struct World {
    /// How nodes are configured and where their files go.
    pub settings: NodeSettings,
    /// The node living in each slot (index = slot - 1).
    pub slots: Vec<Option<NodeProc>>,
    /// The delay knob of each slot's peer proxy (index = slot - 1).
    pub delays: Vec<Delay>,
    /// Where clients send.
    pub targets: Targets,
    /// The next unused node id.
    pub next_id: u64,
    /// For status calls.
    pub http: reqwest::Client,
    /// Members that exited without the nemesis killing them.
    pub crashes: Vec<String>,
}

impl World {
    /// Creates the initial members in slots 1..=voters; with `witness`, the
    /// last one is a witness. Starts them and waits for a leader.
    pub async fn bootstrap(&mut self, voters: usize, witness: bool) -> Result<(), NodeError> {
        let members: Vec<InitialMember> = (1..=voters)
            .map(|s| {
                let role = if witness && s == voters {
                    Role::Witness
                } else {
                    Role::Data
                };
                (s as u64, s, role)
            })
            .collect();
        for &(id, slot, role) in &members {
            let mut p = self.settings.create(id, slot, role, id == 1, &members)?;
            p.start(&self.settings.otelraft, &self.settings.env)?;
            self.slots[slot - 1] = Some(p);
        }
        self.next_id = voters as u64 + 1;
        self.publish_targets();
        self.wait_for_leader(Duration::from_secs(60)).await?;
        Ok(())
    }

    /// Every member's (id, ip).
    pub fn member_addrs(&self) -> Vec<(u64, Ipv4Addr)> {
        self.slots
            .iter()
            .flatten()
            .map(|p| (p.id, p.ip()))
            .collect()
    }

    /// Tells the clients the current members.
    pub fn publish_targets(&self) {
        self.targets.set(self.member_addrs());
    }

    /// The node with id `id`.
    pub fn node_mut(&mut self, id: u64) -> Option<&mut NodeProc> {
        self.slots.iter_mut().flatten().find(|p| p.id == id)
    }

    /// The node with id `id`.
    pub fn node(&self, id: u64) -> Option<&NodeProc> {
        self.slots.iter().flatten().find(|p| p.id == id)
    }

    /// Every member's admin URL.
    pub fn admin_urls(&self) -> Vec<(u64, String)> {
        self.slots
            .iter()
            .flatten()
            .map(|p| (p.id, p.admin_url()))
            .collect()
    }

    /// The node that answers as leader with the highest term, with its status.
    pub async fn leader(&self) -> Option<(u64, Value)> {
        leader_of(&self.http, &self.admin_urls()).await
    }

    /// Polls until some node answers as leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, NodeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some((id, _)) = self.leader().await {
                return Ok(id);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(NodeError::Timeout(format!(
                    "no leader within {timeout:?}; node logs are in {}",
                    self.settings.dir.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The slot of node `id`.
    pub fn slot_of(&self, id: u64) -> Option<usize> {
        self.node(id).map(|p| p.slot)
    }

    /// Drops all traffic between slot `a` and slot `b`, both ways.
    pub fn cut(&self, a: usize, b: usize) -> Result<(), TopologyError> {
        drop_between(&slot_ns(a), ip(slot_host(b)))?;
        drop_between(&slot_ns(b), ip(slot_host(a)))
    }

    /// Drops all traffic between slot `a` and the clients.
    pub fn cut_clients(&self, a: usize) -> Result<(), TopologyError> {
        drop_between(&slot_ns(a), ip(crate::topology::CLIENTS.1))
    }

    /// Drops a random `percent` of the packets slot `a` receives from
    /// anything but the harness.
    pub fn lose(&self, a: usize, percent: u32) -> Result<(), TopologyError> {
        let ns = slot_ns(a);
        // Only on the veth: loopback carries the proxy-to-node hop.
        iptables(
            &ns,
            &format!(
                "-A INPUT -i {} ! -s {} -m statistic --mode random --probability {:.2} -j DROP",
                inner_if(&ns),
                ip(HARNESS_HOST),
                f64::from(percent) / 100.0
            ),
        )
    }

    /// Limits what slot `a` sends to `kbit` kbit/s (tc tbf).
    pub fn throttle(&self, a: usize, kbit: u32) -> Result<(), TopologyError> {
        let ns = slot_ns(a);
        run_in(
            &ns,
            "tc",
            &[
                "qdisc",
                "add",
                "dev",
                &inner_if(&ns),
                "root",
                "tbf",
                "rate",
                &format!("{kbit}kbit"),
                "burst",
                "32kbit",
                "latency",
                "400ms",
            ],
        )
        .map(drop)
    }

    /// Cuts the nodes off from the sinks named by `ports`.
    pub fn sink_outage(&self, ports: &[u16]) -> Result<(), TopologyError> {
        let list = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        iptables(
            SINKS.0,
            &format!(
                "-A INPUT -p tcp ! -s {} -m multiport --dports {list} -j DROP",
                ip(HARNESS_HOST)
            ),
        )
    }

    /// Replaces member `old` with a node of a fresh id in a free slot, through
    /// the admin API of any member (a follower passes the call on). On
    /// success the old node is stopped and its slot freed.
    pub async fn replace(&mut self, old: u64) -> Result<String, String> {
        let free = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or("no free slot")?
            + 1;
        let id = self.next_id;
        self.next_id += 1;
        let mut fresh = self
            .settings
            .create(id, free, Role::Data, false, &[])
            .map_err(|e| e.to_string())?;
        fresh
            .start(&self.settings.otelraft, &self.settings.env)
            .map_err(|e| e.to_string())?;
        let addr = fresh.ip();
        let body = serde_json::json!({
            "old": old,
            "new": {
                "id": id,
                "peer_addr": format!("{addr}:{PEER_PROXY_PORT}"),
                "admin_addr": format!("{addr}:4480"),
            },
        });
        let via = self
            .admin_urls()
            .into_iter()
            .find(|(n, _)| *n != old)
            .map(|(_, u)| u)
            .ok_or("no member to ask")?;
        let admin = otelraft::peer::admin_client::AdminClient::new(&via);
        self.slots[free - 1] = Some(fresh);
        match admin
            .post_json::<_, Value>("/admin/v1/replace", &body)
            .await
        {
            Ok(_) => {
                self.retire(old).await;
                Ok(format!("replaced n{old} by n{id} (slot {free})"))
            }
            Err(e) => {
                // The call failing does not mean the change did not commit
                // (a timeout, a lost answer): the leader's membership decides.
                let voters = self.voters().await;
                if voters
                    .as_ref()
                    .is_some_and(|v| v.contains(&id) && !v.contains(&old))
                {
                    self.retire(old).await;
                    return Ok(format!(
                        "replaced n{old} by n{id} (slot {free}); the call said: {e}"
                    ));
                }
                // Not done: take the learner out so it does not linger as a
                // member with no process.
                let _ = admin
                    .post_json::<_, Value>(
                        "/admin/v1/remove",
                        &serde_json::json!({"id": id, "force": true}),
                    )
                    .await;
                if let Some(mut p) = self.slots[free - 1].take() {
                    p.kill();
                }
                Err(format!("replace n{old} by n{id} refused: {e}"))
            }
        }
    }

    /// Stops a member that left and frees its slot.
    async fn retire(&mut self, old: u64) {
        if let Some(slot) = self.slot_of(old) {
            if let Some(mut p) = self.slots[slot - 1].take() {
                p.stop(Duration::from_secs(5)).await;
            }
        }
        self.publish_targets();
    }

    /// The voters in the leader's membership.
    async fn voters(&self) -> Option<Vec<u64>> {
        let (_, st) = self.leader().await?;
        Some(
            st["members"]
                .as_array()?
                .iter()
                .filter(|m| m["role"] == "voter")
                .filter_map(|m| m["id"].as_u64())
                .collect(),
        )
    }

    /// Undoes every fault: rules and qdiscs removed, delays zeroed, paused
    /// nodes resumed, stopped members restarted.
    ///
    /// Every step is tried even if an earlier one failed. A member that is
    /// down although the nemesis did not kill it crashed: that is recorded
    /// in `crashes` (and makes the run invalid) before it is restarted.
    pub fn heal_everything(&mut self, topo: &crate::topology::Topology) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Err(e) = topo.heal_all() {
            errors.push(e.to_string());
        }
        for d in &self.delays {
            d.set_ms(0);
        }
        let otelraft = self.settings.otelraft.clone();
        let env = self.settings.env.clone();
        for p in self.slots.iter_mut().flatten() {
            if p.is_paused() {
                p.resume();
            }
            if let Some(status) = p.exit_status() {
                if !p.killed_by_nemesis() {
                    self.crashes
                        .push(format!("n{} exited by itself: {status}", p.id));
                }
            }
            if !p.is_running() {
                if let Err(e) = p.start(&otelraft, &env) {
                    errors.push(e.to_string());
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

fn drop_between(ns: &str, other: Ipv4Addr) -> Result<(), TopologyError> {
    iptables(ns, &format!("-A INPUT -s {other} -j DROP"))?;
    iptables(ns, &format!("-A OUTPUT -d {other} -j DROP"))
}

/// Adds one iptables rule in `ns`, waiting for the xtables lock.
fn iptables(ns: &str, rule: &str) -> Result<(), TopologyError> {
    let mut args = vec!["-w"];
    args.extend(rule.split_whitespace());
    run_in(ns, "iptables", &args).map(drop)
}

/// Of the nodes at `urls`, the one that answers as leader with the highest
/// term, and its status.
pub async fn leader_of(http: &reqwest::Client, urls: &[(u64, String)]) -> Option<(u64, Value)> {
    let answers = futures::future::join_all(
        urls.iter()
            .map(|(id, u)| async move { (*id, status(http, u).await) }),
    )
    .await;
    answers
        .into_iter()
        .filter_map(|(id, s)| s.map(|s| (id, s)))
        .filter(|(_, s)| s["role"] == "leader")
        .max_by_key(|(_, s)| s["term"].as_u64().unwrap_or(0))
}
