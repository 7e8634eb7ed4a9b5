//! Decompression of record batches with a bound on what the output may grow to.
//!
//! `kafka_protocol::compression` inflates everything before anyone can look at the size, and its
//! Snappy decoder allocates whatever length the (client-controlled) preamble claims, up to 4 GiB
//! per block: a few bytes of hostile input could take the gateway's memory. Here every codec
//! stops, with [`RecordError::TooLarge`], as soon as the output would pass `limit`.

use std::io::Read;

use bytes::Bytes;

use super::RecordError;
use super::batch::Compression;

/// The xerial framing Java's Snappy producers use: this magic, two version words, then blocks of
/// (4-byte big-endian length, raw Snappy block).
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Decompresses a batch body of codec `c` into at most `limit` bytes.
pub fn decompress(c: Compression, body: Bytes, limit: usize) -> Result<Bytes, RecordError> {
    let failed = |e: &dyn std::fmt::Display| {
        RecordError::Invalid(format!("{c:?} decompression failed: {e}"))
    };
    match c {
        Compression::None => Ok(body),
        // Kafka's Java client reads concatenated gzip members as one stream; so do we.
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(&body[..]), limit)
            .map_err(|e| e.or_invalid(c)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(&body[..]).map_err(|e| failed(&e))?;
            // A frame header can ask for a window of up to 2 GiB, which zstd allocates before
            // producing a byte; no batch within `limit` needs a window larger than `limit`.
            d.window_log_max(window_log_for(limit))
                .map_err(|e| failed(&e))?;
            read_bounded(d, limit).map_err(|e| e.or_invalid(c))
        }
        Compression::Lz4 => {
            let d = lz4::Decoder::new(&body[..]).map_err(|e| failed(&e))?;
            read_bounded(d, limit).map_err(|e| e.or_invalid(c))
        }
        Compression::Snappy => snappy(&body, limit).map_err(|e| e.or_invalid(c)),
    }
}

/// The smallest zstd window log covering `limit` bytes, within what zstd accepts (10..=31) and
/// never below its default (so every stream a standard encoder writes stays readable).
fn window_log_for(limit: usize) -> u32 {
    let bits = usize::BITS - limit.saturating_sub(1).leading_zeros();
    bits.clamp(23, 31)
}

enum Failure {
    TooLarge { limit: usize },
    Invalid(String),
}

impl Failure {
    fn or_invalid(self, c: Compression) -> RecordError {
        match self {
            // The true size is unknown (we stopped reading); report what we got to.
            Failure::TooLarge { limit } => RecordError::TooLarge {
                size: limit + 1,
                limit,
            },
            Failure::Invalid(e) => RecordError::Invalid(format!("{c:?} decompression failed: {e}")),
        }
    }
}

fn read_bounded(r: impl Read, limit: usize) -> Result<Bytes, Failure> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Failure::Invalid(e.to_string()))?;
    if out.len() > limit {
        return Err(Failure::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

/// Raw Snappy (what librdkafka and others send) or xerial-framed Snappy (Java).
fn snappy(body: &[u8], limit: usize) -> Result<Bytes, Failure> {
    if body.len() >= XERIAL_HEADER_LEN && body.starts_with(XERIAL_MAGIC) {
        let mut rest = &body[XERIAL_HEADER_LEN..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(Failure::Invalid("truncated xerial block length".into()));
            }
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            rest = &rest[4..];
            if len > rest.len() {
                return Err(Failure::Invalid("truncated xerial block".into()));
            }
            let (block, tail) = rest.split_at(len);
            rest = tail;
            snappy_block(block, limit, &mut out)?;
        }
        return Ok(Bytes::from(out));
    }
    let mut out = Vec::new();
    snappy_block(body, limit, &mut out)?;
    Ok(Bytes::from(out))
}

/// Appends one raw Snappy block to `out`, checking its claimed length before allocating.
fn snappy_block(block: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), Failure> {
    let n = snap::raw::decompress_len(block).map_err(|e| Failure::Invalid(e.to_string()))?;
    if n > limit.saturating_sub(out.len()) {
        return Err(Failure::TooLarge { limit });
    }
    let start = out.len();
    out.resize(start + n, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| Failure::Invalid(e.to_string()))?;
    out.truncate(start + written);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    #[test]
    fn every_codec_round_trips_within_the_limit() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let zstd = Bytes::from(zstd::encode_all(&data[..], 3).unwrap());
        let lz4 = {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            e.write_all(&data).unwrap();
            Bytes::from(e.finish().0)
        };
        let raw_snappy = Bytes::from(snap::raw::Encoder::new().compress_vec(&data).unwrap());
        let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for chunk in data.chunks(32 * 1024) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            xerial.extend((block.len() as u32).to_be_bytes());
            xerial.extend(block);
        }
        for (c, body) in [
            (Compression::Gzip, gzip(&data)),
            (Compression::Zstd, zstd),
            (Compression::Lz4, lz4),
            (Compression::Snappy, raw_snappy),
            (Compression::Snappy, Bytes::from(xerial)),
        ] {
            assert_eq!(
                decompress(c, body.clone(), data.len()).unwrap(),
                data,
                "{c:?}"
            );
            assert!(
                matches!(
                    decompress(c, body, data.len() - 1),
                    Err(RecordError::TooLarge { .. })
                ),
                "{c:?} one byte over the limit"
            );
        }
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        // 64 MiB of zeros compresses to ~64 KiB; with a 1 MiB limit nothing near 64 MiB is held.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 1 << 20);
        assert!(matches!(
            decompress(Compression::Gzip, bomb, 1 << 20),
            Err(RecordError::TooLarge { limit, .. }) if limit == 1 << 20
        ));
        // A raw Snappy preamble claiming ~4 GiB, with no data behind it.
        let claim = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(matches!(
            decompress(Compression::Snappy, claim, 1 << 20),
            Err(RecordError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_is_an_error_for_every_codec() {
        for c in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Lz4,
            Compression::Snappy,
        ] {
            let r = decompress(c, Bytes::from_static(b"\x82SNAPPY\x00 not really"), 1 << 20);
            assert!(matches!(r, Err(RecordError::Invalid(_))), "{c:?}: {r:?}");
        }
    }
}
