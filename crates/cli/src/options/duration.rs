//! Durations in options: parsed by the `humantime` crate (`300ms`, `30s`, `2m`, `1h 30m`, ...)
//! within [`MAX_DURATION`], and written in messages by it (`2s`, `1m 30s`).

use std::time::Duration;

use humantime::DurationError;

use super::positive;

/// Longest duration any option takes: 365 days (a deadline that far off is as good as none,
/// and no clock arithmetic can overflow).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// [`MAX_DURATION`] as the options write it (humantime would write `11months 30days 3h 50m
/// 24s`, its months and years not being whole days).
const MAX_DURATION_TEXT: &str = "8760h";

/// What a duration looks like, for errors.
const HINT: &str = "expected e.g. 300ms, 30s or 2m";

/// Parses a duration: a whole number followed by `ns`, `us`, `ms`, `s`, `m` or `h` (or a bare
/// `0`), or anything else `humantime` takes (`1h 30m`, `1.5s`, `3d`), at most
/// [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let too_large = || format!("`{text}` is too large (at most {MAX_DURATION_TEXT}, 365 days)");
    let duration = humantime::parse_duration(text).map_err(|err| match err {
        DurationError::NumberOverflow => too_large(),
        DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
            format!("`{text}` has no unit ({HINT})")
        }
        DurationError::UnknownUnit { unit, .. } => {
            format!("unknown duration unit `{unit}` ({HINT})")
        }
        _ => format!("`{text}` is not a duration ({HINT})"),
    })?;
    if duration > MAX_DURATION {
        return Err(too_large());
    }
    Ok(duration)
}

/// [`parse_duration`] of a duration that must not be zero.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    positive(parse_duration(text)?)
}

/// A duration as `humantime` writes it: `2s`, `500ms`, `2m`, `1m 30s`.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("5us"), Ok(Duration::from_micros(5)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("soon").is_err());
        // humantime takes days, fractions and sums (`3d` was an unknown unit).
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(
            parse_duration("3x")
                .unwrap_err()
                .contains("unknown duration unit `x`")
        );
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_positive_duration("0ms"),
            Err("must be above zero".into())
        );
        // Up to 365 days, not a nanosecond more.
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration(MAX_DURATION_TEXT), Ok(MAX_DURATION));
        for text in [
            "8761h",
            "31536001s",
            "366d",
            "18446744073709551615s",
            "18446744073709551615ns",
            "307445734561825861m",
            "18446744073709551615h",
            "99999999999999999999s",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("too large (at most 8760h"), "{text}: {err}");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(format_duration(Duration::from_nanos(7)), "7ns");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        for text in ["5s", "300ms", "2m", "1h", "7us", "1h 30m"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
