//! The four record-batch codecs: gzip, snappy (raw and xerial-framed), lz4 (frame), zstd.
//!
//! Compression writes what Kafka's Java client writes (gzip at level 6, xerial-framed snappy
//! in 32 KiB blocks, LZ4 frames of independent 64 KiB blocks, zstd at level 3), so every
//! Kafka client can read it. [`compress_level`] takes the level a topic asks for (KIP-390's
//! `compression.gzip.level` and `compression.zstd.level`); LZ4 has one speed here (lz4_flex
//! has no level knob, so `compression.lz4.level` cannot be honoured) and snappy has no level.
//!
//! Decompression is bounded: it takes the largest output the caller accepts and fails with
//! [`RecordsError::DecompressedTooLarge`] as soon as the output would exceed it, without ever
//! holding more than that many bytes. This module must not parse records; it only turns one
//! byte string into another.

use std::io::{self, Read, Write};

use super::{Compression, RecordsError};

/// The 8-byte magic that opens a snappy-java (xerial) stream.
pub const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic plus version and compatible version (both `1`, as snappy-java writes them).
const XERIAL_HEADER: [u8; 16] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1];
/// snappy-java's default block size (`SnappyOutputStream`).
const XERIAL_BLOCK: usize = 32 * 1024;
/// What Kafka's default `compression.gzip.level` (-1, `Deflater.DEFAULT_COMPRESSION`) means.
const GZIP_LEVEL: u32 = 6;
/// Kafka's default `compression.zstd.level`.
const ZSTD_LEVEL: i32 = 3;
/// The gzip levels Kafka accepts besides -1 (`Deflater.BEST_SPEED..=BEST_COMPRESSION`).
pub const GZIP_LEVELS: core::ops::RangeInclusive<i32> = 1..=9;
/// The LZ4 levels Kafka accepts (`compression.lz4.level`); kelp accepts them and writes one speed.
pub const LZ4_LEVELS: core::ops::RangeInclusive<i32> = 1..=17;
/// The zstd levels Kafka accepts (`compression.zstd.level`: zstd's minimum to its maximum).
pub const ZSTD_LEVELS: core::ops::RangeInclusive<i32> = -131_072..=22;
/// The smallest zstd window a decoder accepts, whatever the output limit: streaming encoders
/// (zstd-jni in the Java client) declare windows of 2-8 MiB even for small payloads.
const ZSTD_MIN_WINDOW_LOG: u32 = 24;
/// zstd's own default cap on the window (128 MiB).
const ZSTD_MAX_WINDOW_LOG: u32 = 27;
/// First output buffer of a streaming decoder, before doubling.
const MIN_OUTPUT_CHUNK: usize = 4 * 1024;

/// Appends `input` compressed with `codec` at its default level to `out`.
/// [`Compression::None`] copies.
pub fn compress(codec: Compression, input: &[u8], out: &mut Vec<u8>) -> Result<(), RecordsError> {
    compress_level(codec, None, input, out)
}

/// Appends `input` compressed with `codec` to `out`, at `level` where the codec has one
/// (`None`, and gzip's -1, mean the codec's default). gzip takes 1 to 9 and zstd
/// [`ZSTD_LEVELS`]; a level out of range is [`RecordsError::Unencodable`]. LZ4 and snappy
/// ignore the level.
pub fn compress_level(
    codec: Compression,
    level: Option<i32>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RecordsError> {
    match codec {
        Compression::None => {
            out.extend_from_slice(input);
            Ok(())
        }
        Compression::Gzip => gzip_compress(input, gzip_level(level)?, out),
        Compression::Snappy => snappy_compress_xerial(input, out),
        Compression::Lz4 => lz4_compress(input, out),
        Compression::Zstd => zstd_compress(input, zstd_level(level)?, out),
    }
}

fn gzip_level(level: Option<i32>) -> Result<u32, RecordsError> {
    match level {
        None | Some(-1) => Ok(GZIP_LEVEL),
        Some(l) if GZIP_LEVELS.contains(&l) => Ok(l.unsigned_abs()),
        Some(_) => Err(RecordsError::Unencodable("gzip level outside -1 and 1..=9")),
    }
}

fn zstd_level(level: Option<i32>) -> Result<i32, RecordsError> {
    match level {
        None => Ok(ZSTD_LEVEL),
        Some(l) if ZSTD_LEVELS.contains(&l) => Ok(l),
        Some(_) => Err(RecordsError::Unencodable("zstd level outside -131072..=22")),
    }
}

/// Decompresses `input`, failing if the output would be longer than `max_len` bytes.
/// [`Compression::None`] copies (and applies the same bound).
pub fn decompress(codec: Compression, input: &[u8], max_len: usize) -> Result<Vec<u8>, RecordsError> {
    match codec {
        Compression::None if input.len() > max_len => Err(RecordsError::DecompressedTooLarge { limit: max_len }),
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(input), input.len(), max_len, "gzip"),
        Compression::Snappy => snappy_decompress(input, max_len),
        Compression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(input), input.len(), max_len, "lz4"),
        Compression::Zstd => zstd_decompress(input, max_len),
    }
}

