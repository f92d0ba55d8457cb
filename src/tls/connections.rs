//! How many connections a listener keeps, and for how long a connection may
//! dawdle: the `[connections]` section and the table every accept loop
//! counts established connections in.
//!
//! Invariants:
//! - A connection is counted from accept until its last byte is gone (the
//!   count is a guard inside the connection), against its listener and its
//!   client: the address, or its /64 for IPv6, since one IPv6 client
//!   commonly holds a whole /64.
//! - On the peer port the last `member_reserve` slots go only to known
//!   members' addresses, and members are not held to `max_per_client`, so
//!   strangers can never crowd out replication.
//! - The accept loop never waits for a slot: over a cap, the connection is
//!   closed at once.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `[connections]` section: caps and timeouts of every listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsSection {
    /// Established connections per listener.
    pub max_per_listener: usize,
    /// Established connections per client address (IPv6: per /64).
    pub max_per_client: usize,
    /// Slots of the peer listener kept for members' addresses.
    pub member_reserve: usize,
    /// How long a client may take to send a request's headers, and how long
    /// an HTTP/1 connection may sit idle between requests.
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send a request's body.
    pub body_timeout_ms: u64,
    /// How long an OTLP request may take from its headers to its answer;
    /// above it the client is told to retry.
    pub request_timeout_ms: u64,
    /// Concurrent HTTP/2 streams per connection.
    pub max_streams_per_connection: u32,
    /// HTTP/2 keep-alive ping interval; a peer that does not answer within
    /// the same time is disconnected.
    pub keepalive_interval_ms: u64,
    /// OTLP requests of one connection that decompress and decode at once.
    /// The rest of its streams wait behind them, outside the node's queue
    /// for `ingest.decode_concurrency`, so a connection multiplexing many
    /// streams holds at most this many places there.
    pub decodes_per_connection: usize,
}

impl Default for ConnectionsSection {
    fn default() -> Self {
        ConnectionsSection {
            max_per_listener: 4096,
            max_per_client: 512,
            member_reserve: 64,
            header_read_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            request_timeout_ms: 60_000,
            max_streams_per_connection: 256,
            keepalive_interval_ms: 30_000,
            decodes_per_connection: 1,
        }
    }
}

impl ConnectionsSection {
    /// The timeouts as durations.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// See `body_timeout_ms`.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    /// See `request_timeout_ms`.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// See `keepalive_interval_ms`.
    pub fn keepalive_interval(&self) -> Duration {
        Duration::from_millis(self.keepalive_interval_ms)
    }
}

/// The addresses of the cluster's members, kept current by the server as
/// membership changes; the peer listener reserves slots for them.
#[derive(Clone, Debug, Default)]
pub struct MemberAddrs(Arc<RwLock<HashSet<IpAddr>>>);

impl MemberAddrs {
    /// Replaces the set.
    pub fn set(&self, addrs: impl IntoIterator<Item = IpAddr>) {
        let mut set = self.0.write().unwrap_or_else(PoisonError::into_inner);
        *set = addrs.into_iter().collect();
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let set = self.0.read().unwrap_or_else(PoisonError::into_inner);
        set.contains(&ip)
    }
}

/// The caps one listener applies.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    /// Established connections in all.
    pub max: usize,
    /// Established connections per client.
    pub per_client: usize,
    /// Slots only members may take (peer listener; 0 elsewhere).
    pub member_reserve: usize,
    /// Who the members are (peer listener).
    pub members: MemberAddrs,
    /// Slots of each connection's [`WorkSlots`](super::WorkSlots).
    pub work_per_connection: usize,
}

impl ConnLimits {
    /// Caps from `[connections]`; `members` only for the peer listener.
    pub fn from_section(section: &ConnectionsSection, members: Option<MemberAddrs>) -> Self {
        ConnLimits {
            max: section.max_per_listener,
            per_client: section.max_per_client,
            member_reserve: if members.is_some() {
                section.member_reserve
            } else {
                0
            },
            members: members.unwrap_or_default(),
            work_per_connection: section.decodes_per_connection,
        }
    }
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits::from_section(&ConnectionsSection::default(), None)
    }
}

