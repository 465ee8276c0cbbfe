//! Idempotent-producer state of one partition: per producer id, its epoch and the last few
//! batches' sequence ranges, so that a retried batch is recognised as a duplicate and
//! answered with its original offsets, and a gap in sequences is rejected.
//!
//! The state is rebuilt from the batch headers in the log when a partition opens, so it
//! survives restarts without a separate snapshot file.

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
        self.max_producer_id = self.max_producer_id.max(h.producer_id);
        if h.base_sequence < 0 {
            return;
        }
        if !self.producers.contains_key(&h.producer_id) && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX {
            let oldest = self.producers.iter().min_by_key(|(_, e)| e.last_offset).map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.producers.remove(&oldest);
            }
        }
        let entry = self.producers.entry(h.producer_id).or_insert(ProducerEntry {
            epoch: h.producer_epoch,
            batches: VecDeque::new(),
            last_offset: -1,
        });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == PRODUCER_BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_sequence(h),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        entry.last_offset = h.last_offset();
    }
}
