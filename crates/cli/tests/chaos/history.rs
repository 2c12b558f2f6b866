//! What a fault-injection run saw, and the checker's verdict on it.
//!
//! A run records a [`History`]: every record a writer sent (a writer is one idempotent rdkafka
//! producer instance; each record's value names its writer and the writer's sequence number, a
//! [`Tag`]), every acknowledgement (partition, offset) and every failure, everything the live
//! readers read (partition, offset, value), the final read of every partition from offset 0 to
//! its high watermark after the faults were healed, and what each returning broker served when
//! it was made the leader again. [`analyze`] turns it into [`Counts`]; every anomaly count must
//! be zero:
//!
//! - **lost**: acknowledged, and absent from the final read;
//! - **moved**: acknowledged at one offset, found (only) at another — the log was rewritten
//!   (librdkafka acknowledges some records without an offset, see [`analyze`]: those are
//!   checked for loss only);
//! - **duplicates**: copies of a value beyond the first in the final read (idempotence broken);
//! - **reordered**: records of one writer in one partition whose sequence number is lower than
//!   one before them in offset order;
//! - **gaps**: offsets in `[0, high watermark)` with no record in the final read. Offsets are
//!   dense here: the topic is not compacted (compaction leaves gaps where it removed records),
//!   nothing is deleted (retention or DeleteRecords would move the log start past 0), and
//!   idempotent producers write no control batches (a transaction's commit or abort marker takes
//!   an offset that a consumer never sees, and read_committed also skips aborted records);
//! - **vanished**: a (partition, offset) a live reader read that the final read does not have;
//! - **changed**: a (partition, offset) a live reader read whose final value differs — together
//!   with vanished: a read past the high watermark, or a committed record rewritten;
//! - **unexpected**: a value in the final read that no writer sent;
//! - **unreadable**: partitions the final read could not read to their high watermark;
//! - **returning missing**: records of the final read that a returning broker, made the leader
//!   again, did not serve identically at the same offset (or records it served beyond them);
//! - **returning unverified**: partitions for which a returning broker could not be made the
//!   leader (it was not back in the ISR), so its copy could not be read.
//!
//! Failed sends are indeterminate (a timed-out record may have been written): they may or may
//! not be in the final read, and are reported but never counted as anomalies.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// How many examples of each anomaly a report shows.
const EXAMPLES: usize = 5;

/// A record's identity: the writer that sent it and that writer's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    pub writer: u32,
    pub seq: u64,
}

impl Tag {
    /// The record value for this tag: `w<writer>-s<seq>` then `filler` bytes of padding.
    pub fn encode(self, filler: usize) -> Vec<u8> {
        let mut value = format!("w{}-s{}|", self.writer, self.seq).into_bytes();
        value.resize(value.len() + filler, b'.');
        value
    }

    /// The tag of a value made by [`Tag::encode`]; `None` for anything else.
    pub fn decode(value: &[u8]) -> Option<Tag> {
        let end = value.iter().position(|b| *b == b'|')?;
        let text = std::str::from_utf8(&value[..end]).ok()?;
        let (writer, seq) = text.strip_prefix('w')?.split_once("-s")?;
        Some(Tag {
            writer: writer.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}-s{}", self.writer, self.seq)
    }
}

/// An acknowledged record.
#[derive(Clone, Debug)]
pub struct Ack {
    pub tag: Tag,
    pub partition: i32,
    pub offset: i64,
}

/// A record whose send failed (its fate is unknown).
#[derive(Clone, Debug)]
pub struct Failure {
    pub tag: Tag,
    pub error: String,
}

/// A record a live reader read.
#[derive(Clone, Debug)]
pub struct Observed {
    pub partition: i32,
    pub offset: i64,
    pub value: Vec<u8>,
}

/// One partition read from offset 0 up to its high watermark.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartitionRead {
    /// The high watermark the read went up to.
    pub high: i64,
    /// (offset, value) in the order read.
    pub records: Vec<(i64, Vec<u8>)>,
}

/// What a returning broker served once it led the partitions it replicates again: `None` for a
/// partition it could not be made the leader of.
#[derive(Clone, Debug)]
pub struct BrokerRead {
    pub broker: i32,
    pub partitions: BTreeMap<i32, Option<PartitionRead>>,
}

