//! Durations as people type them on a command line: `10s`, `500ms`, `2m`.
//!
//! A number (whole or decimal) followed by one unit: `us`, `ms`, `s`, `m` or
//! `h`. A bare number is refused rather than guessed at, so that `--duration
//! 10` cannot silently mean ten microseconds or ten minutes.
//!
//! ```
//! use std::time::Duration;
//! assert_eq!(loadgen::duration::parse("1.5s"), Ok(Duration::from_millis(1500)));
//! ```

use std::time::Duration;

/// Units, longest suffix first so that `ms` is not read as `m`.
const UNITS: [(&str, f64); 5] = [
    ("us", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
];

/// The longest duration any flag accepts: a day. Every run must end.
pub const DURATION_MAX: Duration = Duration::from_secs(24 * 3600);

/// Parses `text` into a duration of at least one microsecond and at most
/// [`DURATION_MAX`].
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = UNITS
        .iter()
        .find_map(|&(unit, scale)| text.strip_suffix(unit).map(|number| (number, scale)))
        .ok_or_else(|| format!("`{text}` needs a unit: us, ms, s, m or h (e.g. 10s, 500ms)"))?;
    // `f64::from_str` also takes `inf`, `nan` and exponents; a duration is
    // digits with at most one decimal point.
    let plain = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && number.bytes().filter(|&b| b == b'.').count() <= 1
        && number != ".";
    if !plain {
        return Err(format!("`{text}` is not a duration (e.g. 10s, 500ms, 2m)"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let seconds = value * scale;
    if seconds > DURATION_MAX.as_secs_f64() {
        return Err(format!("`{text}` is longer than the maximum of 24h"));
    }
    let duration = Duration::from_secs_f64(seconds);
    if duration < Duration::from_micros(1) {
        return Err(format!("`{text}` is shorter than a microsecond"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse(" 3s "), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in [
            "", "10", "s", "-1s", "1e3s", "infs", "nans", "1.2.3s", ".s", "10 s", "10sec", "0s",
            "25h",
        ] {
            assert!(parse(bad).is_err(), "`{bad}` should be refused");
        }
    }
}
