//! Idempotent-producer state of one partition: per producer id, its epoch and the last few
//! batches' sequence ranges, so that a retried batch is recognised as a duplicate and
//! answered with its original offsets, and a gap in sequences is rejected.
//!
//! The state is rebuilt when a partition opens: from the batch headers of the segments it
//! scans, and from the producer summary files (`<base offset:020>.producers`, see
//! [`crate::index`]) of the rolled segments whose index files it loads. A summary holds each
//! producer's last [`PRODUCER_BATCHES_REMEMBERED`] batches of its segment, and replaying the
//! summaries in segment order gives the same state as replaying every header (the state
//! depends only on each producer's last few batches and epoch).

use std::collections::{HashMap, VecDeque};

use runnel_records::BatchHeader;

use crate::error::AppendError;

/// How many recent batches per producer are remembered for duplicate detection (Kafka's
/// `max.in.flight.requests.per.connection` limit for idempotence is 5).
pub const PRODUCER_BATCHES_REMEMBERED: usize = 5;
/// Most producer ids remembered per partition; the least recently used is forgotten first.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

/// One idempotent batch as the producer state remembers it (and a producer summary file
/// stores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerBatch {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    last_offset: i64,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    Append,
    /// Already in the log at these offsets.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
    },
}

#[derive(Debug, Default, Clone)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    max_producer_id: i64,
}

fn last_sequence(h: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX, as in Kafka.
    ((h.base_sequence as i64 + h.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

impl ProducerState {
    pub(crate) fn new() -> ProducerState {
        ProducerState { producers: HashMap::new(), max_producer_id: -1 }
    }

    pub(crate) fn max_producer_id(&self) -> i64 {
        self.max_producer_id
    }

    /// Checks a batch against the state without changing it.
    pub(crate) fn check(&self, h: &BatchHeader) -> Result<Check, AppendError> {
        if !h.has_producer_id() || h.base_sequence < 0 {
            return Ok(Check::Append);
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return Ok(Check::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(AppendError::ProducerFenced {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: entry.epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            return if h.base_sequence == 0 {
                Ok(Check::Append)
            } else {
                Err(AppendError::OutOfOrderSequence { producer_id: h.producer_id, expected: 0, got: h.base_sequence })
            };
        }
        let last = last_sequence(h);
        if let Some(b) = entry.batches.iter().find(|b| b.first_seq == h.base_sequence && b.last_seq == last) {
            return Ok(Check::Duplicate { base_offset: b.base_offset, last_offset: b.last_offset });
        }
        let expected = entry.batches.back().map(|b| next_sequence(b.last_seq)).unwrap_or(0);
        if h.base_sequence != expected {
            return Err(AppendError::OutOfOrderSequence { producer_id: h.producer_id, expected, got: h.base_sequence });
        }
        Ok(Check::Append)
    }

    /// Records a batch written at its (final) offsets.
    pub(crate) fn record(&mut self, h: &BatchHeader) {
        if !h.has_producer_id() {
            return;
        }
        self.note_producer_id(h.producer_id);
        if h.base_sequence < 0 {
            return;
        }
        self.record_batch(&ProducerBatch {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            first_seq: h.base_sequence,
            last_seq: last_sequence(h),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
    }

    /// Raises the largest producer id seen (a producer without sequences leaves only this).
    pub(crate) fn note_producer_id(&mut self, producer_id: i64) {
        self.max_producer_id = self.max_producer_id.max(producer_id);
    }

    /// Records an idempotent batch, from a header or from a producer summary file.
    pub(crate) fn record_batch(&mut self, b: &ProducerBatch) {
        self.note_producer_id(b.producer_id);
        if !self.producers.contains_key(&b.producer_id) && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX {
            let oldest = self.producers.iter().min_by_key(|(_, e)| e.last_offset).map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.producers.remove(&oldest);
            }
        }
        let entry = self.producers.entry(b.producer_id).or_insert(ProducerEntry {
            epoch: b.epoch,
            batches: VecDeque::new(),
            last_offset: -1,
        });
        if b.epoch != entry.epoch {
            entry.epoch = b.epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == PRODUCER_BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: b.first_seq,
            last_seq: b.last_seq,
            base_offset: b.base_offset,
            last_offset: b.last_offset,
        });
        entry.last_offset = b.last_offset;
    }

    /// Every remembered batch of every producer, in log order: what a producer summary file
    /// stores, and what [`ProducerState::record_batch`] replays.
    pub(crate) fn batches(&self) -> Vec<ProducerBatch> {
        let mut out: Vec<ProducerBatch> = self
            .producers
            .iter()
            .flat_map(|(id, e)| {
                e.batches.iter().map(|b| ProducerBatch {
                    producer_id: *id,
                    epoch: e.epoch,
                    first_seq: b.first_seq,
                    last_seq: b.last_seq,
                    base_offset: b.base_offset,
                    last_offset: b.last_offset,
                })
            })
            .collect();
        out.sort_unstable_by_key(|b| b.base_offset);
        out
    }
}
