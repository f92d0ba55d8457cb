//! The nemesis: a seeded schedule of faults, applied one at a time, each
//! healed before the next quiet period.
//!
//! The schedule (which fault, when, for how long, and a random number that
//! picks its victims) comes from the seed alone, so a seed reproduces a run.
//! Victims named by role ("the leader") are resolved when the fault starts.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::history::{Clock, Fault};
use crate::topology::Topology;
use crate::world::{World, LOKI_PORT, PROM_PORT, S3_PORT};

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// One random member cut off from every other member.
    IsolateOne,
    /// The leader cut off from every other member.
    IsolateLeader,
    /// Members split into a majority and a minority.
    MajorityMinority,
    /// Two members cut from each other; a third sees both.
    Bridge,
    /// One member unreachable from the clients.
    ClientCut,
    /// SIGKILL a random member; restart on heal.
    Kill,
    /// SIGKILL the leader; restart on heal.
    KillLeader,
    /// SIGSTOP a random member; SIGCONT on heal.
    Pause,
    /// SIGSTOP the leader; SIGCONT on heal.
    PauseLeader,
    /// Random packet loss on every member's inbound traffic.
    Loss,
    /// tc tbf on the leader's outbound traffic.
    Bandwidth,
    /// Delay on every member's inbound Raft traffic.
    Latency,
    /// The nodes cut off from Prometheus, Loki, S3 or all three.
    SinkOutage,
    /// A data member replaced by a fresh node while clients write.
    Membership,
}

impl FaultKind {
    /// The family name used in `--nemesis` and the plot.
    pub fn family(self) -> &'static str {
        use FaultKind::*;
        match self {
            IsolateOne | IsolateLeader | MajorityMinority | Bridge | ClientCut => "partition",
            Kill | KillLeader => "kill",
            Pause | PauseLeader => "pause",
            Loss => "loss",
            Bandwidth => "bandwidth",
            Latency => "latency",
            SinkOutage => "sink",
            Membership => "membership",
        }
    }

    /// Every kind of a family (or of all, or of the CI smoke mix).
    pub fn of(name: &str) -> Option<Vec<FaultKind>> {
        use FaultKind::*;
        let all = [
            IsolateOne,
            IsolateLeader,
            MajorityMinority,
            Bridge,
            ClientCut,
            Kill,
            KillLeader,
            Pause,
            PauseLeader,
            Loss,
            Bandwidth,
            Latency,
            SinkOutage,
            Membership,
        ];
        match name {
            "all" => Some(all.to_vec()),
            // Short and decisive: the faults that cost a leader, plus a sink
            // outage, so export settling is exercised too.
            "smoke" => Some(vec![IsolateLeader, KillLeader, SinkOutage, PauseLeader]),
            family => {
                let kinds: Vec<_> = all.into_iter().filter(|k| k.family() == family).collect();
                (!kinds.is_empty()).then_some(kinds)
            }
        }
    }
}

/// One planned fault.
#[derive(Clone, Debug, Serialize)]
pub struct Planned {
    /// When to inject it, from the run's start.
    pub at_ms: u64,
    /// What.
    pub kind: FaultKind,
    /// How long to keep it (a membership change takes as long as it takes).
    pub hold_ms: u64,
    /// Picks victims and magnitudes.
    pub pick: u64,
}

/// The schedule for a run of `time_ms` with faults drawn from `kinds`. The
/// first `warmup_ms` are quiet, so the run has a baseline.
pub fn schedule(seed: u64, kinds: &[FaultKind], time_ms: u64, warmup_ms: u64) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut plan = Vec::new();
    let mut t = warmup_ms;
    while !kinds.is_empty() {
        let hold_ms = rng.random_range(3_000..=8_000);
        if t + hold_ms > time_ms {
            break;
        }
        plan.push(Planned {
            at_ms: t,
            kind: kinds[rng.random_range(0..kinds.len())],
            hold_ms,
            pick: rng.random(),
        });
        t += hold_ms + rng.random_range(2_000..=5_000);
    }
    plan
}

/// Runs `plan` against `world`, recording each fault into the returned list.
pub async fn run(
    plan: &[Planned],
    world: &tokio::sync::Mutex<World>,
    topo: &Topology,
    clock: Clock,
) -> Vec<Fault> {
    let mut faults = Vec::new();
    for p in plan {
        let wait = p.at_ms as f64 - clock.now_ms();
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        let start_ms = clock.now_ms();
        let mut w = world.lock().await;
        let (detail, note) = match inject(&mut w, p).await {
            Ok(detail) => (detail, None),
            Err(e) => (format!("{:?}", p.kind), Some(e)),
        };
        tracing::info!(kind = p.kind.family(), %detail, note = note.as_deref().unwrap_or(""), "fault injected");
        if p.kind != FaultKind::Membership {
            drop(w);
            tokio::time::sleep(Duration::from_millis(p.hold_ms)).await;
            w = world.lock().await;
        }
        let heal = w.heal_everything(topo);
        drop(w);
        let note = match (note, heal) {
            (n, Ok(())) => n,
            (n, Err(e)) => Some(format!("{} heal failed: {e}", n.unwrap_or_default())),
        };
        let end_ms = clock.now_ms();
        tracing::info!(kind = p.kind.family(), %detail, "fault healed");
        faults.push(Fault {
            kind: p.kind.family().to_string(),
            detail,
            start_ms,
            end_ms: Some(end_ms),
            note,
        });
    }
    faults
}

