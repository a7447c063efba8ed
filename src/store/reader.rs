//! A stored event as readers see it ([`StoredEvent`]). Scans are
//! `store::query`'s (one engine for pages, exports and tails); its JSON form
//! is `export::event_json`'s.

use crate::record::{Record, tag};

/// One stored event, borrowing from its decoded chunk.
#[derive(Debug, Clone)]
pub struct StoredEvent<'a> {
    pub seq: u64,
    pub workspace: u32,
    /// Config section name of the listener that took it, e.g. `tcp`.
    pub listener: &'a str,
    /// The connection's peer address (a record's own `PEER` field, when
    /// present, overrides it; see [`StoredEvent::peer`]).
    pub chunk_peer: &'a str,
    /// For events relayed from an edge node: its `node_id` and the event's
    /// sequence number there.
    pub origin: Option<(&'a str, u64)>,
    pub record: Record<'a>,
}

impl StoredEvent<'_> {
    /// The sender's address: the record's own (UDP) or the connection's.
    pub fn peer(&self) -> std::borrow::Cow<'_, str> {
        match self.record.get(tag::PEER) {
            Some(p) => String::from_utf8_lossy(p),
            None => std::borrow::Cow::Borrowed(self.chunk_peer),
        }
    }
}
