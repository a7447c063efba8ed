//! Deadlines a peer cannot renew by trickling.
//!
//! Between frames a connection may be quiet for `idle`. Once a frame (a
//! request head, a length header, a syslog message) has begun, it must be
//! complete by
//!
//! ```text
//!   frame start + frame_timeout + bytes of the frame received so far / min_rate
//! ```
//!
//! in the spirit of Apache's `mod_reqtimeout` `MinRate`: a large frame from
//! a slow but honest sender earns time with every byte at the minimum rate,
//! while one byte now and then earns nothing. A frame in progress may also
//! not be quiet for longer than `frame_timeout`, so a burst does not buy a
//! long stall (a stranger holding its bytes in the untrusted share). Waiting
//! for budget counts against the same deadline, and getting budget does not
//! reset any clock.

use std::time::Duration;

use tokio::time::Instant;

/// The timing rules of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Longest quiet time between frames, once the peer is trusted.
    pub idle: Duration,
    /// Longest quiet time of a peer not trusted yet (no valid key so far).
    pub untrusted_idle: Duration,
    /// Time for a frame's first part (header, request head) before bytes earn more.
    pub frame: Duration,
    /// Bytes per second a frame in progress must keep up, on average.
    pub min_rate: u64,
}

impl Timeouts {
    /// The time `bytes` earn at the minimum rate.
    pub fn earned(&self, bytes: u64) -> Duration {
        if self.min_rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(bytes as f64 / self.min_rate as f64)
    }

    /// The deadline of a frame that began at `start`, has `bytes` so far,
    /// and last received some at `last`.
    pub fn frame_deadline(&self, start: Instant, bytes: u64, last: Instant) -> Instant {
        (start + self.frame + self.earned(bytes)).min(last + self.frame)
    }
}

/// Which rule a deadline comes from (and so why a connection was cut).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    Idle,
    Frame,
}

/// The clock of one connection.
#[derive(Debug, Clone)]
pub struct FrameClock {
    t: Timeouts,
    last_byte: Instant,
    /// When the frame in progress began, and its bytes so far.
    frame: Option<(Instant, u64)>,
}

impl FrameClock {
    pub fn new(t: Timeouts) -> FrameClock {
        FrameClock { t, last_byte: Instant::now(), frame: None }
    }

    /// `n` bytes just arrived; they belong to a frame until [`Self::settle`] says otherwise.
    pub fn received(&mut self, n: usize) {
        let now = Instant::now();
        self.last_byte = now;
        match &mut self.frame {
            Some((_, bytes)) => *bytes += n as u64,
            None => self.frame = Some((now, n as u64)),
        }
    }

    /// After decoding: `completed` frames were finished, and `in_frame`
    /// tells whether a partial one (of `buffered` bytes) remains.
    pub fn settle(&mut self, completed: usize, in_frame: bool, buffered: usize) {
        if !in_frame {
            self.frame = None;
        } else if completed > 0 {
            self.frame = Some((Instant::now(), buffered as u64));
        }
    }

    /// The deadline in force now for a peer that is `trusted` or not, and
    /// the rule it comes from.
    pub fn deadline(&self, trusted: bool) -> (Instant, Clock) {
        let idle = if trusted { self.t.idle } else { self.t.untrusted_idle };
        match self.frame {
            Some((start, bytes)) => (self.t.frame_deadline(start, bytes, self.last_byte), Clock::Frame),
            None => (self.last_byte + idle, Clock::Idle),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        idle: Duration::from_secs(300),
        untrusted_idle: Duration::from_secs(10),
        frame: Duration::from_secs(10),
        min_rate: 1000,
    };

    #[tokio::test(start_paused = true)]
    async fn a_trickle_earns_nothing_and_a_steady_sender_earns_time() {
        let start = Instant::now();
        let mut c = FrameClock::new(T);
        assert_eq!(c.deadline(true), (start + T.idle, Clock::Idle));
        c.received(4);
        for _ in 0..4 {
            tokio::time::advance(Duration::from_secs(2)).await;
            c.received(1);
            c.settle(0, true, 5);
        }
        let (d, clock) = c.deadline(true);
        assert_eq!(clock, Clock::Frame);
        assert!(d < start + Duration::from_secs(11), "one byte per 2 s does not move the deadline");

        let mut steady = FrameClock::new(T);
        let begun = Instant::now();
        for _ in 0..60 {
            tokio::time::advance(Duration::from_secs(1)).await;
            steady.received(2000);
            steady.settle(0, true, 0);
            assert!(steady.deadline(true).0 > Instant::now(), "twice the minimum rate never runs out");
        }
        let _ = begun;
        assert_eq!(
            steady.deadline(true).0,
            Instant::now() + T.frame,
            "a steady sender is held only to the stall limit"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_does_not_buy_a_long_stall() {
        let mut c = FrameClock::new(T);
        c.received(1 << 20);
        c.settle(0, true, 1 << 20);
        assert_eq!(
            c.deadline(false),
            (Instant::now() + T.frame, Clock::Frame),
            "1 MiB earned 1000 s but may stall 10 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_frame_returns_to_the_idle_clock_from_the_last_byte() {
        let mut c = FrameClock::new(T);
        c.received(100);
        let last = Instant::now();
        c.settle(1, false, 0);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(c.deadline(true), (last + T.idle, Clock::Idle), "waiting does not restart the idle clock");
        assert_eq!(c.deadline(false), (last + T.untrusted_idle, Clock::Idle));
        c.received(10);
        c.settle(1, true, 3);
        assert_eq!(c.deadline(true), (Instant::now() + T.frame, Clock::Frame));
    }
}
