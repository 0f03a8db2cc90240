//! Parsing the value forms that Corefile options share, with CoreDNS's (Go's) spelling, and
//! printing a duration back as Go does for log lines CoreDNS writes with `%v`.

use std::time::Duration;

/// A Go duration (`time.ParseDuration`): `300ms`, `1.5h`, `2h45m`, `10s`. Units: `ns`, `us`
/// (or `µs`), `ms`, `s`, `m`, `h`. A bare `0` is zero; negative durations are rejected because
/// no Corefile option takes one.
pub fn go_duration(text: &str) -> Result<Duration, String> {
    let err = || format!("time: invalid duration \"{text}\"");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += value * seconds;
    }
    Duration::try_from_secs_f64(total).map_err(|_| err())
}

/// A whole number of seconds or a Go duration (several CoreDNS options accept both).
pub fn seconds_or_duration(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => go_duration(text),
    }
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `5m0s`, `1.5s`, `300ms`, `1.2µs`, `0s`.
pub fn go_duration_string(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (digits, unit) = match nanos {
            n if n < 1_000 => (0, "ns"),
            n if n < 1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        return format!("{}{unit}", fraction(nanos, digits));
    }
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let mut s_part = fraction(secs % 60 * 1_000_000_000 + frac, 9);
    s_part.push('s');
    let mins = secs / 60;
    if mins == 0 {
        return s_part;
    }
    let hours = mins / 60;
    if hours == 0 {
        return format!("{}m{s_part}", mins % 60);
    }
    format!("{hours}h{}m{s_part}", mins % 60)
}

/// `v / 10^digits` with the fraction's trailing zeros (and a bare point) left out.
fn fraction(v: u128, digits: u32) -> String {
    let scale = 10u128.pow(digits);
    let (whole, frac) = (v / scale, v % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let mut f = format!("{frac:0width$}", width = digits as usize);
    while f.ends_with('0') {
        f.pop();
    }
    format!("{whole}.{f}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(go_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "s", "5x", "-1s", "1..5s"] {
            assert!(go_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(seconds_or_duration("30"), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        for (d, want) in [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(15), "15ns"),
            (Duration::from_nanos(1500), "1.5µs"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_micros(2500), "2.5ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_secs(3723), "1h2m3s"),
            (Duration::from_secs(3600), "1h0m0s"),
        ] {
            assert_eq!(go_duration_string(d), want);
        }
    }
}
