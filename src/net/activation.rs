//! systemd socket activation: the sockets a unit like `sluice.socket` bound
//! and passed (`LISTEN_PID`, `LISTEN_FDS`, from descriptor 3 on), adopted by
//! the listeners whose configured address they are bound to. Ports below 1024
//! then need no capability in the daemon.
//!
//! A passed socket is matched by its type (stream or datagram) and its exact
//! local address: `ListenStream=127.0.0.1:514` serves a listener configured
//! with `address = "127.0.0.1:514"`. Sockets no listener claims are closed
//! with a warning; listeners no socket matches bind their own.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd as _, RawFd};

use socket2::{Socket, Type};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;
/// More than any unit passes; a larger `LISTEN_FDS` is a mistake, not sockets.
const MAX_FDS: usize = 1024;

/// Sockets passed by systemd and not yet claimed by a listener.
#[derive(Debug, Default)]
pub struct Passed {
    sockets: Vec<(Socket, Type, SocketAddr)>,
}

impl Passed {
    /// Takes the sockets passed to this process, if `LISTEN_PID` names it.
    /// The descriptors are marked close-on-exec. Call once, before anything
    /// else opens files.
    pub fn from_env() -> Passed {
        let pid_matches =
            std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
        let count = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<usize>().ok());
        match count {
            Some(n) if pid_matches && n <= MAX_FDS => {
                // SAFETY: systemd hands this process descriptors 3..3+n; nothing
                // else in it has opened or claimed them yet (see above).
                unsafe { Passed::adopt((FIRST_FD..).take(n)) }
            }
            Some(n) if pid_matches => {
                tracing::warn!(count = n, "LISTEN_FDS is implausible; ignoring the passed sockets");
                Passed::default()
            }
            _ => Passed::default(),
        }
    }

    /// Takes ownership of the descriptors `fds`.
    ///
    /// # Safety
    /// The descriptors must be open, owned by nobody else in this process.
    pub unsafe fn adopt(fds: impl IntoIterator<Item = RawFd>) -> Passed {
        let mut sockets = Vec::new();
        for fd in fds {
            // SAFETY: the caller hands over these descriptors.
            let socket = unsafe { Socket::from_raw_fd(fd) };
            let _ = socket.set_cloexec(true);
            match (socket.r#type(), socket.local_addr().map(|a| a.as_socket())) {
                (Ok(kind), Ok(Some(address))) if kind == Type::STREAM || kind == Type::DGRAM => {
                    sockets.push((socket, kind, address));
                }
                _ => tracing::warn!(fd, "a descriptor passed by systemd is not a TCP or UDP socket; closing it"),
            }
        }
        Passed { sockets }
    }

    /// The passed listening TCP socket bound to `address`, if any.
    pub fn take_stream(&mut self, address: SocketAddr) -> Option<std::net::TcpListener> {
        self.take(Type::STREAM, address).into_iter().next().map(Into::into)
    }

    /// The passed UDP sockets bound to `address` (several with `ReusePort=`).
    pub fn take_datagram(&mut self, address: SocketAddr) -> Vec<std::net::UdpSocket> {
        self.take(Type::DGRAM, address).into_iter().map(Into::into).collect()
    }

    fn take(&mut self, kind: Type, address: SocketAddr) -> Vec<Socket> {
        let (taken, kept) =
            std::mem::take(&mut self.sockets).into_iter().partition(|(_, k, a)| *k == kind && *a == address);
        self.sockets = kept;
        taken.into_iter().map(|(s, _, _)| s).collect()
    }

    /// Closes the sockets no listener claimed, naming each.
    pub fn close_unclaimed(&mut self) {
        for (_, kind, address) in self.sockets.drain(..) {
            let kind = if kind == Type::STREAM { "stream" } else { "datagram" };
            tracing::warn!(
                %address,
                kind,
                "systemd passed a socket that no listener is configured for; closing it (give a listener this exact address)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd as _;

    #[test]
    fn matches_sockets_by_type_and_exact_address() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (tcp_addr, udp_addr) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
        let mut passed = unsafe { Passed::adopt([tcp.into_raw_fd(), udp.into_raw_fd()]) };
        if tcp_addr != udp_addr {
            assert!(passed.take_datagram(tcp_addr).is_empty(), "a stream socket is not a datagram one");
            assert!(passed.take_stream(udp_addr).is_none(), "and the other way round");
        }
        let listener = passed.take_stream(tcp_addr).expect("the stream socket");
        assert_eq!(listener.local_addr().unwrap(), tcp_addr);
        assert!(passed.take_stream(tcp_addr).is_none(), "taken once");
        assert_eq!(passed.take_datagram(udp_addr).len(), 1);
        assert!(passed.take_datagram(udp_addr).is_empty(), "taken once");
        passed.close_unclaimed();
        assert!(passed.sockets.is_empty());
    }
}