/// Applies one fault; returns what was done.
async fn inject(w: &mut World, p: &Planned) -> Result<String, String> {
    use FaultKind::*;
    let mut rng = StdRng::seed_from_u64(p.pick);
    let members: Vec<(u64, usize)> = w.slots.iter().flatten().map(|n| (n.id, n.slot)).collect();
    if members.is_empty() {
        return Err("no members".into());
    }
    let random = members[rng.random_range(0..members.len())];
    let leader = match w.leader().await {
        Some((id, _)) => w.slot_of(id).map(|s| (id, s)),
        None => None,
    };
    let leader_or_random = leader.unwrap_or(random);
    let e = |e: crate::topology::TopologyError| e.to_string();
    match p.kind {
        IsolateOne | IsolateLeader => {
            let (id, slot) = if p.kind == IsolateOne {
                random
            } else {
                leader_or_random
            };
            for &(_, other) in members.iter().filter(|m| m.1 != slot) {
                w.cut(slot, other).map_err(e)?;
            }
            Ok(format!("isolate n{id}"))
        }
        MajorityMinority => {
            let mut shuffled = members.clone();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.random_range(0..=i));
            }
            let minority = shuffled.split_off(shuffled.len().div_ceil(2));
            for a in &shuffled {
                for b in &minority {
                    w.cut(a.1, b.1).map_err(e)?;
                }
            }
            Ok(format!(
                "majority {:?} | minority {:?}",
                shuffled.iter().map(|m| m.0).collect::<Vec<_>>(),
                minority.iter().map(|m| m.0).collect::<Vec<_>>()
            ))
        }
        Bridge => {
            if members.len() < 3 {
                return Err("bridge needs three members".into());
            }
            let mid = rng.random_range(0..members.len());
            let ends: Vec<_> = members
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != mid)
                .map(|(_, m)| *m)
                .collect();
            w.cut(ends[0].1, ends[1].1).map_err(e)?;
            Ok(format!(
                "bridge n{} - n{} - n{}",
                ends[0].0, members[mid].0, ends[1].0
            ))
        }
        ClientCut => {
            w.cut_clients(random.1).map_err(e)?;
            Ok(format!("clients cut from n{}", random.0))
        }
        Kill | KillLeader => {
            let (id, _) = if p.kind == Kill {
                random
            } else {
                leader_or_random
            };
            if let Some(n) = w.node_mut(id) {
                n.kill();
            }
            Ok(format!("kill n{id}"))
        }
        Pause | PauseLeader => {
            let (id, _) = if p.kind == Pause {
                random
            } else {
                leader_or_random
            };
            if let Some(n) = w.node_mut(id) {
                n.pause();
            }
            Ok(format!("pause n{id}"))
        }
        Loss => {
            let percent = rng.random_range(10..=40);
            for &(_, slot) in &members {
                w.lose(slot, percent).map_err(e)?;
            }
            Ok(format!("{percent}% inbound loss on every member"))
        }
        Bandwidth => {
            let kbit = [256, 1024, 4096][rng.random_range(0..3)];
            let (id, slot) = leader_or_random;
            w.throttle(slot, kbit).map_err(e)?;
            Ok(format!("n{id} sends at {kbit} kbit/s"))
        }
        Latency => {
            let ms = rng.random_range(20..=250);
            for d in &w.delays {
                d.set_ms(ms);
            }
            Ok(format!("{ms} ms added to every Raft hop"))
        }
        SinkOutage => {
            let (name, ports): (&str, Vec<u16>) = match rng.random_range(0..4) {
                0 => ("prometheus", vec![PROM_PORT]),
                1 => ("loki", vec![LOKI_PORT]),
                2 => ("s3", vec![S3_PORT]),
                _ => ("prometheus+loki+s3", vec![PROM_PORT, LOKI_PORT, S3_PORT]),
            };
            w.sink_outage(&ports).map_err(e)?;
            Ok(format!("{name} unreachable"))
        }
        Membership => {
            let data: Vec<u64> = w
                .slots
                .iter()
                .flatten()
                .filter(|n| n.role == crate::nodes::Role::Data)
                .map(|n| n.id)
                .collect();
            let old = data[rng.random_range(0..data.len())];
            w.replace(old).await
        }
    }
}