/// Everything a run recorded.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Every tag handed to a producer.
    pub sent: HashSet<Tag>,
    pub acked: Vec<Ack>,
    pub failed: Vec<Failure>,
    pub observed: Vec<Observed>,
    /// The final read; `None` for a partition that could not be read.
    pub final_read: BTreeMap<i32, Option<PartitionRead>>,
    pub returning: Vec<BrokerRead>,
}

/// The checker's verdict: context figures, then anomalies (each must be zero), each anomaly with
/// a few examples.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub sent: usize,
    pub acknowledged: usize,
    pub failed: usize,
    pub failed_but_present: usize,
    /// Acknowledged without an offset (see [`analyze`]); checked for loss only.
    pub acked_without_offset: usize,
    pub observed: usize,
    pub final_records: usize,
    pub returning_checked: usize,
    pub lost: usize,
    pub moved: usize,
    pub duplicates: usize,
    pub reordered: usize,
    pub gaps: usize,
    pub vanished: usize,
    pub changed: usize,
    pub unexpected: usize,
    pub unreadable: usize,
    pub returning_missing: usize,
    pub returning_unverified: usize,
    /// Lost records per partition.
    pub lost_by_partition: BTreeMap<i32, usize>,
    /// Examples per anomaly name.
    pub examples: BTreeMap<&'static str, Vec<String>>,
}

impl Counts {
    /// (name, count) of every anomaly.
    pub fn anomalies(&self) -> [(&'static str, usize); 11] {
        [
            ("lost", self.lost),
            ("moved", self.moved),
            ("duplicates", self.duplicates),
            ("reordered", self.reordered),
            ("gaps", self.gaps),
            ("vanished", self.vanished),
            ("changed", self.changed),
            ("unexpected", self.unexpected),
            ("unreadable", self.unreadable),
            ("returning_missing", self.returning_missing),
            ("returning_unverified", self.returning_unverified),
        ]
    }

    /// Whether every anomaly count is zero.
    pub fn is_clean(&self) -> bool {
        self.anomalies().iter().all(|(_, count)| *count == 0)
    }

    fn note(&mut self, anomaly: &'static str, example: impl FnOnce() -> String) {
        let examples = self.examples.entry(anomaly).or_default();
        if examples.len() < EXAMPLES {
            examples.push(example());
        }
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checker: sent {} acknowledged {} (without offset {}) failed {} (of which in the log \
             {}) read live {} final records {} returning brokers checked {}",
            self.sent,
            self.acknowledged,
            self.acked_without_offset,
            self.failed,
            self.failed_but_present,
            self.observed,
            self.final_records,
            self.returning_checked
        )?;
        let anomalies = self
            .anomalies()
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            f,
            "checker: {}: {anomalies}",
            if self.is_clean() {
                "CLEAN"
            } else {
                "ANOMALIES"
            }
        )?;
        if !self.lost_by_partition.is_empty() {
            writeln!(
                f,
                "checker:   lost by partition {:?}",
                self.lost_by_partition
            )?;
        }
        for (name, examples) in &self.examples {
            writeln!(f, "checker:   {name} e.g. {}", examples.join("; "))?;
        }
        Ok(())
    }
}

