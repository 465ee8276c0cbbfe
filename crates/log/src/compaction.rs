//! Log compaction for `cleanup.policy=compact`: in every closed segment, keep only the latest
//! record of each key, drop tombstones older than `delete.retention.ms`, and keep offsets.
//!
//! A cleaned segment is written beside the original, fsynced, and renamed over it (then the
//! directory is fsynced), so a crash leaves either the old or the new segment, never a mix.
//! Appends are never blocked: the cleaner holds the partition lock only to swap a segment in.

use std::collections::HashMap;

use bytes::Bytes;
use runnel_records::{BatchBuilder, Batches, Compression, decode_records};

use crate::config::TopicConfig;
use crate::error::AppendError;
use crate::partition::Partition;

/// Most distinct key bytes held in memory while compacting one partition; above this the
/// partition is left uncompacted this round (and a warning says why).
pub const COMPACTION_KEY_BYTES_MAX: usize = 256 << 20;
/// Bytes read per step while scanning the partition for the latest offset of each key.
const SCAN_READ_BYTES: usize = 4 << 20;

fn corrupt(p: &Partition, detail: String) -> AppendError {
    AppendError::Io {
        path: p.dir().to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, detail),
    }
}

/// Compacts `p`'s closed segments if anything new was closed since the last run.
pub(crate) fn compact(p: &Partition, config: &TopicConfig, now_ms: i64) -> Result<(), AppendError> {
    let closed = p.closed_segments();
    let Some(&(_, closed_end, _, _, _)) = closed.last() else { return Ok(()) };
    if p.cleaned_up_to() >= closed_end {
        return Ok(());
    }
    // Only durable records may supersede others: a newer value lost in a crash must not have
    // cost the older, acknowledged one. So sync first, and look no further than that.
    let durable_end = p.high_watermark();
    p.sync_to(durable_end)?;
    // Segments compaction empties may leave an empty active segment as the only record of
    // the end of the log; recovery trusts such a segment up to the recovery point.
    p.checkpoint_recovery_point()?;
    // The latest offset of every key in the whole durable partition, active segment included,
    // and the last batch of every producer (kept as it is, so that the producer's sequence
    // state rebuilt from the log after a restart is the same).
    let mut latest: HashMap<Bytes, i64> = HashMap::new();
    let mut producer_last_batch: HashMap<i64, i64> = HashMap::new();
    let mut key_bytes = 0usize;
    let log_start = p.log_start_offset();
    let mut offset = log_start;
    while offset < durable_end {
        let read = match p.read(offset, SCAN_READ_BYTES) {
            Ok(r) => r,
            Err(e) => return Err(corrupt(p, e.to_string())),
        };
        if read.records.is_empty() {
            break;
        }
        for batch in Batches::new(&read.records) {
            let (h, bytes) = batch.map_err(|e| corrupt(p, e.to_string()))?;
            if h.base_offset >= durable_end {
                // Appended since the sync (or past a gap): the scan is done.
                offset = durable_end;
                break;
            }
            if h.has_producer_id() {
                producer_last_batch.insert(h.producer_id, h.base_offset);
            }
            for r in decode_records(bytes, p.decompressed_bytes_max()).map_err(|e| corrupt(p, e.to_string()))? {
                if r.offset >= durable_end {
                    break;
                }
                if let Some(k) = r.key {
                    if !latest.contains_key(&k) {
                        key_bytes += k.len();
                        if key_bytes > COMPACTION_KEY_BYTES_MAX {
                            tracing::warn!(
                                topic = p.topic(),
                                partition = p.index(),
                                "too many distinct keys to compact ({COMPACTION_KEY_BYTES_MAX} bytes of keys); skipping"
                            );
                            return Ok(());
                        }
                    }
                    latest.insert(k, r.offset);
                }
            }
            offset = h.next_offset();
        }
    }
    let storage = p.files().storage().clone();
    for (base, next, size, max_ts, path) in closed {
        if max_ts > now_ms.saturating_sub(config.min_compaction_lag_ms) {
            break;
        }
        let drop_tombstones = max_ts < now_ms.saturating_sub(config.delete_retention_ms);
        let file = p.files().get(&path, false).map_err(|e| corrupt(p, e.to_string()))?;
        let mut data = vec![0u8; size as usize];
        file.read_at(&mut data, 0).map_err(|e| corrupt(p, e.to_string()))?;
        let mut out = Vec::with_capacity(data.len());
        let mut changed = false;
        for batch in Batches::new(&data) {
            let (h, bytes) = batch.map_err(|e| corrupt(p, e.to_string()))?;
            // Batches wholly below the log start are invisible and were not scanned: they stay
            // as they are until their segment is deleted (the producer state is rebuilt from them).
            if h.is_control()
                || h.last_offset() < log_start
                || (h.has_producer_id() && producer_last_batch.get(&h.producer_id) == Some(&h.base_offset))
            {
                out.extend_from_slice(bytes);
                continue;
            }
            let records = decode_records(bytes, p.decompressed_bytes_max()).map_err(|e| corrupt(p, e.to_string()))?;
            let total = records.len();
            let kept: Vec<_> = records
                .into_iter()
                .filter(|r| match &r.key {
                    None => true,
                    Some(k) => latest.get(k) == Some(&r.offset) && !(drop_tombstones && r.value.is_none()),
                })
                .collect();
            if kept.len() == total {
                out.extend_from_slice(bytes);
                continue;
            }
            changed = true;
            if kept.is_empty() {
                continue;
            }
            // The sequence of a record is the batch's base sequence plus its offset delta.
            let base_sequence = if h.base_sequence < 0 {
                h.base_sequence
            } else {
                ((i64::from(h.base_sequence) + kept[0].offset - h.base_offset) % (i64::from(i32::MAX) + 1)) as i32
            };
            let mut builder =
                BatchBuilder::new().keep_offsets().producer(h.producer_id, h.producer_epoch, base_sequence);
            for r in kept {
                builder.push(r);
            }
            let codec = h.compression().unwrap_or(Compression::None);
            let rebuilt = builder.build(codec).map_err(|e| corrupt(p, e.to_string()))?;
            out.extend_from_slice(&rebuilt);
        }
        if !changed {
            continue;
        }
        let cleaned = path.with_extension("cleaned");
        let f = storage.open(&cleaned, true).map_err(|e| corrupt(p, e.to_string()))?;
        f.truncate(0).map_err(|e| corrupt(p, e.to_string()))?;
        f.write_at(&out, 0).map_err(|e| corrupt(p, e.to_string()))?;
        f.sync().map_err(|e| corrupt(p, e.to_string()))?;
        drop(f);
        let _ = next;
        p.swap_segment(base, size, &cleaned)?;
    }
    p.set_cleaned_up_to(closed_end);
    Ok(())
}
