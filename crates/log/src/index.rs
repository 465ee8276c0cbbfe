//! The index files of a rolled segment: its sparse offset index (`<base:020>.index`), its time
//! index (`<base:020>.timeindex`) and its producer summary (`<base:020>.producers`), so that
//! opening a partition need not read the batch headers of every segment below the recovery
//! point.
//!
//! The three files share one header (magic, version, entry size, and a summary of the segment:
//! base offset, the data-file length they describe, next offset, largest timestamp, largest
//! producer id, entry count) and a CRC-32C over the header and the entries; the format is drawn
//! byte by byte in docs/ARCHITECTURE.md. They are an optimisation and never trusted blindly: a
//! missing, stale (covering another length), corrupt or inconsistent set is rebuilt from the
//! batch headers. They are written after the segment's data is fsynced, each to a temporary file
//! that is fsynced and then renamed into place, followed by one fsync of the directory.

use std::io;
use std::path::{Path, PathBuf};

use crate::producer::ProducerBatch;
use crate::storage::{Storage, read_all};

/// Suffix of the sparse offset index.
pub(crate) const OFFSET_INDEX_SUFFIX: &str = ".index";
/// Suffix of the time index.
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// Suffix of the producer summary.
pub(crate) const PRODUCERS_SUFFIX: &str = ".producers";
/// Every file that belongs to a segment besides its data file.
pub(crate) const SUFFIXES: [&str; 3] = [OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, PRODUCERS_SUFFIX];
/// Suffix of a file being written (removed when a partition opens).
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

const MAGIC_OFFSET_INDEX: [u8; 4] = *b"RNOI";
const MAGIC_TIME_INDEX: [u8; 4] = *b"RNTI";
const MAGIC_PRODUCERS: [u8; 4] = *b"RNPS";
const VERSION: u16 = 1;
/// Bytes of the header every index file starts with.
pub(crate) const HEADER_BYTES: usize = 64;
/// Offset index entry: relative offset u32, position u32.
const OFFSET_ENTRY_BYTES: usize = 8;
/// Time index entry: timestamp i64, relative offset u32.
const TIME_ENTRY_BYTES: usize = 12;
/// Producer summary entry: producer id i64, epoch i16, first and last sequence i32, relative
/// base and last offsets u32.
const PRODUCER_ENTRY_BYTES: usize = 26;
/// Where the CRC sits in the header; it covers the bytes before it and every entry.
const CRC_AT: usize = 60;
/// Most entries one index file may claim: a segment is at most `SEGMENT_BYTES_MAX` bytes
/// and every batch is at least a header, so no valid file has more.
const ENTRIES_MAX: u64 = crate::config::SEGMENT_BYTES_MAX / runnel_records::BATCH_HEADER_BYTES as u64 + 1;

/// What the index files say about their segment as a whole (the same in all three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    pub(crate) base_offset: i64,
    /// Length of the data file the files describe; any other length makes them stale.
    pub(crate) data_bytes: u64,
    pub(crate) next_offset: i64,
    pub(crate) max_timestamp: i64,
    /// Base offset of the batch holding the largest timestamp (-1 when none).
    pub(crate) max_timestamp_batch: i64,
    pub(crate) max_producer_id: i64,
}

/// The contents of a segment's three index files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentIndex {
    pub(crate) summary: SegmentSummary,
    /// (offset - base offset, byte position), both strictly ascending.
    pub(crate) offsets: Vec<(u32, u32)>,
    /// (largest timestamp up to the indexed batch, that batch's base offset), one per entry of
    /// `offsets` and at the same batches.
    pub(crate) times: Vec<(i64, i64)>,
    /// Each producer's last batches in the segment, in log order.
    pub(crate) producers: Vec<ProducerBatch>,
}

/// The path of a segment's file with `suffix`.
pub(crate) fn path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}"))
}

fn temp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(TEMP_SUFFIX);
    PathBuf::from(s)
}

fn header(magic: [u8; 4], entry_bytes: usize, s: &SegmentSummary, entries: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_BYTES + entries * entry_bytes);
    b.extend_from_slice(&magic);
    b.extend_from_slice(&VERSION.to_be_bytes());
    b.extend_from_slice(&(entry_bytes as u16).to_be_bytes());
    b.extend_from_slice(&s.base_offset.to_be_bytes());
    b.extend_from_slice(&s.data_bytes.to_be_bytes());
    b.extend_from_slice(&s.next_offset.to_be_bytes());
    b.extend_from_slice(&s.max_timestamp.to_be_bytes());
    b.extend_from_slice(&s.max_timestamp_batch.to_be_bytes());
    b.extend_from_slice(&s.max_producer_id.to_be_bytes());
    b.extend_from_slice(&(entries as u32).to_be_bytes());
    b.extend_from_slice(&[0; 4]); // the CRC, filled in by `seal`
    debug_assert_eq!(b.len(), HEADER_BYTES);
    b
}

