//! Per-subscriber rewriting of sequence numbers and timestamps.
//!
//! A subscriber sees one continuous RTP stream per slot even when the packets behind
//! it change source (the publisher reconnected, or the slot now carries another
//! track). At each change of source the next outgoing sequence number follows the
//! last one sent, and the timestamp advances by the wall-clock time since the last
//! packet, so the receiver's jitter buffer sees neither a jump nor a gap.

use std::time::Instant;

#[derive(Debug)]
pub struct Rewriter {
    /// Identity of the current source (the caller combines track and SSRC).
    source: Option<u128>,
    /// Added to an incoming extended sequence number to give the outgoing one.
    seq_offset: i64,
    /// Packets of the current source older than this predate the switch: dropped.
    first_in_seq: u64,
    ts_offset: u32,
    start_seq: u64,
    last_out_seq: Option<u64>,
    last_out_ts: u32,
    last_out_at: Option<Instant>,
}

impl Rewriter {
    /// `start_seq` is the first outgoing sequence number; keep it below 2^15 so the
    /// receiver's rollover counter starts at zero.
    pub fn new(start_seq: u16) -> Self {
        Rewriter {
            source: None,
            seq_offset: 0,
            first_in_seq: 0,
            ts_offset: 0,
            start_seq: u64::from(start_seq),
            last_out_seq: None,
            last_out_ts: 0,
            last_out_at: None,
        }
    }

    /// Whether `source` is the source currently being forwarded.
    pub fn is_current(&self, source: u128) -> bool {
        self.source == Some(source)
    }

    /// Map one incoming packet to its outgoing (extended sequence number, timestamp).
    /// `None` means the packet belongs to the current source but predates the switch
    /// to it (a late retransmission), and must not be sent.
    pub fn rewrite(
        &mut self,
        source: u128,
        seq: u64,
        ts: u32,
        now: Instant,
        clock_rate: u32,
    ) -> Option<(u64, u32)> {
        if self.source != Some(source) {
            self.switch_to(source, seq, ts, now, clock_rate);
        }
        if seq < self.first_in_seq {
            return None;
        }
        let out_seq = (seq as i64).wrapping_add(self.seq_offset) as u64;
        let out_ts = ts.wrapping_add(self.ts_offset);
        if self.last_out_seq.is_none_or(|last| out_seq > last) {
            self.last_out_seq = Some(out_seq);
            self.last_out_ts = out_ts;
            self.last_out_at = Some(now);
        }
        Some((out_seq, out_ts))
    }

    fn switch_to(&mut self, source: u128, seq: u64, ts: u32, now: Instant, clock_rate: u32) {
        let next_seq = self.last_out_seq.map_or(self.start_seq, |last| last + 1);
        self.seq_offset = next_seq as i64 - seq as i64;
        self.first_in_seq = seq;
        let next_ts = match self.last_out_at {
            Some(at) => {
                let ticks = now.saturating_duration_since(at).as_micros() * u128::from(clock_rate)
                    / 1_000_000;
                self.last_out_ts.wrapping_add((ticks as u32).max(1))
            }
            None => ts,
        };
        self.ts_offset = next_ts.wrapping_sub(ts);
        self.source = Some(source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn first_source_starts_at_start_seq_and_keeps_timestamps() {
        let now = Instant::now();
        let mut r = Rewriter::new(100);
        assert_eq!(r.rewrite(1, 5000, 9000, now, 90_000), Some((100, 9000)));
        assert_eq!(r.rewrite(1, 5001, 9000, now, 90_000), Some((101, 9000)));
        assert_eq!(r.rewrite(1, 5003, 12000, now, 90_000), Some((103, 12000)));
        // Reordered packet still maps through the same offset.
        assert_eq!(r.rewrite(1, 5002, 9000, now, 90_000), Some((102, 9000)));
    }

    #[test]
    fn switching_source_continues_sequence_and_advances_time() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(10);
        r.rewrite(1, 70_000, 1_000_000, t0, 90_000);
        r.rewrite(1, 70_001, 1_003_000, t0, 90_000);
        let t1 = t0 + Duration::from_millis(500);
        let (seq, ts) = r.rewrite(2, 3, 42, t1, 90_000).unwrap();
        assert_eq!(seq, 12);
        assert_eq!(ts, 1_003_000 + 45_000);
        // Packets from before the switch point of the new source are dropped.
        assert_eq!(r.rewrite(2, 2, 0, t1, 90_000), None);
        assert_eq!(r.rewrite(2, 4, 42, t1, 90_000), Some((13, 1_048_000)));
    }

    #[test]
    fn timestamp_wraps_without_panicking() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(0);
        r.rewrite(1, 1, u32::MAX - 10, t0, 48_000);
        let (_, ts) = r
            .rewrite(2, 1, 0, t0 + Duration::from_millis(20), 48_000)
            .unwrap();
        assert_eq!(ts, (u32::MAX - 10).wrapping_add(960));
    }

    proptest! {
        /// Whatever the sources and their sequence numbers, consecutive input within a
        /// source gives consecutive output across every switch.
        #[test]
        fn output_is_gapless_across_switches(
            runs in proptest::collection::vec((any::<u32>(), 0u64..1_000_000, 1usize..50), 1..20),
            start in 0u16..32768,
        ) {
            let now = Instant::now();
            let mut r = Rewriter::new(start);
            let mut expected = u64::from(start);
            for (i, (ts, first, len)) in runs.into_iter().enumerate() {
                for k in 0..len as u64 {
                    let (seq, _) = r.rewrite(i as u128, first + k, ts, now, 90_000).unwrap();
                    prop_assert_eq!(seq, expected);
                    expected += 1;
                }
            }
        }
    }
}
