//! The one accept loop of every TCP listener.
//!
//! A connection permit is taken *before* `accept`, so `max_connections`
//! holds even under a connect flood (the excess waits in the kernel's
//! backlog); a client address already holding `max_connections_per_address`
//! connections has its new ones closed at once and counted, so one address
//! cannot take a listener's slots. Accept errors back off instead of
//! spinning; every connection task is tracked so shutdown can wait for it.
//! On shutdown, connections the kernel has already completed (the backlog)
//! are still accepted and drained: their clients may have written data
//! believing it delivered.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::{Cut, SourceMetrics};

/// How long shutdown waits for one more connection from the backlog.
const BACKLOG_POLL: Duration = Duration::from_millis(1);
/// Connections the kernel may hold completed for a listener whose slots are
/// all taken (capped by `net.core.somaxconn`). tokio's default of 128
/// overflows under a few hundred reconnecting strangers, and then a keyed
/// client's SYNs are dropped and back off for tens of seconds.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, so a
/// restart does not wait for old connections in TIME_WAIT).
pub fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Connection limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptLimits {
    pub max_connections: usize,
    pub per_address: usize,
}

/// What one client is counted as: an IPv4 address, or the /64 network of an
/// IPv6 address (the smallest network a host or a customer is given, so a
/// single peer can rotate through 2^64 addresses of it). An IPv4-mapped
/// IPv6 address counts as its IPv4 address.
pub fn client_block(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// Open connections (or anything else counted) per client ([`client_block`]).
#[derive(Debug, Default)]
pub(crate) struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    /// One more for the client of `ip`, given back when the slot drops; `None` at `cap`.
    pub(crate) fn try_take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<AddressSlot> {
        let ip = client_block(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot { table: self.clone(), ip })
    }
}

#[derive(Debug)]
pub(crate) struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A connection's place on its listener: given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _address: AddressSlot,
}

/// The listener's side of the loop: its limits and where it counts.
pub struct Listener<'a> {
    pub name: &'a str,
    pub limits: AcceptLimits,
    pub metrics: &'a Arc<SourceMetrics>,
}

/// Accepts connections until `shutdown`, running `handle` for each on `tracker`.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    me: Listener<'_>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Slot) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(me.limits.max_connections));
    let addresses = Arc::new(PerAddress::default());
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.cancelled() => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                if let Some(slot) = admit(&me, &addresses, peer, permit) {
                    tracker.spawn(handle(stream, peer, slot));
                }
            }
            Err(e) => {
                // Typically EMFILE/ENFILE: wait for descriptors to free up.
                tracing::warn!(listener = me.name, error = %e, ?backoff, "accept failed; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    // The backlog: connections the kernel completed before we stopped.
    while let Ok(permit) = permits.clone().try_acquire_owned() {
        match tokio::time::timeout(BACKLOG_POLL, listener.accept()).await {
            Ok(Ok((stream, peer))) => {
                if let Some(slot) = admit(&me, &addresses, peer, permit) {
                    tracker.spawn(handle(stream, peer, slot));
                }
            }
            _ => return,
        }
    }
}

/// The connection's slot, or `None` (counted) when its address holds its cap.
fn admit(me: &Listener<'_>, table: &Arc<PerAddress>, peer: SocketAddr, permit: OwnedSemaphorePermit) -> Option<Slot> {
    match table.try_take(peer.ip(), me.limits.per_address) {
        Some(address) => Some(Slot { _permit: permit, _address: address }),
        None => {
            me.metrics.cut(Cut::PerAddress);
            tracing::debug!(listener = me.name, %peer, cap = me.limits.per_address, "too many connections from one address; closed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_cap_and_its_slots_back() {
        let t = Arc::new(PerAddress::default());
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let held: Vec<_> = (0..2).map(|_| t.try_take(a, 2).unwrap()).collect();
        assert!(t.try_take(a, 2).is_none());
        assert!(t.try_take(b, 2).is_some(), "other addresses are not affected");
        drop(held);
        assert!(t.try_take(a, 2).is_some());
        assert!(t.open.lock().unwrap().is_empty(), "addresses with nothing open are forgotten");
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client_and_mapped_ipv4_its_ipv4_address() {
        let t = Arc::new(PerAddress::default());
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let held = [t.try_take(ip("2001:db8:1:2::1"), 2).unwrap(), t.try_take(ip("2001:db8:1:2:ffff::9"), 2).unwrap()];
        assert!(t.try_take(ip("2001:db8:1:2:abcd:1:2:3"), 2).is_none(), "the same /64");
        assert!(t.try_take(ip("2001:db8:1:3::1"), 2).is_some(), "the next /64 is another client");
        let v4 = [t.try_take(ip("192.0.2.7"), 2).unwrap(), t.try_take(ip("::ffff:192.0.2.7"), 2).unwrap()];
        assert!(t.try_take(ip("192.0.2.7"), 2).is_none(), "a mapped address is its IPv4 address");
        assert!(t.try_take(ip("192.0.2.8"), 2).is_some(), "IPv4 addresses count one by one");
        drop((held, v4));
        assert_eq!(client_block(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(client_block(ip("::1")), ip("::"));
    }
}
