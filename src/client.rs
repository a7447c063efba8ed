//! A Rust client for sluice's acknowledged raw TCP protocol (see
//! [`crate::codec::frame`] for the frame and [`crate::codec::ack`] for the
//! reply), used by the integration tests and `sluice bench tcp`.
//!
//! ```text
//!  AckedClient ── send(id 1) send(id 2) … flush() ──►  raw TCP source
//!              ◄── recv_ack() = ack 1, ack 2, …     ──  (in sending order)
//! ```
//!
//! Sending is pipelined: [`AckedClient::send`] only buffers a frame, so many
//! batches can be in flight before the first ack arrives. The server answers
//! every acked frame exactly once, in the order the frames were sent, so the
//! client keeps the ids it is waiting for in a queue and treats an ack for
//! any other id as the connection being out of step.
//!
//! Retrying: an ack can be lost with its connection. To retry without
//! storing twice, reconnect as the same producer
//! ([`AckedClient::with_producer`]) and resend the unacknowledged batches with
//! the same batch ids; the server answers `duplicate` for those it already
//! committed.

use std::collections::VecDeque;
use std::io;

use tell_encoding::{BatchParams, DEFAULT_VERSION, EventParams, SchemaType, encode_batch_into, encode_event_data_into};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;

use crate::codec::ack::{ACK_LEN, Ack, AckError};
use crate::codec::frame::{ACKED_HEADER_LEN, AckedHeader, HARD_MAX_FRAME, encode_acked};

/// Size of the write buffer. Batches larger than this bypass it.
const WRITE_BUFFER: usize = 64 * 1024;

/// What can go wrong talking to the server.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The server's reply is not a valid ack; the connection is unusable.
    #[error("invalid ack from server: {0}")]
    Protocol(#[from] AckError),
    /// An ack named a batch other than the oldest one outstanding.
    #[error("ack for batch {got} while waiting for batch {expected}")]
    OutOfOrder { expected: u64, got: u64 },
    /// The server closed the connection with acks still outstanding.
    #[error("connection closed with {outstanding} ack(s) outstanding")]
    Closed { outstanding: usize },
    /// `recv_ack` was called with nothing sent that still awaits an ack.
    #[error("no acked batch is outstanding")]
    NothingOutstanding,
    /// `send_and_wait` was called while pipelined sends still await acks.
    #[error("{outstanding} earlier batch(es) still await acks")]
    Pipelined { outstanding: usize },
    /// The batch is longer than any frame can be.
    #[error("batch of {len} bytes is over the frame limit of {limit} bytes")]
    TooLarge { len: usize, limit: u32 },
    /// A streaming key that is not 32 hex characters.
    #[error("streaming key must be 32 hex characters")]
    BadKey,
}

/// A connection to a raw TCP source speaking the acked protocol.
/// The two halves of a connection, plain or TLS.
type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

pub struct AckedClient {
    reader: ReadHalf,
    writer: BufWriter<WriteHalf>,
    producer: [u8; 16],
    /// Batch ids sent and not yet acknowledged, oldest first.
    outstanding: VecDeque<u64>,
    /// Bytes of a partly read ack. Kept here, not on the stack, so that
    /// `recv_ack` can be cancelled (e.g. in `select!`) without losing them.
    ack_buf: [u8; ACK_LEN],
    ack_filled: usize,
    /// Frames written to the buffer since the last flush.
    dirty: bool,
}

impl std::fmt::Debug for AckedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckedClient").field("outstanding", &self.outstanding.len()).finish_non_exhaustive()
    }
}

impl AckedClient {
    /// Connects with a fresh random producer id.
    pub async fn connect(addr: &str) -> io::Result<Self> {
        Self::with_producer(addr, rand::random()).await
    }

