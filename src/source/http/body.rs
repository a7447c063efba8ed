//! Request bodies: read under the size limit, the pipeline's byte budget
//! and the minimum transfer rate (`net::http::BodyReader`), then
//! decompressed (`Content-Encoding: gzip`, `deflate` (zlib) or `zstd`) under the same limit,
//! so a small compressed body cannot expand past it (zip bombs stop at
//! `max_body_bytes + 1` bytes of output).
//!
//! Every byte held for a request is first covered by the pipeline's byte
//! budget ([`Budget`], the request's account): the wire body as it arrives
//! (never the `Content-Length` it claims), the decompressed body as it
//! grows, the decoded records. A request that cannot get room within
//! `busy_timeout` is answered 503 with `Retry-After`, so a full pipeline
//! pushes back on HTTP clients instead of growing memory.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, header};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::reply::Refused;
use crate::metrics::{Cut, SourceMetrics};
use crate::net::budget::Account;
use crate::net::deadline::Timeouts;
use crate::net::http::{BodyError, BodyReader};
use crate::pipeline::{Permit, Pipeline};

/// Budget is taken in steps of at least this much, to keep semaphore traffic low.
const BUDGET_STEP: usize = 64 << 10;
/// Decompressed output is produced (and covered by the budget) this much at a time.
const INFLATE_STEP: usize = 256 << 10;
/// Largest zstd window accepted (2^24 = 16 MiB): bounds decoder memory per request.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// Pipeline budget held by one request (whose key was verified: trusted).
pub struct Budget {
    account: Account,
    deadline: Instant,
    held: usize,
    /// The whole pipeline budget: more is never waited for (it would never come).
    total: usize,
}

impl Budget {
    /// `wait`: how long, in total, this request may wait for room.
    pub fn new(pipeline: &Pipeline, wait: Duration) -> Budget {
        let budget = pipeline.budget();
        Budget { account: Account::new(budget, true), deadline: Instant::now() + wait, held: 0, total: budget.total() }
    }

    /// Makes sure at least `bytes` are held, or the whole budget.
    pub async fn cover(&mut self, bytes: usize) -> Result<(), Refused> {
        let bytes = bytes.min(self.total);
        if bytes <= self.held {
            return Ok(());
        }
        let step = (bytes - self.held).max(BUDGET_STEP).min(self.total - self.held);
        self.account
            .charge(step, self.deadline)
            .await
            .map_err(|_| Refused::unavailable("the pipeline is full; retry later"))?;
        self.held += step;
        Ok(())
    }

    /// What is held, to travel with the batch.
    pub async fn take_permit(&mut self) -> Result<Permit, Refused> {
        self.held = 0;
        self.account.take(self.deadline).await.map_err(|_| Refused::unavailable("the pipeline is full; retry later"))
    }
}

/// Reads the whole body: 413 before reading when `Content-Length` is over
/// `limit`, else as soon as the limit is passed; 408 when it does not arrive
/// by its deadline (`[pipeline] frame_timeout`, plus what its bytes earn at
/// `min_transfer_rate`).
pub async fn read(
    body: Incoming,
    headers: &HeaderMap,
    limit: usize,
    timeouts: Timeouts,
    budget: &mut Budget,
) -> Result<Bytes, Refused> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(over_limit(limit, "body"));
    }
    let mut reader = BodyReader::new(body, timeouts);
    let mut buf = BytesMut::new();
    loop {
        let data = match reader.next().await {
            Ok(Some(data)) => data,
            Ok(None) => return Ok(buf.freeze()),
            Err(BodyError::TooSlow) => return Err(too_slow()),
            Err(e) => return Err(Refused::malformed("bad_body", e.to_string())),
        };
        let len = buf.len() + data.len();
        if len > limit {
            return Err(over_limit(limit, "body"));
        }
        budget.cover(len).await?;
        buf.extend_from_slice(&data);
    }
}

/// Reads and decompresses a request's body under `limit` ([`read`],
/// [`decompress`]), counting its wire bytes and a cut for a body too slow.
pub async fn receive(
    body: Incoming,
    headers: &HeaderMap,
    limit: usize,
    timeouts: Timeouts,
    budget: &mut Budget,
    metrics: &SourceMetrics,
) -> Result<Bytes, Refused> {
    let encoding = encoding(headers)?;
    let wire = read(body, headers, limit, timeouts, budget).await.inspect_err(|r| {
        if r.status == StatusCode::REQUEST_TIMEOUT {
            metrics.cut(Cut::SlowFrame);
        }
    })?;
    metrics.bytes_received.fetch_add(wire.len() as u64, Ordering::Relaxed);
    decompress(wire, encoding, limit, budget).await
}

/// 408: the body did not keep the minimum rate.
pub fn too_slow() -> Refused {
    Refused::new(StatusCode::REQUEST_TIMEOUT, "timeout", "the body did not arrive at the minimum transfer rate")
}

fn over_limit(limit: usize, what: &str) -> Refused {
    Refused::too_large("body_too_large", format!("the {what} is over max_body_bytes ({limit} bytes)"))
}

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    /// HTTP's `deflate`: a zlib stream (RFC 1950).
    Deflate,
    Zstd,
}

/// The body's `Content-Encoding`; 415 for anything else than one of ours.
pub fn encoding(headers: &HeaderMap) -> Result<Encoding, Refused> {
    let mut found = Encoding::Identity;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        for name in value.to_str().unwrap_or("?").split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let this = match name.to_ascii_lowercase().as_str() {
                "identity" => continue,
                "gzip" | "x-gzip" => Encoding::Gzip,
                "deflate" => Encoding::Deflate,
                "zstd" => Encoding::Zstd,
                _ => return Err(unsupported(name)),
            };
            if found != Encoding::Identity {
                return Err(unsupported("more than one encoding"));
            }
            found = this;
        }
    }
    Ok(found)
}

