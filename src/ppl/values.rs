//! Parsers for the scalar formats PPL accepts: times of day, timestamps, day names, certificate
//! fingerprints, SPKI hashes and IP ranges. Each returns the precompiled form the evaluator uses.

use std::net::IpAddr;

use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use ipnet::IpNet;

pub(crate) const NANOS_PER_SEC: u64 = 1_000_000_000;
const NANOS_PER_DAY: u64 = 86_400 * NANOS_PER_SEC;

/// A time of day as nanoseconds since midnight. Accepted: `3:04 PM`, `3:04PM`, `3 PM`, `3PM`
/// (12-hour, `AM`/`PM` in any case), `15:04:05.999999999`, `15:04:05`, `15:04` (24-hour; 1 to 9
/// fractional digits).
pub(crate) fn parse_time_of_day(text: &str) -> Option<u64> {
    let text = text.trim();
    let upper = text.to_ascii_uppercase();
    if let Some(rest) = upper
        .strip_suffix("AM")
        .or_else(|| upper.strip_suffix("PM"))
    {
        let pm = upper.ends_with("PM");
        let rest = rest.strip_suffix(' ').unwrap_or(rest);
        let (h, m) = match rest.split_once(':') {
            Some((h, m)) => (h, Some(m)),
            None => (rest, None),
        };
        let hour = number(h, 1, 2)?;
        if !(1..=12).contains(&hour) {
            return None;
        }
        let minute = match m {
            Some(m) => number(m, 2, 2).filter(|m| *m < 60)?,
            None => 0,
        };
        let hour = (hour % 12) + if pm { 12 } else { 0 };
        return Some((hour * 3600 + minute * 60) * NANOS_PER_SEC);
    }
    let mut parts = text.splitn(3, ':');
    let hour = number(parts.next()?, 1, 2).filter(|h| *h < 24)?;
    let minute = number(parts.next()?, 2, 2).filter(|m| *m < 60)?;
    let (second, nanos) = match parts.next() {
        None => (0, 0),
        Some(sec) => {
            let (s, frac) = match sec.split_once('.') {
                Some((s, f)) => (s, Some(f)),
                None => (sec, None),
            };
            let s = number(s, 2, 2).filter(|s| *s < 60)?;
            let nanos = match frac {
                None => 0,
                Some(f) => {
                    let digits = number(f, 1, 9)?;
                    digits * 10u64.pow(9 - f.len() as u32)
                }
            };
            (s, nanos)
        }
    };
    Some((hour * 3600 + minute * 60 + second) * NANOS_PER_SEC + nanos)
}

/// ASCII digits only, between `min` and `max` of them.
fn number(text: &str, min: usize, max: usize) -> Option<u64> {
    if text.len() < min || text.len() > max || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Nanoseconds since local midnight of a wall-clock time.
pub(crate) fn nanos_of_day(time: chrono::NaiveTime) -> u64 {
    use chrono::Timelike;
    let nanos =
        u64::from(time.num_seconds_from_midnight()) * NANOS_PER_SEC + u64::from(time.nanosecond());
    nanos.min(NANOS_PER_DAY - 1)
}

/// An RFC 3339 / ISO-8601 timestamp. Without an offset it is UTC; a date alone is its midnight
/// UTC. `T` or a space may separate date and time; seconds are optional.
pub(crate) fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M%:z", "%Y-%m-%d %H:%M%:z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    let naive = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix('z'))
        .unwrap_or(text);
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, format) {
            return Some(t.and_utc());
        }
    }
    if naive.len() == text.len()
        && let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
    {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    None
}

/// The day (0 = Monday … 6 = Sunday) of an English name or its 3-letter abbreviation.
pub(crate) fn parse_day(text: &str) -> Option<u8> {
    const DAYS: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let lower = text.trim().to_ascii_lowercase();
    DAYS.iter()
        .position(|d| *d == lower || (lower.len() == 3 && d.starts_with(lower.as_str())))
        .map(|i| i as u8)
}

/// A set of days as a bitmask (bit 0 = Monday): `*`, a comma list (`mon,wed,fri`), ranges
/// (`mon-fri`, wrapping `fri-mon`), or a comma list mixing both. The error names the bad part.
pub(crate) fn parse_days(text: &str) -> Result<u8, String> {
    if text.trim() == "*" {
        return Ok(0x7f);
    }
    let mut mask = 0u8;
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("empty day in {text:?}"));
        }
        let day = |name: &str| {
            parse_day(name).ok_or_else(|| {
                format!(
                    "unknown day {:?} (expected an English day name or its 3-letter abbreviation, e.g. mon, tuesday)",
                    name.trim()
                )
            })
        };
        match item.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day(from)?, day(to)?);
                let mut d = from;
                loop {
                    mask |= 1 << d;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << day(item)?,
        }
    }
    Ok(mask)
}

/// A SHA-256 certificate fingerprint: 64 lowercase hex digits, or 32 colon-separated pairs of
/// uppercase hex digits.
pub(crate) fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let plain = if text.len() == 64 {
        if !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        text.to_string()
    } else if text.len() == 95 {
        let ok = text.bytes().enumerate().all(|(i, b)| {
            if i % 3 == 2 {
                b == b':'
            } else {
                matches!(b, b'0'..=b'9' | b'A'..=b'F')
            }
        });
        if !ok {
            return None;
        }
        text.replace(':', "")
    } else {
        return None;
    };
    let mut out = [0u8; 32];
    hex::decode_to_slice(plain, &mut out).ok()?;
    Some(out)
}