/// The verdict on `history`; see the module doc for each count.
pub fn analyze(history: &History) -> Counts {
    let mut counts = Counts {
        sent: history.sent.len(),
        acknowledged: history.acked.len(),
        failed: history.failed.len(),
        observed: history.observed.len(),
        returning_checked: history.returning.len(),
        ..Counts::default()
    };

    // Where each tag is in the final read, and the value at each (partition, offset).
    let mut found: HashMap<Tag, Vec<(i32, i64)>> = HashMap::new();
    let mut at: HashMap<(i32, i64), &[u8]> = HashMap::new();
    for (&partition, read) in &history.final_read {
        let Some(read) = read else {
            counts.unreadable += 1;
            counts.note("unreadable", || format!("partition {partition}"));
            continue;
        };
        counts.final_records += read.records.len();
        check_partition(&mut counts, history, partition, read);
        for (offset, value) in &read.records {
            at.insert((partition, *offset), value);
            if let Some(tag) = Tag::decode(value) {
                found.entry(tag).or_default().push((partition, *offset));
            }
        }
    }

    for (tag, places) in &found {
        if places.len() > 1 {
            counts.duplicates += places.len() - 1;
            counts.note("duplicates", || format!("{tag} at {places:?}"));
        }
    }
    for ack in &history.acked {
        match found.get(&ack.tag) {
            None => {
                counts.lost += 1;
                *counts.lost_by_partition.entry(ack.partition).or_default() += 1;
                counts.note("lost", || {
                    format!("{} acked at {}@{}", ack.tag, ack.partition, ack.offset)
                });
            }
            // librdkafka acknowledges records of a batch that timed out in flight when a later
            // batch of the same producer succeeds ("implicitly acked"), without an offset.
            Some(_) if ack.offset < 0 => counts.acked_without_offset += 1,
            Some(places) if !places.contains(&(ack.partition, ack.offset)) => {
                counts.moved += 1;
                counts.note("moved", || {
                    format!(
                        "{} acked at {}@{}, found at {places:?}",
                        ack.tag, ack.partition, ack.offset
                    )
                });
            }
            Some(_) => {}
        }
    }
    counts.failed_but_present = history
        .failed
        .iter()
        .filter(|f| found.contains_key(&f.tag))
        .count();

    let mut seen: HashSet<(i32, i64, &[u8])> = HashSet::new();
    for read in &history.observed {
        if !seen.insert((read.partition, read.offset, &read.value)) {
            continue;
        }
        let show = || {
            format!(
                "{}@{} read as {}",
                read.partition,
                read.offset,
                String::from_utf8_lossy(&read.value[..read.value.len().min(24)])
            )
        };
        match at.get(&(read.partition, read.offset)) {
            None => {
                counts.vanished += 1;
                counts.note("vanished", show);
            }
            Some(value) if *value != read.value.as_slice() => {
                counts.changed += 1;
                counts.note("changed", show);
            }
            Some(_) => {}
        }
    }

    for broker in &history.returning {
        check_returning(&mut counts, history, broker);
    }
    counts
}

/// Gaps, reordering and unexpected values within one partition of the final read.
fn check_partition(counts: &mut Counts, history: &History, partition: i32, read: &PartitionRead) {
    let mut expected = 0;
    let mut last_seq: HashMap<u32, u64> = HashMap::new();
    for (offset, value) in &read.records {
        if *offset > expected {
            counts.gaps += usize::try_from(offset - expected).unwrap_or(usize::MAX);
            counts.note("gaps", || format!("{partition}@{expected}..{offset}"));
        }
        expected = expected.max(offset + 1);
        match Tag::decode(value).filter(|tag| history.sent.contains(tag)) {
            None => {
                counts.unexpected += 1;
                counts.note("unexpected", || format!("{partition}@{offset}"));
            }
            Some(tag) => {
                let last = last_seq.entry(tag.writer).or_insert(tag.seq);
                if tag.seq < *last {
                    counts.reordered += 1;
                    counts.note("reordered", || {
                        format!("{partition}@{offset} {tag} after s{}", *last)
                    });
                }
                *last = (*last).max(tag.seq);
            }
        }
    }
    if read.high > expected {
        counts.gaps += usize::try_from(read.high - expected).unwrap_or(usize::MAX);
        counts.note("gaps", || {
            format!("{partition}@{expected}..{} (high watermark)", read.high)
        });
    }
}