fn seal(mut b: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..CRC_AT]), &b[HEADER_BYTES..]);
    b[CRC_AT..HEADER_BYTES].copy_from_slice(&crc.to_be_bytes());
    b
}

/// `offset` relative to `base`, if it fits the 32 bits of an entry (a segment of batches whose
/// offset deltas, chosen by producers, add up to more does not get index files).
fn relative(offset: i64, base: i64) -> Option<u32> {
    u32::try_from(offset - base).ok()
}

impl SegmentIndex {
    /// The bytes of the offset index, time index and producer summary, with their suffixes;
    /// `None` when the segment spans more offsets than an entry can express.
    pub(crate) fn encode(&self) -> Option<[(&'static str, Vec<u8>); 3]> {
        let s = &self.summary;
        let base = s.base_offset;
        let mut offsets = header(MAGIC_OFFSET_INDEX, OFFSET_ENTRY_BYTES, s, self.offsets.len());
        for (rel, pos) in &self.offsets {
            offsets.extend_from_slice(&rel.to_be_bytes());
            offsets.extend_from_slice(&pos.to_be_bytes());
        }
        let mut times = header(MAGIC_TIME_INDEX, TIME_ENTRY_BYTES, s, self.times.len());
        for (ts, offset) in &self.times {
            times.extend_from_slice(&ts.to_be_bytes());
            times.extend_from_slice(&relative(*offset, base)?.to_be_bytes());
        }
        let mut producers = header(MAGIC_PRODUCERS, PRODUCER_ENTRY_BYTES, s, self.producers.len());
        for p in &self.producers {
            producers.extend_from_slice(&p.producer_id.to_be_bytes());
            producers.extend_from_slice(&p.epoch.to_be_bytes());
            producers.extend_from_slice(&p.first_seq.to_be_bytes());
            producers.extend_from_slice(&p.last_seq.to_be_bytes());
            producers.extend_from_slice(&relative(p.base_offset, base)?.to_be_bytes());
            producers.extend_from_slice(&relative(p.last_offset, base)?.to_be_bytes());
        }
        relative(s.next_offset, base)?;
        Some([
            (OFFSET_INDEX_SUFFIX, seal(offsets)),
            (TIME_INDEX_SUFFIX, seal(times)),
            (PRODUCERS_SUFFIX, seal(producers)),
        ])
    }

    /// Decodes and checks the three files of the segment at `base_offset` whose data file is
    /// `data_bytes` long. The error says what is wrong (the files are then rebuilt).
    pub(crate) fn decode(
        base_offset: i64,
        data_bytes: u64,
        offsets: &[u8],
        times: &[u8],
        producers: &[u8],
    ) -> Result<SegmentIndex, String> {
        let (summary, offset_entries) = parse(MAGIC_OFFSET_INDEX, OFFSET_ENTRY_BYTES, offsets)?;
        let (time_summary, time_entries) = parse(MAGIC_TIME_INDEX, TIME_ENTRY_BYTES, times)?;
        let (producer_summary, producer_entries) = parse(MAGIC_PRODUCERS, PRODUCER_ENTRY_BYTES, producers)?;
        if time_summary != summary || producer_summary != summary {
            return Err("the three index files describe different segments".to_string());
        }
        if summary.base_offset != base_offset {
            return Err(format!("base offset {} in the header, {base_offset} in the name", summary.base_offset));
        }
        if summary.data_bytes != data_bytes {
            return Err(format!("stale: they cover {} bytes, the data file has {data_bytes}", summary.data_bytes));
        }
        let span = summary.next_offset - base_offset;
        if span < 0 || span > i64::from(u32::MAX) {
            return Err(format!("next offset {} does not fit the segment", summary.next_offset));
        }
        let within = |rel: u32| i64::from(rel) < span;
        let be_u32 = |b: &[u8]| u32::from_be_bytes(b.try_into().expect("4 bytes"));
        let be_i64 = |b: &[u8]| i64::from_be_bytes(b.try_into().expect("8 bytes"));
        let mut index = SegmentIndex { summary, offsets: Vec::new(), times: Vec::new(), producers: Vec::new() };
        for e in offset_entries.chunks_exact(OFFSET_ENTRY_BYTES) {
            let (rel, pos) = (be_u32(&e[..4]), be_u32(&e[4..]));
            let ascending = index.offsets.last().is_none_or(|(r, p)| rel > *r && pos > *p);
            let first_at_zero = !index.offsets.is_empty() || pos == 0;
            if !ascending || !first_at_zero || !within(rel) || u64::from(pos) >= data_bytes {
                return Err(format!("offset index entry ({rel}, {pos}) out of order or outside the segment"));
            }
            index.offsets.push((rel, pos));
        }
        if index.offsets.is_empty() != (data_bytes == 0) {
            return Err("the offset index has no entry for a non-empty segment".to_string());
        }
        if time_entries.len() / TIME_ENTRY_BYTES != index.offsets.len() {
            return Err("the time and offset indexes have different lengths".to_string());
        }
        for (e, (rel, _)) in time_entries.chunks_exact(TIME_ENTRY_BYTES).zip(&index.offsets) {
            let (ts, time_rel) = (be_i64(&e[..8]), be_u32(&e[8..]));
            if time_rel != *rel || index.times.last().is_some_and(|(t, _)| ts < *t) || ts > summary.max_timestamp {
                return Err(format!("time index entry ({ts}, {time_rel}) out of order or outside the segment"));
            }
            index.times.push((ts, base_offset + i64::from(time_rel)));
        }
        let max_batch = summary.max_timestamp_batch;
        if (summary.max_timestamp < 0) != (max_batch < 0)
            || (max_batch >= 0 && !(base_offset..summary.next_offset).contains(&max_batch))
        {
            return Err(format!("batch {max_batch} of the largest timestamp is outside the segment"));
        }
        for e in producer_entries.chunks_exact(PRODUCER_ENTRY_BYTES) {
            let b = ProducerBatch {
                producer_id: be_i64(&e[..8]),
                epoch: i16::from_be_bytes([e[8], e[9]]),
                first_seq: i32::from_be_bytes(e[10..14].try_into().expect("4 bytes")),
                last_seq: i32::from_be_bytes(e[14..18].try_into().expect("4 bytes")),
                base_offset: base_offset + i64::from(be_u32(&e[18..22])),
                last_offset: base_offset + i64::from(be_u32(&e[22..26])),
            };
            let ordered = index.producers.last().is_none_or(|p| b.base_offset > p.last_offset);
            if !ordered
                || b.last_offset < b.base_offset
                || b.last_offset >= summary.next_offset
                || b.producer_id < 0
                || b.producer_id > summary.max_producer_id
            {
                return Err(format!("producer summary entry {b:?} out of order or outside the segment"));
            }
            index.producers.push(b);
        }
        Ok(index)
    }
}

/// Checks one file's header and CRC; returns its summary and entry bytes.
fn parse(magic: [u8; 4], entry_bytes: usize, b: &[u8]) -> Result<(SegmentSummary, &[u8]), String> {
    let name = String::from_utf8_lossy(&magic).into_owned();
    if b.len() < HEADER_BYTES {
        return Err(format!("{name}: {} bytes, shorter than the {HEADER_BYTES}-byte header", b.len()));
    }
    if b[..4] != magic {
        return Err(format!("{name}: bad magic {:?}", &b[..4]));
    }
    let u16_at = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    if u16_at(4) != VERSION {
        return Err(format!("{name}: unknown version {}", u16_at(4)));
    }
    if usize::from(u16_at(6)) != entry_bytes {
        return Err(format!("{name}: entries of {} bytes, expected {entry_bytes}", u16_at(6)));
    }
    let count = u64::from(u32_at(56));
    if count > ENTRIES_MAX || b.len() as u64 != HEADER_BYTES as u64 + count * entry_bytes as u64 {
        return Err(format!("{name}: {} bytes do not hold {count} entries", b.len()));
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..CRC_AT]), &b[HEADER_BYTES..]);
    if crc != u32_at(CRC_AT) {
        return Err(format!("{name}: CRC mismatch"));
    }
    let summary = SegmentSummary {
        base_offset: i64_at(8),
        data_bytes: i64_at(16) as u64,
        next_offset: i64_at(24),
        max_timestamp: i64_at(32),
        max_timestamp_batch: i64_at(40),
        max_producer_id: i64_at(48),
    };
    Ok((summary, &b[HEADER_BYTES..]))
}

