//! Go-style durations (`14h`, `1h30m`, `90s`, `500ms`), as Pomerium's
//! configs are written with Go's `time.ParseDuration`.

use std::time::Duration;

/// Nanoseconds per unit, longest spellings first so `ms` is not read as `m`.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parse a Go duration. Negative durations are refused: no key wants one.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(format!("`{text}` is negative"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration; write e.g. `90s`, `5m` or `1h30m`".to_owned());
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(format!(
                "`{text}` is not a duration; write e.g. `90s`, `5m` or `1h30m`"
            ));
        }
        if unit.is_empty() {
            return Err(format!(
                "`{text}` has a number without a unit; write e.g. `{number}s`"
            ));
        }
        let Some(&(_, per_unit)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use ns, us, ms, s, m or h)"
            ));
        };
        let too_large = || format!("`{text}` is too large");
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        // Digits past nanosecond precision cannot matter; dropping them keeps
        // the arithmetic in range.
        let fraction = &fraction[..fraction.len().min(18)];
        let fraction_value: u128 = if fraction.is_empty() {
            0
        } else {
            fraction
                .parse()
                .map_err(|_| format!("`{text}` is not a duration"))?
        };
        let scale = 10u128.pow(u32::try_from(fraction.len()).unwrap_or(18));
        let nanos = whole
            .checked_mul(per_unit)
            .and_then(|n| n.checked_add(fraction_value * per_unit / scale))
            .ok_or_else(too_large)?;
        total = total.checked_add(nanos).ok_or_else(too_large)?;
        rest = after;
    }
    let secs =
        u64::try_from(total / 1_000_000_000).map_err(|_| format!("`{text}` is too large"))?;
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn go_durations_parse() {
        let cases: &[(&str, Duration)] = &[
            ("14h", Duration::from_secs(14 * 3600)),
            ("1h30m", Duration::from_secs(5400)),
            ("90s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("1.5h", Duration::from_secs(5400)),
            ("2m0.5s", Duration::from_millis(120_500)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("+5m", Duration::from_secs(300)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).as_ref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_durations_are_refused_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "empty duration"),
            ("90", "without a unit"),
            ("-5m", "negative"),
            ("5 minutes", "unknown unit"),
            ("1d", "unknown unit `d`"),
            ("h", "not a duration"),
            ("99999999999999999999999h", "too large"),
        ];
        for (text, want) in cases {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