fn unsupported(what: &str) -> Refused {
    let message = format!("Content-Encoding `{what}` is not supported (use gzip, deflate or zstd)");
    Refused::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding", message)
        .counted(crate::metrics::Refusal::Malformed)
}

/// Decompresses `body` into at most `limit` bytes, covering them by the budget as they grow.
pub async fn decompress(body: Bytes, encoding: Encoding, limit: usize, budget: &mut Budget) -> Result<Bytes, Refused> {
    let bad = |e: std::io::Error| Refused::malformed("bad_encoding", format!("cannot decompress the body: {e}"));
    match encoding {
        Encoding::Identity => Ok(body),
        Encoding::Gzip => inflate(flate2::read::MultiGzDecoder::new(&body[..]), limit, budget).await,
        Encoding::Deflate => inflate(flate2::read::ZlibDecoder::new(&body[..]), limit, budget).await,
        Encoding::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(&body[..]).map_err(bad)?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(bad)?;
            inflate(decoder, limit, budget).await
        }
    }
}

async fn inflate(mut reader: impl Read, limit: usize, budget: &mut Budget) -> Result<Bytes, Refused> {
    let mut out = Vec::new();
    loop {
        let start = out.len();
        // One byte past the limit shows that the output is over it.
        let room = INFLATE_STEP.min(limit + 1 - start);
        if room == 0 {
            return Err(over_limit(limit, "decompressed body"));
        }
        budget.cover(start + room).await?;
        out.resize(start + room, 0);
        let n = read_full(&mut reader, &mut out[start..])
            .map_err(|e| Refused::malformed("bad_encoding", format!("cannot decompress the body: {e}")))?;
        out.truncate(start + n);
        if n < room {
            return Ok(Bytes::from(out));
        }
    }
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        Bytes::from(enc.finish().unwrap())
    }

    #[tokio::test]
    async fn gzip_and_zstd_round_trip_within_the_limit() {
        let (pipeline, _rx) = Pipeline::new(64 << 20);
        let mut budget = Budget::new(&pipeline, Duration::from_millis(10));
        let data = b"{\"event\":\"a\"}\n".repeat(100_000);
        let z = Bytes::from(zstd::encode_all(&data[..], 3).unwrap());
        assert_eq!(decompress(gzip(&data), Encoding::Gzip, data.len(), &mut budget).await.unwrap(), data);
        assert_eq!(decompress(z, Encoding::Zstd, data.len(), &mut budget).await.unwrap(), data);
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&data).unwrap();
        let zlib = Bytes::from(enc.finish().unwrap());
        assert_eq!(decompress(zlib, Encoding::Deflate, data.len(), &mut budget).await.unwrap(), data);
    }

    #[tokio::test]
    async fn a_bomb_stops_one_byte_past_the_limit() {
        let (pipeline, _rx) = Pipeline::new(64 << 20);
        let mut budget = Budget::new(&pipeline, Duration::from_millis(10));
        let zeros = vec![0u8; 8 << 20];
        let small = gzip(&zeros);
        assert!(small.len() < 64 << 10);
        let err = decompress(small, Encoding::Gzip, 1 << 20, &mut budget).await.unwrap_err();
        assert_eq!((err.status, err.code), (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"));
        let err = decompress(Bytes::from_static(b"not gzip"), Encoding::Gzip, 100, &mut budget).await.unwrap_err();
        assert_eq!(err.code, "bad_encoding");
        let err = decompress(Bytes::from_static(b"not zlib"), Encoding::Deflate, 100, &mut budget).await.unwrap_err();
        assert_eq!(err.code, "bad_encoding");
    }

    #[tokio::test]
    async fn the_budget_refuses_after_waiting() {
        let (pipeline, _rx) = Pipeline::new(256 << 10);
        let mut first = Budget::new(&pipeline, Duration::from_millis(10));
        first.cover(256 << 10).await.unwrap();
        let mut second = Budget::new(&pipeline, Duration::from_millis(20));
        let err = second.cover(1).await.unwrap_err();
        assert_eq!((err.status, err.retry_after), (StatusCode::SERVICE_UNAVAILABLE, Some(1)));
        drop(first);
        let mut third = Budget::new(&pipeline, Duration::from_millis(20));
        third.cover(1).await.unwrap();
        assert!(third.take_permit().await.unwrap().bytes() >= 1);
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_is_the_whole_budget() {
        let (pipeline, _rx) = Pipeline::new(256 << 10);
        let mut budget = Budget::new(&pipeline, Duration::from_millis(10));
        budget.cover(100 << 10).await.unwrap();
        // Waiting for more than exists would only end in a 503.
        budget.cover(1 << 30).await.unwrap();
        assert_eq!(budget.take_permit().await.unwrap().bytes(), 256 << 10);
    }

    #[test]
    fn encodings() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::CONTENT_ENCODING, v.parse().unwrap());
            m
        };
        assert_eq!(encoding(&HeaderMap::new()), Ok(Encoding::Identity));
        assert_eq!(encoding(&h("GZIP")), Ok(Encoding::Gzip));
        assert_eq!(encoding(&h("identity, zstd")), Ok(Encoding::Zstd));
        assert_eq!(encoding(&h("deflate")), Ok(Encoding::Deflate));
        assert_eq!(encoding(&h("br")).unwrap_err().status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(encoding(&h("gzip, zstd")).unwrap_err().code, "unsupported_encoding");
    }
}