/// Reads and checks the index files of the segment at `base_offset` in `dir`.
pub(crate) fn load(
    storage: &dyn Storage,
    dir: &Path,
    base_offset: i64,
    data_bytes: u64,
) -> Result<SegmentIndex, String> {
    let mut contents = Vec::with_capacity(SUFFIXES.len());
    for suffix in SUFFIXES {
        let p = path(dir, base_offset, suffix);
        if !storage.exists(&p) {
            return Err(format!("{} is missing", p.display()));
        }
        contents.push(read_all(storage, &p).map_err(|e| format!("{}: {e}", p.display()))?);
    }
    SegmentIndex::decode(base_offset, data_bytes, &contents[0], &contents[1], &contents[2])
}

/// Writes the three files to temporary names and fsyncs them; [`install`] renames them into
/// place, [`discard`] removes them. Writers of one partition's index files take turns.
pub(crate) fn prepare(storage: &dyn Storage, dir: &Path, index: &SegmentIndex) -> io::Result<()> {
    let files = index.encode().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "the segment spans more offsets than index entries can express")
    })?;
    // What is written must read back as what was meant (checked again at every load).
    debug_assert_eq!(
        SegmentIndex::decode(
            index.summary.base_offset,
            index.summary.data_bytes,
            &files[0].1,
            &files[1].1,
            &files[2].1
        )
        .as_ref(),
        Ok(index)
    );
    for (suffix, bytes) in files {
        let tmp = temp_path(&path(dir, index.summary.base_offset, suffix));
        let file = storage.open(&tmp, true)?;
        file.truncate(0)?;
        file.write_at(&bytes, 0)?;
        file.sync()?;
    }
    Ok(())
}