    /// Connects as `producer`, e.g. to resend unacknowledged batches after a
    /// reconnect so that the server can recognise them as duplicates.
    pub async fn with_producer(addr: &str, producer: [u8; 16]) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        Ok(Self::from_stream(stream, producer))
    }

    /// Connects over TLS (`[sources.tcp.tls]`), trusting what `tls` trusts.
    pub async fn connect_tls(addr: &str, tls: &crate::net::tls::ClientTls) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        // Acks are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let (reader, writer) = tokio::io::split(tls.connect(stream).await?);
        Ok(Self::from_halves(Box::new(reader), Box::new(writer), rand::random()))
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: TcpStream, producer: [u8; 16]) -> Self {
        // Acks are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        Self::from_halves(Box::new(reader), Box::new(writer), producer)
    }

    fn from_halves(reader: ReadHalf, writer: WriteHalf, producer: [u8; 16]) -> Self {
        AckedClient {
            reader,
            writer: BufWriter::with_capacity(WRITE_BUFFER, writer),
            producer,
            outstanding: VecDeque::new(),
            ack_buf: [0; ACK_LEN],
            ack_filled: 0,
            dirty: false,
        }
    }

    pub fn producer(&self) -> [u8; 16] {
        self.producer
    }

    /// Number of acked frames sent whose ack has not been received yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Buffers an acked frame holding `batch` (a Tell FlatBuffers `Batch`).
    /// Nothing may reach the server before [`flush`](Self::flush) (or
    /// `recv_ack`, which flushes first).
    pub async fn send(&mut self, batch_id: u64, batch: &[u8]) -> Result<(), ClientError> {
        check_len(batch)?;
        // The header alone, then the batch, so a large batch is not copied:
        // encode_acked writes the length of the empty batch last; patch it.
        let mut head = Vec::with_capacity(ACKED_HEADER_LEN);
        encode_acked(&AckedHeader { producer: self.producer, batch_id }, &[], &mut head);
        head[ACKED_HEADER_LEN - 4..].copy_from_slice(&(batch.len() as u32).to_be_bytes());
        self.write_frame(&head, batch).await?;
        self.outstanding.push_back(batch_id);
        Ok(())
    }

    /// Buffers a plain Tell frame, as the Tell SDK sends it. The server never
    /// answers these.
    pub async fn send_tell(&mut self, batch: &[u8]) -> Result<(), ClientError> {
        check_len(batch)?;
        // The Tell header is the bare length (see encode_tell).
        self.write_frame(&(batch.len() as u32).to_be_bytes(), batch).await
    }

    /// A frame's header and the start of its batch in one write, the rest
    /// after it: a server judges a large first frame by the key near the
    /// batch's start, and must not see the header without it.
    async fn write_frame(&mut self, head: &[u8], batch: &[u8]) -> Result<(), ClientError> {
        let (start, rest) = batch.split_at(batch.len().min(crate::codec::tell::KEY_PREFIX_BYTES));
        let mut first = Vec::with_capacity(head.len() + start.len());
        first.extend_from_slice(head);
        first.extend_from_slice(start);
        self.dirty = true;
        self.write(&first).await?;
        self.write(rest).await
    }

    /// Writes out everything buffered.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if let Err(e) = self.writer.flush().await {
            return Err(self.write_failed(e));
        }
        self.dirty = false;
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        match self.writer.write_all(bytes).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.write_failed(e)),
        }
    }

    /// After a write error nothing more can be sent, but the server may have
    /// answered what it got before: leave the acks readable, with nothing
    /// left to flush first.
    fn write_failed(&mut self, e: io::Error) -> ClientError {
        self.dirty = false;
        ClientError::Io(e)
    }

    /// Reads the next ack: the one for the oldest outstanding batch. Flushes
    /// buffered frames first, so a lone `send` + `recv_ack` cannot deadlock.
    ///
    /// Cancel-safe once flushed: dropping the future mid-ack keeps the bytes
    /// read so far, and the next call continues from them.
    pub async fn recv_ack(&mut self) -> Result<Ack, ClientError> {
        let Some(&expected) = self.outstanding.front() else {
            return Err(ClientError::NothingOutstanding);
        };
        if self.dirty {
            self.flush().await?;
        }
        while self.ack_filled < ACK_LEN {
            let n = self.reader.read(&mut self.ack_buf[self.ack_filled..]).await?;
            if n == 0 {
                return Err(ClientError::Closed { outstanding: self.outstanding.len() });
            }
            self.ack_filled += n;
        }
        self.ack_filled = 0;
        let ack = Ack::decode(&self.ack_buf)?;
        if ack.batch_id != expected {
            return Err(ClientError::OutOfOrder { expected, got: ack.batch_id });
        }
        self.outstanding.pop_front();
        Ok(ack)
    }

    /// Sends one batch and waits for its ack. Only when nothing else is
    /// outstanding, so the ack returned is always this batch's.
    pub async fn send_and_wait(&mut self, batch_id: u64, batch: &[u8]) -> Result<Ack, ClientError> {
        if !self.outstanding.is_empty() {
            return Err(ClientError::Pipelined { outstanding: self.outstanding.len() });
        }
        self.send(batch_id, batch).await?;
        self.recv_ack().await
    }

    /// Flushes and half-closes the connection: the server sees EOF after the
    /// last frame, and outstanding acks can still be read.
    pub async fn shutdown(&mut self) -> Result<(), ClientError> {
        self.writer.shutdown().await?;
        self.dirty = false;
        Ok(())
    }
}

