//! The four compression codecs of Kafka record batches, with a bound on decompressed size so
//! that a small malicious batch cannot expand without limit ("zip bomb").

use std::io::{Read, Write};

/// The codec named by the low three bits of a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompressionError {
    #[error("unknown compression codec id {0}")]
    UnknownCodec(i16),
    #[error("decompressed records exceed the limit of {limit_bytes} bytes")]
    TooLarge { limit_bytes: usize },
    #[error("corrupt {codec:?} data: {detail}")]
    Corrupt { codec: Compression, detail: String },
}

/// Java's snappy framing (xerial snappy-java), which Kafka's JVM clients write and read.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\0";
/// Xerial block size used when compressing.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

impl Compression {
    pub fn from_attributes(attributes: i16) -> Result<Compression, CompressionError> {
        Ok(match attributes & 0x07 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(CompressionError::UnknownCodec(other)),
        })
    }

    pub fn id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Parses a codec name as Kafka's `compression.type` spells it.
    pub fn from_name(name: &str) -> Option<Compression> {
        Some(match name.to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => return None,
        })
    }

    fn corrupt(self, detail: impl ToString) -> CompressionError {
        CompressionError::Corrupt { codec: self, detail: detail.to_string() }
    }

    /// Compresses `data` with this codec.
    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>, CompressionError> {
        match self {
            Compression::None => Ok(data.to_vec()),
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(data).map_err(|e| self.corrupt(e))?;
                enc.finish().map_err(|e| self.corrupt(e))
            }
            Compression::Snappy => {
                let mut out = Vec::with_capacity(data.len() / 2 + 16);
                out.extend_from_slice(XERIAL_MAGIC);
                out.extend_from_slice(&1i32.to_be_bytes()); // version
                out.extend_from_slice(&1i32.to_be_bytes()); // minimum compatible version
                let mut enc = snap::raw::Encoder::new();
                for chunk in data.chunks(XERIAL_BLOCK_BYTES) {
                    let block = enc.compress_vec(chunk).map_err(|e| self.corrupt(e))?;
                    out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                    out.extend_from_slice(&block);
                }
                Ok(out)
            }
            Compression::Lz4 => {
                let mut enc = lz4::EncoderBuilder::new().level(1).build(Vec::new()).map_err(|e| self.corrupt(e))?;
                enc.write_all(data).map_err(|e| self.corrupt(e))?;
                let (out, result) = enc.finish();
                result.map_err(|e| self.corrupt(e))?;
                Ok(out)
            }
            Compression::Zstd => zstd::bulk::compress(data, 1).map_err(|e| self.corrupt(e)),
        }
    }

    /// Decompresses `data`, failing with [`CompressionError::TooLarge`] past `limit_bytes`.
    pub fn decompress(self, data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, CompressionError> {
        let too_large = CompressionError::TooLarge { limit_bytes };
        let read_bounded = |reader: &mut dyn Read| -> Result<Vec<u8>, CompressionError> {
            let mut out = Vec::new();
            reader.take(limit_bytes as u64 + 1).read_to_end(&mut out).map_err(|e| self.corrupt(e))?;
            if out.len() > limit_bytes {
                return Err(CompressionError::TooLarge { limit_bytes });
            }
            Ok(out)
        };
        match self {
            Compression::None => {
                if data.len() > limit_bytes {
                    return Err(too_large);
                }
                Ok(data.to_vec())
            }
            Compression::Gzip => read_bounded(&mut flate2::read::GzDecoder::new(data)),
            Compression::Lz4 => {
                let mut dec = lz4::Decoder::new(data).map_err(|e| self.corrupt(e))?;
                read_bounded(&mut dec)
            }
            Compression::Zstd => {
                let mut dec = zstd::stream::read::Decoder::new(data).map_err(|e| self.corrupt(e))?;
                read_bounded(&mut dec)
            }
            Compression::Snappy => self.snappy_decompress(data, limit_bytes),
        }
    }

    fn snappy_decompress(self, data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, CompressionError> {
        let mut dec = snap::raw::Decoder::new();
        let mut raw_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), CompressionError> {
            let len = snap::raw::decompress_len(block).map_err(|e| self.corrupt(e))?;
            if out.len() + len > limit_bytes {
                return Err(CompressionError::TooLarge { limit_bytes });
            }
            let start = out.len();
            out.resize(start + len, 0);
            dec.decompress(block, &mut out[start..]).map_err(|e| self.corrupt(e))?;
            Ok(())
        };
        let mut out = Vec::new();
        if data.len() >= 16 && &data[..8] == XERIAL_MAGIC {
            let mut pos = 16;
            while pos < data.len() {
                let len_bytes = data.get(pos..pos + 4).ok_or_else(|| self.corrupt("truncated block length"))?;
                let len = u32::from_be_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
                pos += 4;
                let block = data.get(pos..pos + len).ok_or_else(|| self.corrupt("truncated block"))?;
                raw_block(block, &mut out)?;
                pos += len;
            }
        } else {
            raw_block(data, &mut out)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for codec in ALL {
            let packed = codec.compress(&data).unwrap();
            assert_eq!(codec.decompress(&packed, data.len()).unwrap(), data, "{codec:?}");
            assert_eq!(Compression::from_attributes(codec.id()).unwrap(), codec);
        }
    }

    #[test]
    fn decompression_is_bounded() {
        let data = vec![0u8; 1 << 20];
        for codec in ALL {
            let packed = codec.compress(&data).unwrap();
            assert!(
                matches!(codec.decompress(&packed, 1000), Err(CompressionError::TooLarge { limit_bytes: 1000 })),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn raw_snappy_is_accepted() {
        let data = b"hello hello hello hello".to_vec();
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(Compression::Snappy.decompress(&raw, 100).unwrap(), data);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in ALL {
            let _ = codec.decompress(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3], 1 << 20);
        }
    }
}