/// Renames the files [`prepare`] wrote into place. The caller fsyncs the directory.
pub(crate) fn install(storage: &dyn Storage, dir: &Path, base_offset: i64) -> io::Result<()> {
    for suffix in SUFFIXES {
        let p = path(dir, base_offset, suffix);
        storage.rename(&temp_path(&p), &p)?;
    }
    Ok(())
}

/// Removes temporary files left by [`prepare`], if any (a failed write, or a segment that
/// changed meanwhile). Those that cannot be removed now are removed at the next open.
pub(crate) fn discard(storage: &dyn Storage, dir: &Path, base_offset: i64) {
    for suffix in SUFFIXES {
        let tmp = temp_path(&path(dir, base_offset, suffix));
        if storage.exists(&tmp) {
            let _ = storage.remove_file(&tmp);
        }
    }
}

/// Removes the index files of the segment at `base_offset`, if any; says whether there were
/// any. The caller fsyncs the directory.
pub(crate) fn remove(storage: &dyn Storage, dir: &Path, base_offset: i64) -> io::Result<bool> {
    let mut removed = false;
    for suffix in SUFFIXES {
        let p = path(dir, base_offset, suffix);
        if storage.exists(&p) {
            match storage.remove_file(&p) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentIndex {
        SegmentIndex {
            summary: SegmentSummary {
                base_offset: 100,
                data_bytes: 5_000,
                next_offset: 180,
                max_timestamp: 77,
                max_timestamp_batch: 150,
                max_producer_id: 9,
            },
            offsets: vec![(0, 0), (20, 1_000), (50, 4_000)],
            times: vec![(10, 100), (30, 120), (77, 150)],
            producers: vec![ProducerBatch {
                producer_id: 9,
                epoch: 1,
                first_seq: 5,
                last_seq: 7,
                base_offset: 160,
                last_offset: 162,
            }],
        }
    }

    fn decode(files: &[(&str, Vec<u8>); 3]) -> Result<SegmentIndex, String> {
        SegmentIndex::decode(100, 5_000, &files[0].1, &files[1].1, &files[2].1)
    }

    #[test]
    fn round_trips() {
        let index = sample();
        assert_eq!(decode(&index.encode().unwrap()).unwrap(), index);
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_detected() {
        let files = sample().encode().unwrap();
        for f in 0..3 {
            for at in 0..files[f].1.len() {
                let mut bad = files.clone();
                bad[f].1[at] ^= 0x01;
                assert!(decode(&bad).is_err(), "file {f} byte {at} flipped");
            }
            for len in 0..files[f].1.len() {
                let mut bad = files.clone();
                bad[f].1.truncate(len);
                assert!(decode(&bad).is_err(), "file {f} truncated to {len}");
            }
        }
    }

    #[test]
    fn stale_and_misnamed_files_are_rejected() {
        let files = sample().encode().unwrap();
        let err = SegmentIndex::decode(100, 5_001, &files[0].1, &files[1].1, &files[2].1).unwrap_err();
        assert!(err.contains("stale"), "{err}");
        assert!(SegmentIndex::decode(101, 5_000, &files[0].1, &files[1].1, &files[2].1).is_err());
        // Files of two different versions of the segment do not mix.
        let mut other = sample();
        other.summary.next_offset = 181;
        let other = other.encode().unwrap();
        assert!(SegmentIndex::decode(100, 5_000, &files[0].1, &other[1].1, &files[2].1).is_err());
    }
}