/// The client a connection is counted against: its address, or the /64 of
/// an IPv6 address.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// Why a connection was not let in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The listener is full (for strangers: full up to the member reserve).
    Listener,
    /// This client holds its share.
    Client,
}

/// Established connections of one listener.
#[derive(Debug)]
pub(crate) struct ConnTable {
    limits: ConnLimits,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// One connection counted in its table until dropped.
#[derive(Debug)]
pub(crate) struct ConnGuard {
    table: Arc<ConnTable>,
    key: IpAddr,
}

impl ConnTable {
    pub(crate) fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(ConnTable {
            limits,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Counts a new connection from `ip`, or says why it may not stay.
    pub(crate) fn enter(table: &Arc<ConnTable>, ip: IpAddr) -> Result<ConnGuard, Refusal> {
        let member = table.limits.member_reserve > 0 && table.limits.members.contains(ip);
        let key = client_key(ip);
        let mut counts = table.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let room = if member {
            table.limits.max
        } else {
            table.limits.max.saturating_sub(table.limits.member_reserve)
        };
        if counts.total >= room {
            return Err(Refusal::Listener);
        }
        let client = counts.per_client.get(&key).copied().unwrap_or(0);
        if !member && client >= table.limits.per_client {
            return Err(Refusal::Client);
        }
        counts.total += 1;
        *counts.per_client.entry(key).or_insert(0) += 1;
        Ok(ConnGuard {
            table: table.clone(),
            key,
        })
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut counts = self
            .table
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_client.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.per_client.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_client: usize, reserve: usize, members: &[&str]) -> ConnLimits {
        let addrs = MemberAddrs::default();
        addrs.set(members.iter().map(|m| m.parse().unwrap()));
        ConnLimits {
            max,
            per_client,
            member_reserve: reserve,
            members: addrs,
            work_per_connection: 1,
        }
    }

    #[test]
    fn one_client_cannot_take_more_than_its_share_and_a_closed_connection_frees_its_slot() {
        let table = ConnTable::new(limits(10, 2, 0, &[]));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = ConnTable::enter(&table, ip).unwrap();
        let _b = ConnTable::enter(&table, ip).unwrap();
        assert_eq!(ConnTable::enter(&table, ip).unwrap_err(), Refusal::Client);
        assert!(ConnTable::enter(&table, "10.0.0.2".parse().unwrap()).is_ok());
        drop(a);
        assert!(ConnTable::enter(&table, ip).is_ok());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_bit_prefix() {
        let table = ConnTable::new(limits(10, 2, 0, &[]));
        let _a = ConnTable::enter(&table, "2001:db8:1:2::1".parse().unwrap()).unwrap();
        let _b = ConnTable::enter(&table, "2001:db8:1:2:ffff::9".parse().unwrap()).unwrap();
        assert_eq!(
            ConnTable::enter(&table, "2001:db8:1:2:abcd::1".parse().unwrap()).unwrap_err(),
            Refusal::Client
        );
        assert!(ConnTable::enter(&table, "2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn the_member_reserve_is_kept_from_strangers_but_not_from_members() {
        let table = ConnTable::new(limits(4, 100, 2, &["10.0.0.9"]));
        let strangers: Vec<_> = (1..=2)
            .map(|i| ConnTable::enter(&table, format!("10.0.1.{i}").parse().unwrap()).unwrap())
            .collect();
        assert_eq!(
            ConnTable::enter(&table, "10.0.1.3".parse().unwrap()).unwrap_err(),
            Refusal::Listener
        );
        let member: IpAddr = "10.0.0.9".parse().unwrap();
        let _m1 = ConnTable::enter(&table, member).unwrap();
        let _m2 = ConnTable::enter(&table, member).unwrap();
        assert_eq!(
            ConnTable::enter(&table, member).unwrap_err(),
            Refusal::Listener
        );
        drop(strangers);
    }
}
