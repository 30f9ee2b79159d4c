//! Counts in options (`--max-live-futures`, `--max-resources`, `--max-concurrent-requests`):
//! whole numbers from 1 to [`MAX_COUNT`].

use super::positive;

/// Largest count any option takes: 2^32 - 1 (resource handles are 32-bit).
pub const MAX_COUNT: usize = u32::MAX as usize;

/// Parses a count from 1 to [`MAX_COUNT`].
pub fn parse_count(text: &str) -> Result<usize, String> {
    let count: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a count (expected a whole number, e.g. 1000)"))?;
    if count > MAX_COUNT {
        return Err(format!("`{text}` is too large (at most {MAX_COUNT})"));
    }
    positive(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(parse_count("1000"), Ok(1000));
        assert_eq!(parse_count("4294967295"), Ok(MAX_COUNT));
        assert_eq!(parse_count("0"), Err("must be above zero".into()));
        assert!(parse_count("4294967296").unwrap_err().contains("too large"));
        assert!(
            parse_count("18446744073709551616")
                .unwrap_err()
                .contains("not a count")
        );
        assert!(parse_count("-1").unwrap_err().contains("not a count"));
        assert!(parse_count("1k").unwrap_err().contains("not a count"));
    }
}