/// A base64 (standard alphabet, padding optional) SHA-256 hash of a SubjectPublicKeyInfo.
pub(crate) fn parse_spki_hash(text: &str) -> Option<[u8; 32]> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .ok()?;
    bytes.try_into().ok()
}

/// An IP range: CIDR notation, or a bare address (a /32 or /128).
pub(crate) fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net.trunc());
    }
    text.parse::<IpAddr>().ok().map(IpNet::from)
}

/// An IPv4 address carried in IPv6 (`::ffff:a.b.c.d`) is the IPv4 address.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hms(h: u64, m: u64, s: u64) -> u64 {
        (h * 3600 + m * 60 + s) * NANOS_PER_SEC
    }

    #[test]
    fn times_of_day() {
        assert_eq!(parse_time_of_day("3:04 PM"), Some(hms(15, 4, 0)));
        assert_eq!(parse_time_of_day("3:04PM"), Some(hms(15, 4, 0)));
        assert_eq!(parse_time_of_day("3 PM"), Some(hms(15, 0, 0)));
        assert_eq!(parse_time_of_day("3PM"), Some(hms(15, 0, 0)));
        assert_eq!(parse_time_of_day("3pm"), Some(hms(15, 0, 0)));
        assert_eq!(parse_time_of_day("12 AM"), Some(0));
        assert_eq!(parse_time_of_day("12:30 PM"), Some(hms(12, 30, 0)));
        assert_eq!(parse_time_of_day("11:59 PM"), Some(hms(23, 59, 0)));
        assert_eq!(parse_time_of_day("15:04:05"), Some(hms(15, 4, 5)));
        assert_eq!(parse_time_of_day("15:04"), Some(hms(15, 4, 0)));
        assert_eq!(parse_time_of_day("9:00"), Some(hms(9, 0, 0)));
        assert_eq!(
            parse_time_of_day("15:04:05.5"),
            Some(hms(15, 4, 5) + 500_000_000)
        );
        assert_eq!(
            parse_time_of_day("15:04:05.999999999"),
            Some(hms(15, 4, 5) + 999_999_999)
        );
        for bad in [
            "",
            "25:00",
            "13 PM",
            "0 PM",
            "15",
            "15:4",
            "15:04:5",
            "15:04:05.",
            "15:04:05.1234567890",
            "3:04 XM",
            "noon",
            "15:60",
            "-1:00",
            "1:00:00 PM",
        ] {
            assert_eq!(parse_time_of_day(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn timestamps() {
        let t = |s: &str| parse_timestamp(s).map(|t| t.to_rfc3339());
        assert_eq!(
            t("2026-01-02T03:04:05Z").as_deref(),
            Some("2026-01-02T03:04:05+00:00")
        );
        assert_eq!(
            t("2026-01-02T03:04:05+02:00").as_deref(),
            Some("2026-01-02T01:04:05+00:00")
        );
        assert_eq!(
            t("2026-01-02T03:04:05").as_deref(),
            Some("2026-01-02T03:04:05+00:00")
        );
        assert_eq!(
            t("2026-01-02 03:04").as_deref(),
            Some("2026-01-02T03:04:00+00:00")
        );
        assert_eq!(
            t("2026-01-02T03:04Z").as_deref(),
            Some("2026-01-02T03:04:00+00:00")
        );
        assert_eq!(
            t("2026-01-02").as_deref(),
            Some("2026-01-02T00:00:00+00:00")
        );
        for bad in [
            "",
            "tomorrow",
            "2026-13-01",
            "2026-01-02Z",
            "2026-01-02T25:00:00Z",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn days() {
        assert_eq!(parse_days("*"), Ok(0x7f));
        assert_eq!(parse_days("mon"), Ok(1));
        assert_eq!(parse_days("Sunday"), Ok(1 << 6));
        assert_eq!(parse_days("mon,wed,fri"), Ok(0b10101));
        assert_eq!(parse_days("mon-fri"), Ok(0b11111));
        assert_eq!(parse_days("fri-mon"), Ok(0b1110001));
        assert_eq!(parse_days("sat-sat"), Ok(1 << 5));
        assert_eq!(parse_days("MON - TUE, sun"), Ok(0b1000011));
        assert!(parse_days("funday").unwrap_err().contains("\"funday\""));
        assert!(parse_days("mon,").is_err());
        assert!(parse_days("mo").is_err());
    }

    #[test]
    fn fingerprints() {
        let lower = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let colons = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";
        assert!(parse_fingerprint(lower).is_some());
        assert_eq!(parse_fingerprint(lower), parse_fingerprint(colons));
        assert_eq!(parse_fingerprint(&lower.to_uppercase()), None);
        assert_eq!(parse_fingerprint(&colons.to_lowercase()), None);
        assert_eq!(parse_fingerprint("abc"), None);
    }

    #[test]
    fn nets() {
        assert_eq!(
            parse_net("10.1.2.3/8").map(|n| n.to_string()).as_deref(),
            Some("10.0.0.0/8")
        );
        assert_eq!(
            parse_net("10.1.2.3").map(|n| n.to_string()).as_deref(),
            Some("10.1.2.3/32")
        );
        assert_eq!(parse_net("2001:db8::1").map(|n| n.prefix_len()), Some(128));
        assert!(parse_net("10.0.0.0/33").is_none());
        assert!(parse_net("300.1.1.1").is_none());
        assert_eq!(
            canonical_ip("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }
}