/// Records of the final read that `broker` did not serve identically.
fn check_returning(counts: &mut Counts, history: &History, broker: &BrokerRead) {
    for (&partition, served) in &broker.partitions {
        let Some(Some(wanted)) = history.final_read.get(&partition) else {
            continue;
        };
        match served {
            None => {
                counts.returning_unverified += 1;
                counts.note("returning_unverified", || {
                    format!("broker {} partition {partition}", broker.broker)
                });
            }
            Some(served) => {
                let served_at: HashMap<i64, &[u8]> = served
                    .records
                    .iter()
                    .map(|(offset, value)| (*offset, value.as_slice()))
                    .collect();
                let missing = wanted
                    .records
                    .iter()
                    .filter(|(offset, value)| served_at.get(offset) != Some(&value.as_slice()))
                    .count();
                let wanted_end = wanted.records.last().map_or(0, |(offset, _)| offset + 1);
                let extra = served
                    .records
                    .iter()
                    .filter(|(offset, _)| *offset >= wanted_end)
                    .count();
                if missing + extra > 0 {
                    counts.returning_missing += missing + extra;
                    counts.note("returning_missing", || {
                        format!(
                            "broker {} partition {partition}: {missing} of {} missing or \
                             different, {extra} beyond",
                            broker.broker,
                            wanted.records.len()
                        )
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(writer: u32, seq: u64) -> Tag {
        Tag { writer, seq }
    }

    /// A clean history: writer 1 wrote seq 0..n round-robin over two partitions, all
    /// acknowledged, all read live and in the final read.
    fn clean(n: u64) -> History {
        let mut history = History::default();
        let mut next = [0i64; 2];
        let mut reads: BTreeMap<i32, PartitionRead> = BTreeMap::new();
        for seq in 0..n {
            let partition = i32::try_from(seq % 2).unwrap();
            let offset = next[seq as usize % 2];
            next[seq as usize % 2] += 1;
            let t = tag(1, seq);
            history.sent.insert(t);
            history.acked.push(Ack {
                tag: t,
                partition,
                offset,
            });
            history.observed.push(Observed {
                partition,
                offset,
                value: t.encode(8),
            });
            let read = reads.entry(partition).or_default();
            read.records.push((offset, t.encode(8)));
            read.high = offset + 1;
        }
        history.final_read = reads.into_iter().map(|(p, r)| (p, Some(r))).collect();
        history
    }

    /// The non-zero anomalies of `counts`.
    fn anomalies(counts: &Counts) -> Vec<(&'static str, usize)> {
        counts
            .anomalies()
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .collect()
    }

    fn final_records(history: &mut History, partition: i32) -> &mut PartitionRead {
        history
            .final_read
            .get_mut(&partition)
            .unwrap()
            .as_mut()
            .unwrap()
    }

    #[test]
    fn tags_round_trip_through_values() {
        let t = tag(7, 123_456);
        assert_eq!(Tag::decode(&t.encode(0)), Some(t));
        assert_eq!(Tag::decode(&t.encode(100)), Some(t));
        assert_eq!(Tag::decode(b"w7-s1"), None);
        assert_eq!(Tag::decode(b"garbage|"), None);
    }

    #[test]
    fn a_clean_history_has_no_anomalies() {
        let counts = analyze(&clean(10));
        assert!(counts.is_clean(), "{counts}");
        assert_eq!(counts.acknowledged, 10);
        assert_eq!(counts.final_records, 10);
        assert!(counts.to_string().contains("CLEAN"));
    }

    #[test]
    fn a_lost_tail_is_lost_and_seen_as_vanished() {
        let mut history = clean(10);
        // Partition 0 lost its last two records (offsets 3 and 4) and its high watermark fell.
        let read = final_records(&mut history, 0);
        read.records.truncate(3);
        read.high = 3;
        let counts = analyze(&history);
        assert_eq!(anomalies(&counts), vec![("lost", 2), ("vanished", 2)]);
        assert!(counts.to_string().contains("ANOMALIES"));
    }

    #[test]
    fn a_new_leader_without_the_data_loses_and_changes_records() {
        let mut history = clean(10);
        // Partition 1 (s1 s3 s5 s7 s9 at 0..5) was taken over by a leader that had none of it and
        // then took three records of writer 2 at offsets 0..3.
        let taken: Vec<Tag> = (0..3).map(|seq| tag(2, seq)).collect();
        history.sent.extend(taken.iter().copied());
        let read = final_records(&mut history, 1);
        read.records = (0..).zip(taken.iter().map(|t| t.encode(8))).collect();
        read.high = 3;
        let counts = analyze(&history);
        assert_eq!(
            anomalies(&counts),
            vec![("lost", 5), ("vanished", 2), ("changed", 3)]
        );
    }

    #[test]
    fn records_at_other_offsets_than_acknowledged_moved() {
        let mut history = clean(10);
        // Partition 1: s1 s3 s5 s7 s9 at 0..5; s3 and s9 swap places.
        let read = final_records(&mut history, 1);
        let (first, second) = (read.records[1].1.clone(), read.records[4].1.clone());
        read.records[1].1 = second;
        read.records[4].1 = first;
        let counts = analyze(&history);
        // s5, s7 and s3 now come after s9; the live reads at offsets 1 and 4 saw other values.
        assert_eq!(
            anomalies(&counts),
            vec![("moved", 2), ("reordered", 3), ("changed", 2)]
        );
    }

    #[test]
    fn an_acknowledgement_without_offset_is_checked_for_loss_only() {
        let mut history = clean(10);
        // Implicitly acked by librdkafka: offset -1001 (RD_KAFKA_OFFSET_INVALID).
        history.acked[3].offset = -1001;
        history.acked[5].offset = -1001;
        let read = final_records(&mut history, 1);
        read.records.truncate(2);
        read.high = 2;
        history.observed.clear();
        let counts = analyze(&history);
        // s3 is in the log (fine); s5 (partition 1, offset 2) is not.
        assert_eq!(anomalies(&counts), vec![("lost", 3)]);
        assert_eq!(counts.acked_without_offset, 1);
    }

    #[test]
    fn duplicates_are_copies_beyond_the_first() {
        let mut history = clean(10);
        let read = final_records(&mut history, 0);
        let copy = read.records[2].1.clone();
        read.records.push((5, copy.clone()));
        read.records.push((6, copy));
        read.high = 7;
        let counts = analyze(&history);
        // The copies also go back in the writer's sequence.
        assert_eq!(
            anomalies(&counts),
            vec![("duplicates", 2), ("reordered", 2)]
        );
    }

    #[test]
    fn reordering_is_per_writer_and_partition() {
        let mut history = clean(10);
        // Partition 0: s0 s2 s4 s6 s8 at 0..5; s2 and s6 swap places.
        let read = final_records(&mut history, 0);
        read.records.swap(1, 3);
        for (i, (offset, _)) in read.records.iter_mut().enumerate() {
            *offset = i64::try_from(i).unwrap();
        }
        for ack in &mut history.acked {
            if ack.partition == 0 && (ack.offset == 1 || ack.offset == 3) {
                ack.offset = 4 - ack.offset;
            }
        }
        history.observed.clear();
        let counts = analyze(&history);
        // s0 s6 s4 s2 s8: s4 and s2 come after s6.
        assert_eq!(anomalies(&counts), vec![("reordered", 2)]);
    }

    #[test]
    fn gaps_count_missing_offsets_up_to_the_high_watermark() {
        let mut history = clean(10);
        history.observed.clear();
        let read = final_records(&mut history, 0);
        // Offsets 0, 1, 3, 4: one missing in the middle; two more below the high watermark.
        read.records.remove(2);
        read.high = 7;
        let counts = analyze(&history);
        assert_eq!(anomalies(&counts), vec![("lost", 1), ("gaps", 3)]);
    }

    #[test]
    fn failures_are_indeterminate() {
        let mut history = clean(4);
        let written = tag(1, 4);
        let not_written = tag(1, 5);
        history.sent.insert(written);
        history.sent.insert(not_written);
        for t in [written, not_written] {
            history.failed.push(Failure {
                tag: t,
                error: "timed out".into(),
            });
        }
        let read = final_records(&mut history, 0);
        read.records.push((2, written.encode(8)));
        read.high = 3;
        let counts = analyze(&history);
        assert!(counts.is_clean(), "{counts}");
        assert_eq!(counts.failed, 2);
        assert_eq!(counts.failed_but_present, 1);
    }

    #[test]
    fn values_nobody_sent_and_unreadable_partitions_count() {
        let mut history = clean(4);
        let read = final_records(&mut history, 1);
        read.records.push((2, b"stranger".to_vec()));
        read.high = 3;
        history.final_read.insert(2, None);
        let counts = analyze(&history);
        assert_eq!(
            anomalies(&counts),
            vec![("unexpected", 1), ("unreadable", 1)]
        );
    }

    #[test]
    fn a_returning_broker_must_serve_the_final_read() {
        let mut history = clean(10);
        let full = |history: &History, p: i32| history.final_read[&p].clone();
        let mut short = full(&history, 0).unwrap();
        short.records.pop();
        let mut longer = full(&history, 1).unwrap();
        longer.records.push((5, tag(1, 99).encode(8)));
        history.returning = vec![
            BrokerRead {
                broker: 1,
                partitions: BTreeMap::from([(0, full(&history, 0)), (1, full(&history, 1))]),
            },
            BrokerRead {
                broker: 2,
                partitions: BTreeMap::from([(0, Some(short)), (1, None)]),
            },
            BrokerRead {
                broker: 3,
                partitions: BTreeMap::from([(0, full(&history, 0)), (1, Some(longer))]),
            },
        ];
        let counts = analyze(&history);
        assert_eq!(
            anomalies(&counts),
            vec![("returning_missing", 2), ("returning_unverified", 1)]
        );
        assert_eq!(counts.returning_checked, 3);
    }
}