fn check_len(batch: &[u8]) -> Result<(), ClientError> {
    if batch.len() > HARD_MAX_FRAME as usize {
        return Err(ClientError::TooLarge { len: batch.len(), limit: HARD_MAX_FRAME });
    }
    Ok(())
}

/// Parses a streaming key as shown by `sluice apikeys create`.
pub fn parse_key(key: &str) -> Result<[u8; 16], ClientError> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(key.trim(), &mut out).map_err(|_| ClientError::BadKey)?;
    Ok(out)
}

/// Builds a Tell FlatBuffers `Batch` of events with the same `tell-encoding`
/// functions the Tell SDK uses (a Tell batch id of 0 leaves the field out).
pub fn tell_batch(key: &[u8; 16], batch_id: u64, events: &[EventParams<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    tell_batch_into(&mut out, &mut Vec::new(), key, batch_id, events);
    out
}

/// [`tell_batch`] into caller-owned buffers: appends the batch to `out`, using
/// `scratch` (cleared first) for the event data. Reusing both avoids
/// allocating per batch.
pub fn tell_batch_into(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    key: &[u8; 16],
    batch_id: u64,
    events: &[EventParams<'_>],
) {
    scratch.clear();
    let data = encode_event_data_into(scratch, events);
    let params = BatchParams {
        api_key: key,
        schema_type: SchemaType::Event,
        version: DEFAULT_VERSION,
        batch_id,
        data: &scratch[data],
    };
    encode_batch_into(out, &params);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ack::Status;
    use crate::codec::frame::{Frame, FrameDecoder};
    use bytes::BytesMut;
    use std::time::Duration;
    use tell_encoding::EventType;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;
    use tokio_util::codec::Decoder;

    /// How the fake server answers each acked frame.
    #[derive(Clone, Copy)]
    enum Script {
        /// `stored`, with a running sequence number.
        Store,
        /// Reads `n` acked frames, answers them, then closes.
        CloseAfter(usize),
        /// Answers with an ack naming another batch.
        WrongId,
        /// Answers with 24 bytes that are not an ack.
        Garbage,
        /// Sends each ack in two pieces with a pause in between.
        Slow,
    }

    /// A fake raw TCP source: decodes frames with the real decoder, reports
    /// each one on the channel and answers acked frames per `script`.
    async fn fake_server(script: Script) -> (String, mpsc::UnboundedReceiver<Frame>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (mut read, mut write) = stream.into_split();
            let (mut decoder, mut buf) = (FrameDecoder::new(1 << 20), BytesMut::new());
            let (mut seq, mut answered) = (1u64, 0usize);
            loop {
                let frame = match decoder.decode(&mut buf).unwrap() {
                    Some(frame) => frame,
                    None if read.read_buf(&mut buf).await.unwrap() == 0 => return,
                    None => continue,
                };
                let _ = tx.send(frame.clone());
                let Frame::Acked { header, .. } = frame else {
                    continue;
                };
                let ack = Ack { status: Status::Stored, batch_id: header.batch_id, first_seq: seq, count: 1 };
                seq += 1;
                let bytes = match script {
                    Script::WrongId => Ack { batch_id: header.batch_id + 100, ..ack }.encode(),
                    Script::Garbage => [0x55; ACK_LEN],
                    _ => ack.encode(),
                };
                if let Script::Slow = script {
                    write.write_all(&bytes[..10]).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    write.write_all(&bytes[10..]).await.unwrap();
                } else {
                    write.write_all(&bytes).await.unwrap();
                }
                answered += 1;
                if let Script::CloseAfter(n) = script
                    && answered == n
                {
                    return;
                }
            }
        });
        (addr, rx)
    }

    fn sample_batch(n: u64) -> Vec<u8> {
        let device = [n as u8; 16];
        let payload = format!("{{\"n\":{n}}}");
        let events = [EventParams {
            event_type: EventType::Track,
            timestamp: 1_700_000_000_000 + n,
            service: Some("test"),
            device_id: Some(&device),
            session_id: None,
            event_name: Some("Page Viewed"),
            payload: Some(payload.as_bytes()),
        }];
        tell_batch(&[0xAB; 16], n, &events)
    }

    #[tokio::test]
    async fn pipelined_acks_come_back_in_order() {
        let (addr, mut frames) = fake_server(Script::Store).await;
        let mut client = AckedClient::connect(&addr).await.unwrap();
        for id in 1..=5 {
            client.send(id, &sample_batch(id)).await.unwrap();
        }
        assert_eq!(client.outstanding(), 5);
        client.flush().await.unwrap();
        for id in 1..=5 {
            let ack = client.recv_ack().await.unwrap();
            assert_eq!((ack.status, ack.batch_id, ack.first_seq), (Status::Stored, id, id));
        }
        assert_eq!(client.outstanding(), 0);
        assert!(matches!(client.recv_ack().await, Err(ClientError::NothingOutstanding)));
        for id in 1..=5 {
            let Some(Frame::Acked { header, batch }) = frames.recv().await else { panic!("expected an acked frame") };
            assert_eq!(header, AckedHeader { producer: client.producer(), batch_id: id });
            assert_eq!(&batch[..], &sample_batch(id)[..]);
        }
    }

    #[tokio::test]
    async fn send_and_wait_and_tell_frames_share_a_connection() {
        let (addr, mut frames) = fake_server(Script::Store).await;
        let producer = [3u8; 16];
        let mut client = AckedClient::with_producer(&addr, producer).await.unwrap();
        client.send_tell(&sample_batch(9)).await.unwrap();
        let ack = client.send_and_wait(42, &sample_batch(42)).await.unwrap();
        assert_eq!((ack.status, ack.batch_id), (Status::Stored, 42));
        assert_eq!(frames.recv().await, Some(Frame::Tell { batch: sample_batch(9).into() }));
        let Some(Frame::Acked { header, .. }) = frames.recv().await else { panic!("expected an acked frame") };
        assert_eq!(header, AckedHeader { producer, batch_id: 42 });
    }

    #[tokio::test]
    async fn send_and_wait_refuses_while_pipelined() {
        let (addr, _frames) = fake_server(Script::Store).await;
        let mut client = AckedClient::connect(&addr).await.unwrap();
        client.send(1, &sample_batch(1)).await.unwrap();
        let err = client.send_and_wait(2, &sample_batch(2)).await.unwrap_err();
        assert!(matches!(err, ClientError::Pipelined { outstanding: 1 }));
    }

    #[tokio::test]
    async fn eof_with_acks_outstanding_is_closed() {
        let (addr, _frames) = fake_server(Script::CloseAfter(2)).await;
        let mut client = AckedClient::connect(&addr).await.unwrap();
        for id in 1..=4 {
            client.send(id, &sample_batch(id)).await.unwrap();
        }
        assert_eq!(client.recv_ack().await.unwrap().batch_id, 1);
        assert_eq!(client.recv_ack().await.unwrap().batch_id, 2);
        let err = client.recv_ack().await.unwrap_err();
        assert!(matches!(err, ClientError::Closed { outstanding: 2 }), "{err:?}");
    }

    #[tokio::test]
    async fn an_ack_for_another_batch_is_out_of_order() {
        let (addr, _frames) = fake_server(Script::WrongId).await;
        let mut client = AckedClient::connect(&addr).await.unwrap();
        client.send(7, &sample_batch(7)).await.unwrap();
        let err = client.recv_ack().await.unwrap_err();
        assert!(matches!(err, ClientError::OutOfOrder { expected: 7, got: 107 }), "{err:?}");
    }

    #[tokio::test]
    async fn garbage_reply_is_a_protocol_error() {
        let (addr, _frames) = fake_server(Script::Garbage).await;
        let mut client = AckedClient::connect(&addr).await.unwrap();
        let err = client.send_and_wait(1, &sample_batch(1)).await.unwrap_err();
        assert!(matches!(err, ClientError::Protocol(AckError::BadMagic { byte: 0x55 })), "{err:?}");
    }

    #[tokio::test]
    async fn recv_ack_survives_cancellation_mid_ack() {
        let (addr, _frames) = fake_server(Script::Slow).await;
        let mut client = AckedClient::connect(&addr).await.unwrap();
        client.send(1, &sample_batch(1)).await.unwrap();
        client.flush().await.unwrap();
        // Cancelled after the first 10 bytes arrived, before the rest.
        let first = tokio::time::timeout(Duration::from_millis(20), client.recv_ack()).await;
        assert!(first.is_err(), "the ack cannot be complete yet");
        let ack = client.recv_ack().await.unwrap();
        assert_eq!((ack.status, ack.batch_id), (Status::Stored, 1));
    }

    #[tokio::test]
    async fn connect_refused_is_an_io_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        assert!(AckedClient::connect(&addr).await.is_err());
    }

    #[test]
    fn keys_parse_as_32_hex_chars() {
        assert_eq!(parse_key("000102030405060708090a0b0c0d0e0f").unwrap()[15], 15);
        assert!(matches!(parse_key("00"), Err(ClientError::BadKey)));
        assert!(matches!(parse_key("zz0102030405060708090a0b0c0d0e0f"), Err(ClientError::BadKey)));
    }
}
