//! The ack reply that answers every acked frame (see frame.rs), in the order
//! the frames were sent on that connection.
//!
//! ```text
//! 0xAD  version:u8(=1)  status:u8  reserved:u8(=0)  count:u32be  batch_id:u64be  first_seq:u64be
//! └──────────────────────────────── 24 bytes ──────────────────────────────────────────────────┘
//! ```
//!
//! `first_seq` and `count` give the stored sequence range
//! `first_seq ..= first_seq + count - 1` for `stored` and `duplicate` (the
//! range of the original copy); both are 0 otherwise.

use thiserror::Error;

pub const ACK_MAGIC: u8 = 0xAD;
pub const ACK_VERSION: u8 = 1;
pub const ACK_LEN: usize = 24;

/// What happened to an acked batch. Stored as one byte on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// Committed to disk in this request.
    Stored = 0,
    /// Committed earlier (same workspace, producer and batch id); not stored again.
    Duplicate = 1,
    /// The batch's streaming key is unknown or revoked. Do not retry as is.
    BadKey = 2,
    /// The batch did not decode. Do not retry as is.
    Malformed = 3,
    /// The frame was over the server's `max_frame_bytes`. Split it.
    TooLarge = 4,
    /// Not stored: the store could not commit or the server is overloaded or
    /// shutting down. Retry later with the same ids.
    Unavailable = 5,
}

impl Status {
    pub fn from_u8(b: u8) -> Option<Status> {
        Some(match b {
            0 => Status::Stored,
            1 => Status::Duplicate,
            2 => Status::BadKey,
            3 => Status::Malformed,
            4 => Status::TooLarge,
            5 => Status::Unavailable,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Stored => "stored",
            Status::Duplicate => "duplicate",
            Status::BadKey => "bad_key",
            Status::Malformed => "malformed",
            Status::TooLarge => "too_large",
            Status::Unavailable => "unavailable",
        }
    }

    /// Whether the batch is safely stored (now or before).
    pub fn is_durable(self) -> bool {
        matches!(self, Status::Stored | Status::Duplicate)
    }
}

/// One ack reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub status: Status,
    pub batch_id: u64,
    pub first_seq: u64,
    pub count: u32,
}

impl Ack {
    /// An ack that carries no sequence range.
    pub fn bare(status: Status, batch_id: u64) -> Ack {
        Ack { status, batch_id, first_seq: 0, count: 0 }
    }

    pub fn encode(&self) -> [u8; ACK_LEN] {
        let mut out = [0u8; ACK_LEN];
        out[0] = ACK_MAGIC;
        out[1] = ACK_VERSION;
        out[2] = self.status as u8;
        out[4..8].copy_from_slice(&self.count.to_be_bytes());
        out[8..16].copy_from_slice(&self.batch_id.to_be_bytes());
        out[16..24].copy_from_slice(&self.first_seq.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8; ACK_LEN]) -> Result<Ack, AckError> {
        if bytes[0] != ACK_MAGIC {
            return Err(AckError::BadMagic { byte: bytes[0] });
        }
        if bytes[1] != ACK_VERSION {
            return Err(AckError::UnknownVersion { version: bytes[1] });
        }
        let status = Status::from_u8(bytes[2]).ok_or(AckError::UnknownStatus { status: bytes[2] })?;
        let word = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[r]);
            u64::from_be_bytes(b)
        };
        Ok(Ack {
            status,
            count: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            batch_id: word(8..16),
            first_seq: word(16..24),
        })
    }
}

/// A reply that is not a valid ack: the connection is out of step.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AckError {
    #[error("ack reply starts with {byte:#04x}, expected 0xad")]
    BadMagic { byte: u8 },
    #[error("unsupported ack version {version}")]
    UnknownVersion { version: u8 },
    #[error("unknown ack status {status}")]
    UnknownStatus { status: u8 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_status() {
        for s in 0..=5u8 {
            let ack =
                Ack { status: Status::from_u8(s).unwrap(), batch_id: u64::MAX - 3, first_seq: 1 << 40, count: 500 };
            assert_eq!(Ack::decode(&ack.encode()), Ok(ack));
        }
    }

    #[test]
    fn rejects_garbage() {
        let mut bytes = Ack::bare(Status::Stored, 1).encode();
        bytes[2] = 6;
        assert_eq!(Ack::decode(&bytes), Err(AckError::UnknownStatus { status: 6 }));
        bytes[0] = 0;
        assert_eq!(Ack::decode(&bytes), Err(AckError::BadMagic { byte: 0 }));
    }
}
