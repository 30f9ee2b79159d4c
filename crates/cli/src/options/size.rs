//! Sizes in options: parsed by the `bytesize` crate (`4096`, `64KiB`, `256 MiB`, `1.5GiB`,
//! `1GB`, ...) within [`MAX_SIZE`], and written back in messages the way options take them
//! (`16MiB`).

use bytesize::ByteSize;
use wasi_cache_engine::Config;

use super::positive;

/// Largest size any option takes: 256 TiB, the engine's largest capacity (and more than a
/// 64-bit machine can address), so that no byte count can overflow.
pub const MAX_SIZE: u64 = Config::MAX_CAPACITY;

/// Parses a size: `4096`, `64KiB`, `256MiB`, `1GiB`, `1TiB` (powers of 1024), `64KB`, `1MB`,
/// `1GB`, `1TB` (powers of 1000), with the other units and fractions `bytesize` takes (a
/// fraction of a byte is dropped), at most [`MAX_SIZE`]; units are case-insensitive and may
/// follow a space.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let size = text
        .parse::<ByteSize>()
        .map_err(|_| size_error(text))?
        .as_u64();
    if size > MAX_SIZE {
        return Err(too_large(text));
    }
    Ok(size)
}

/// Why `text`, which `bytesize` refused, is not a size: in the words of the options' other
/// errors (the unit named in lower case).
fn size_error(text: &str) -> String {
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    let unit = unit.trim();
    if number.parse::<f64>().is_err() || (unit.is_empty() && number.contains('.')) {
        format!("`{text}` is not a size (expected e.g. 4096, 64KiB, 256MiB, 1GB)")
    } else if unit.is_empty() {
        // Digits only, too many for a u64.
        too_large(text)
    } else {
        format!(
            "unknown size unit `{}` (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)",
            unit.to_ascii_lowercase()
        )
    }
}

/// The error of a size above [`MAX_SIZE`].
fn too_large(text: &str) -> String {
    format!("`{text}` is too large (at most {})", format_size(MAX_SIZE))
}

/// [`parse_size`] for sizes held in a `usize`.
pub fn parse_size_usize(text: &str) -> Result<usize, String> {
    let size = parse_size(text)?;
    usize::try_from(size).map_err(|_| format!("`{text}` is too large for this machine"))
}

/// [`parse_size`] of a size that must not be zero.
pub fn parse_positive_size(text: &str) -> Result<u64, String> {
    positive(parse_size(text)?)
}

/// [`parse_size_usize`] of a size that must not be zero.
pub fn parse_positive_size_usize(text: &str) -> Result<usize, String> {
    positive(parse_size_usize(text)?)
}

/// A size as the options write it: `16MiB`, `1GiB`, `64KiB` when a whole number of such
/// units, else `10000 bytes`. Exact, unlike `bytesize`'s display (`15.6 MiB`), so that a
/// message names a limit as the option that sets it takes it.
pub fn format_size(bytes: u64) -> String {
    for (unit, size) in [
        ("TiB", bytesize::TIB),
        ("GiB", bytesize::GIB),
        ("MiB", bytesize::MIB),
        ("KiB", bytesize::KIB),
    ] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("256 MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("2KB"), Ok(2_000));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("12B"), Ok(12));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        // bytesize takes fractions (once refused as an unknown unit `.5gib`).
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert!(parse_size("1.5").unwrap_err().contains("is not a size"));
        assert!(
            parse_size("12XB")
                .unwrap_err()
                .contains("unknown size unit `xb`")
        );
        // bytesize knows PiB (once an unknown unit): beyond the range.
        assert!(
            parse_size("10PiB")
                .unwrap_err()
                .contains("too large (at most 256TiB)")
        );
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert_eq!(parse_size("3TB"), Ok(3_000_000_000_000));
        assert!(parse_size("99999999999999999999").is_err());
        assert!(
            parse_size("99999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
        // Up to 256 TiB, not a byte more.
        assert_eq!(parse_size("256TiB"), Ok(MAX_SIZE));
        for text in [
            "257TiB",
            "281474976710657",
            "18446744073709551615",
            "99999999999999999999",
            "99999999999999999999KiB",
        ] {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains("too large (at most 256TiB)"), "{err}");
        }
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_positive_size("0"), Err("must be above zero".into()));
        assert_eq!(
            parse_positive_size_usize("0KiB"),
            Err("must be above zero".into())
        );
        assert_eq!(parse_positive_size_usize("1"), Ok(1));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(16 << 20), "16MiB");
        assert_eq!(format_size(1 << 30), "1GiB");
        assert_eq!(format_size(MAX_SIZE), "256TiB");
        assert_eq!(format_size((16 << 20) + (64 << 10)), "16448KiB");
        assert_eq!(format_size(10_000), "10000 bytes");
        assert_eq!(format_size(0), "0 bytes");
    }
}
