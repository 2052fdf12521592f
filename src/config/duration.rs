//! Duration strings of the config file: `500ms`, `5s`, `10m`, `3h`, `1d`, `2w`, `1y`, and compounds
//! such as `1h30m`.

use std::time::Duration;

const SECOND_MS: u64 = 1_000;
const MINUTE_MS: u64 = 60 * SECOND_MS;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;
const WEEK_MS: u64 = 7 * DAY_MS;
const YEAR_MS: u64 = 365 * DAY_MS;

/// Parses a duration such as `5s` or `1h30m`; units are `ms`, `s`, `m`, `h`, `d`, `w`, `y` (365 days).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = |why: &str| {
        format!("invalid duration `{text}`: {why} (examples: 500ms, 5s, 10m, 3h, 1d, 1y, 1h30m)")
    };
    if text.is_empty() {
        return Err(invalid("empty"));
    }
    let mut total_ms: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid("expected a number"));
        }
        let (number, after) = rest.split_at(digits);
        let units = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(units);
        let unit_ms = match unit {
            "ms" => 1,
            "s" => SECOND_MS,
            "m" => MINUTE_MS,
            "h" => HOUR_MS,
            "d" => DAY_MS,
            "w" => WEEK_MS,
            "y" => YEAR_MS,
            "" => {
                return Err(match after.chars().next() {
                    None => invalid("missing unit"),
                    Some(c) if c.is_whitespace() => invalid("no spaces allowed"),
                    Some(c) => invalid(&format!("unexpected character `{c}`")),
                })
            }
            _ => return Err(invalid(&format!("unknown unit `{unit}`"))),
        };
        let value: u64 = number.parse().map_err(|_| invalid("number too large"))?;
        total_ms = value
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| invalid("too large"))?;
        rest = after;
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("3h"), Ok(Duration::from_secs(3 * 3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("1y"), Ok(Duration::from_secs(365 * 86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn compounds_add_up() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1m500ms"), Ok(Duration::from_millis(60_500)));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "", "5", "s", "5x", "1.5s", "-1s", " 5s", "5s ", "1h 30m", "5S",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        let message = parse_duration("5x").unwrap_err();
        assert!(message.contains("unknown unit `x`"), "{message}");
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(parse_duration("1 year").unwrap_err().contains("no spaces"));
        assert!(parse_duration("1.5s")
            .unwrap_err()
            .contains("unexpected character `.`"));
    }

    #[test]
    fn rejects_overflow() {
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("999999999999999y").is_err());
    }
}