/// Reads `r` to its end into a buffer that doubles from a guess based on the compressed size
/// but never grows past `max_len + 1` bytes.
fn read_bounded<R: Read>(
    mut r: R,
    input_len: usize,
    max_len: usize,
    ctx: &'static str,
) -> Result<Vec<u8>, RecordsError> {
    let cap = max_len.saturating_add(1);
    let mut buf = vec![0u8; input_len.saturating_mul(4).max(MIN_OUTPUT_CHUNK).min(cap)];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if filled >= cap {
                return Err(RecordsError::DecompressedTooLarge { limit: max_len });
            }
            buf.resize(filled.saturating_mul(2).min(cap), 0);
        }
        let Some(free) = buf.get_mut(filled..) else { break };
        match r.read(free) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(RecordsError::Decompression(ctx)),
        }
    }
    if filled > max_len {
        return Err(RecordsError::DecompressedTooLarge { limit: max_len });
    }
    buf.truncate(filled);
    Ok(buf)
}

fn gzip_compress(input: &[u8], level: u32, out: &mut Vec<u8>) -> Result<(), RecordsError> {
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
    enc.write_all(input).map_err(|_| RecordsError::Unencodable("gzip"))?;
    enc.finish().map_err(|_| RecordsError::Unencodable("gzip"))?;
    Ok(())
}

fn lz4_compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), RecordsError> {
    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
    // Kafka's KafkaLZ4BlockInputStream reads only independent blocks.
    let info = FrameInfo::new().block_size(BlockSize::Max64KB).block_mode(BlockMode::Independent);
    let mut enc = FrameEncoder::with_frame_info(info, out);
    enc.write_all(input).map_err(|_| RecordsError::Unencodable("lz4"))?;
    enc.finish().map_err(|_| RecordsError::Unencodable("lz4"))?;
    Ok(())
}

fn zstd_compress(input: &[u8], level: i32, out: &mut Vec<u8>) -> Result<(), RecordsError> {
    let compressed = zstd::bulk::compress(input, level).map_err(|_| RecordsError::Unencodable("zstd"))?;
    out.extend_from_slice(&compressed);
    Ok(())
}

fn zstd_decompress(input: &[u8], max_len: usize) -> Result<Vec<u8>, RecordsError> {
    let mut dec = zstd::stream::read::Decoder::with_buffer(input).map_err(|_| RecordsError::Decompression("zstd"))?;
    // The window is the decoder's one big allocation and the frame header chooses it: cap it.
    let window_log = usize::BITS - max_len.leading_zeros();
    dec.window_log_max(window_log.clamp(ZSTD_MIN_WINDOW_LOG, ZSTD_MAX_WINDOW_LOG))
        .map_err(|_| RecordsError::Decompression("zstd"))?;
    read_bounded(dec, input.len(), max_len, "zstd")
}

/// Appends `input` as one raw snappy block (the format librdkafka writes).
pub fn snappy_compress_raw(input: &[u8], out: &mut Vec<u8>) -> Result<(), RecordsError> {
    let start = out.len();
    out.resize(start + snap::raw::max_compress_len(input.len()), 0);
    let dst = out.get_mut(start..).unwrap_or_default();
    let n = snap::raw::Encoder::new().compress(input, dst).map_err(|_| RecordsError::Unencodable("snappy"))?;
    out.truncate(start + n);
    Ok(())
}

/// Appends `input` in snappy-java's framing: the 16-byte header, then blocks of
/// `[i32 BE compressed length][raw snappy block]`, each block holding up to 32 KiB of input.
pub fn snappy_compress_xerial(input: &[u8], out: &mut Vec<u8>) -> Result<(), RecordsError> {
    out.extend_from_slice(&XERIAL_HEADER);
    for chunk in input.chunks(XERIAL_BLOCK) {
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        snappy_compress_raw(chunk, out)?;
        let len = i32::try_from(out.len() - len_at - 4).map_err(|_| RecordsError::Unencodable("snappy"))?;
        if let Some(slot) = out.get_mut(len_at..len_at + 4) {
            slot.copy_from_slice(&len.to_be_bytes());
        }
    }
    Ok(())
}

/// Decompresses snappy in either format, told apart by the xerial magic (as snappy-java's
/// `SnappyInputStream` does).
fn snappy_decompress(input: &[u8], max_len: usize) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    if input.starts_with(&XERIAL_MAGIC) {
        snappy_xerial_blocks(input, max_len, &mut out)?;
    } else {
        snappy_raw_block(input, max_len, &mut out)?;
    }
    Ok(out)
}

/// Decompresses one raw block onto `out`; the block's declared length is checked against
/// the budget before anything is allocated.
fn snappy_raw_block(block: &[u8], max_len: usize, out: &mut Vec<u8>) -> Result<(), RecordsError> {
    let n = snap::raw::decompress_len(block).map_err(|_| RecordsError::Decompression("snappy"))?;
    let start = out.len();
    if n > max_len.saturating_sub(start) {
        return Err(RecordsError::DecompressedTooLarge { limit: max_len });
    }
    out.resize(start + n, 0);
    let dst = out.get_mut(start..).unwrap_or_default();
    let written =
        snap::raw::Decoder::new().decompress(block, dst).map_err(|_| RecordsError::Decompression("snappy"))?;
    out.truncate(start + written);
    Ok(())
}

