//! Who the client is: the TCP peer, or the address a trusted proxy names.
//!
//! Shared by the admin API and HTTP ingest (rate limits, setup from
//! loopback, audit). `X-Forwarded-For` counts only when the peer is a
//! trusted proxy, and then the right-most address that is not itself trusted
//! is the client: addresses further left were written by the client and
//! cannot be believed.

use std::net::IpAddr;

use http::HeaderMap;

/// Most `X-Forwarded-For` hops looked at; a longer chain is a client's invention.
const MAX_FORWARDED_HOPS: usize = 16;

/// The client: the peer, or — when the peer is a trusted proxy — the
/// right-most `X-Forwarded-For` address that is not itself trusted.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusts: impl Fn(IpAddr) -> bool) -> IpAddr {
    if !trusts(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut client = peer;
    for ip in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        client = *ip;
        if !trusts(*ip) {
            return client;
        }
    }
    // Every hop looked at is a trusted proxy: the left-most of those is the
    // nearest to the client that can be believed (never a hop further left).
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusts = |ip: IpAddr| ip == proxy;
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4, 5.6.7.8".parse().unwrap());
        assert_eq!(client_ip("9.9.9.9".parse().unwrap(), &h, trusts), "9.9.9.9".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(proxy, &h, trusts), "5.6.7.8".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(proxy, &HeaderMap::new(), trusts), proxy);
    }

    #[test]
    fn a_client_cannot_pick_its_address_by_padding_the_header() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let trusts = |ip: IpAddr| ip == proxy;
        // The client wrote "6.6.6.6" and the proxy appended what it saw.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
        assert_eq!(client_ip(proxy, &h, trusts), "203.0.113.9".parse::<IpAddr>().unwrap());
        // Past the hops looked at, nothing further left is believed.
        let chain = std::iter::once("6.6.6.6".to_string())
            .chain(std::iter::repeat_n("10.0.0.1".to_string(), MAX_FORWARDED_HOPS))
            .collect::<Vec<_>>()
            .join(", ");
        h.insert("x-forwarded-for", chain.parse().unwrap());
        assert_eq!(client_ip(proxy, &h, trusts), proxy);
    }
}