/// Walks the blocks of a xerial stream. A header met again between blocks starts a
/// concatenated stream and is skipped, as snappy-java does.
fn snappy_xerial_blocks(input: &[u8], max_len: usize, out: &mut Vec<u8>) -> Result<(), RecordsError> {
    let mut rest = input;
    while !rest.is_empty() {
        if rest.starts_with(&XERIAL_MAGIC) {
            rest = rest.get(XERIAL_HEADER.len()..).ok_or(RecordsError::Decompression("snappy xerial header"))?;
            continue;
        }
        let (len, tail) = rest.split_first_chunk::<4>().ok_or(RecordsError::Decompression("snappy block length"))?;
        let len = usize::try_from(i32::from_be_bytes(*len))
            .map_err(|_| RecordsError::Decompression("snappy block length"))?;
        if len > tail.len() {
            return Err(RecordsError::Decompression("snappy block length"));
        }
        let (block, tail) = tail.split_at(len);
        snappy_raw_block(block, max_len, out)?;
        rest = tail;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect()
    }

    #[test]
    fn every_codec_round_trips() {
        for len in [0, 1, 100, 70_000, 200_000] {
            let data = sample(len);
            for codec in Compression::ALL {
                let mut packed = Vec::new();
                compress(codec, &data, &mut packed).unwrap();
                let back = decompress(codec, &packed, len).unwrap();
                assert_eq!(back, data, "{codec} at {len}");
            }
        }
    }

    #[test]
    fn levels_change_the_output_and_still_round_trip() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 13) as u8 + (i / 5000) as u8).collect();
        let size = |codec, level| {
            let mut out = Vec::new();
            compress_level(codec, level, &data, &mut out).unwrap();
            assert_eq!(decompress(codec, &out, data.len()).unwrap(), data, "{codec} {level:?}");
            out.len()
        };
        assert!(size(Compression::Gzip, Some(9)) < size(Compression::Gzip, Some(1)));
        assert_eq!(size(Compression::Gzip, Some(-1)), size(Compression::Gzip, None));
        assert!(size(Compression::Zstd, Some(19)) < size(Compression::Zstd, Some(-50)));
        for level in [Some(*ZSTD_LEVELS.start()), Some(*ZSTD_LEVELS.end()), Some(0)] {
            size(Compression::Zstd, level);
        }
        // LZ4 accepts Kafka's levels but writes one speed.
        assert_eq!(size(Compression::Lz4, Some(17)), size(Compression::Lz4, Some(1)));
        for (codec, level) in [(Compression::Gzip, 0), (Compression::Gzip, 10), (Compression::Zstd, 23)] {
            let r = compress_level(codec, Some(level), &data, &mut Vec::new());
            assert!(matches!(r, Err(RecordsError::Unencodable(_))), "{codec} {level}");
        }
    }

    #[test]
    fn snappy_reads_raw_and_xerial() {
        let data = sample(100_000);
        let (mut raw, mut framed) = (Vec::new(), Vec::new());
        snappy_compress_raw(&data, &mut raw).unwrap();
        snappy_compress_xerial(&data, &mut framed).unwrap();
        assert!(framed.starts_with(&XERIAL_MAGIC));
        assert_eq!(framed.get(8..16), Some(&[0, 0, 0, 1, 0, 0, 0, 1][..]));
        assert_eq!(decompress(Compression::Snappy, &raw, data.len()).unwrap(), data);
        assert_eq!(decompress(Compression::Snappy, &framed, data.len()).unwrap(), data);
        // Two xerial streams back to back read as one.
        let twice = [framed.clone(), framed].concat();
        assert_eq!(decompress(Compression::Snappy, &twice, 2 * data.len()).unwrap(), [&data[..], &data[..]].concat());
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        for codec in Compression::ALL {
            let mut packed = Vec::new();
            compress(codec, &zeros, &mut packed).unwrap();
            let limit = 1 << 20;
            assert_eq!(decompress(codec, &packed, limit), Err(RecordsError::DecompressedTooLarge { limit }), "{codec}");
            // Exactly at the limit is fine.
            assert_eq!(decompress(codec, &packed, zeros.len()).map(|v| v.len()), Ok(zeros.len()));
        }
    }

    #[test]
    fn garbage_is_a_clean_error() {
        let junk = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff];
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            for input in [&junk[..], &junk[..10], &[][..], &[0xff; 64][..]] {
                let r = decompress(codec, input, 1 << 20);
                assert!(matches!(r, Err(RecordsError::Decompression(_)) | Ok(_)), "{codec}: {r:?}");
            }
        }
    }

    #[test]
    fn truncated_streams_fail() {
        let data = sample(50_000);
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let mut packed = Vec::new();
            compress(codec, &data, &mut packed).unwrap();
            let cut = &packed[..packed.len() / 2];
            assert!(decompress(codec, cut, 1 << 20).is_err(), "{codec}");
        }
    }
}
