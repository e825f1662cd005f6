//! Human sizes (`256M`, `1.5G`, `4096`) and durations (`500ms`, `5s`, `2m`, a number of ms).
//!
//! Runs in: the client, reading a policy.
//!
//! Both are accepted as a JSON number or a string everywhere a policy takes them; the
//! parsers here are the only place those spellings are defined (the CLI calls them too,
//! through the addon).

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest size we accept: 2^53 bytes (8 PiB), the largest integer a JS number holds exactly.
pub const MAX_SIZE: u64 = 1 << 53;
/// Longest duration we accept: 30 days, in milliseconds.
pub const MAX_DURATION_MS: u64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Size(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DurationMs(pub u64);

/// Parses `1024`, `64k`, `256M`, `1.5G`, `2T` (binary multiples; a trailing `B`/`iB` is
/// allowed: `256MB`, `256MiB`). Case-insensitive.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty size".into());
    }
    let lower = t.to_ascii_lowercase();
    let split = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let unit = unit.trim();
    let unit = unit.strip_suffix("ib").or_else(|| unit.strip_suffix('b')).unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("unknown size unit in {text:?} (use k, M, G or T)")),
    };
    let value: f64 = num.parse().map_err(|_| format!("not a size: {text:?}"))?;
    checked_size(value * mult as f64, text)
}

fn checked_size(bytes: f64, text: &str) -> Result<u64, String> {
    if !bytes.is_finite() || bytes < 0.0 {
        return Err(format!("not a size: {text:?}"));
    }
    if bytes > MAX_SIZE as f64 {
        return Err(format!("size {text:?} is too large (at most 8P)"));
    }
    if bytes.fract() != 0.0 {
        return Err(format!("size {text:?} is not a whole number of bytes"));
    }
    Ok(bytes as u64)
}

/// Parses `250` (ms), `250ms`, `5s`, `1.5s`, `2m`, `1h`.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit.trim() {
        "" | "ms" => 1.0,
        "s" | "sec" => 1e3,
        "m" | "min" => 60e3,
        "h" => 3600e3,
        _ => return Err(format!("unknown duration unit in {text:?} (use ms, s, m or h)")),
    };
    let value: f64 = num.parse().map_err(|_| format!("not a duration: {text:?}"))?;
    checked_ms(value * mult, text)
}

fn checked_ms(ms: f64, text: &str) -> Result<u64, String> {
    if !ms.is_finite() || ms < 0.0 {
        return Err(format!("not a duration: {text:?}"));
    }
    if ms > MAX_DURATION_MS as f64 {
        return Err(format!("duration {text:?} is too long (at most 30 days)"));
    }
    Ok(ms.ceil() as u64)
}

struct NumberOrString<F: Fn(&str) -> Result<u64, String>> {
    what: &'static str,
    parse: F,
    max: u64,
}

impl<'de, F: Fn(&str) -> Result<u64, String>> Visitor<'de> for NumberOrString<F> {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} (number or string)", self.what)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        if v > self.max {
            return Err(E::custom(format!("{} {v} is too large", self.what)));
        }
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        if v < 0 {
            return Err(E::custom(format!("{} must not be negative", self.what)));
        }
        self.visit_u64(v as u64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        if !v.is_finite() || v < 0.0 || v.fract() != 0.0 {
            return Err(E::custom(format!("{} must be a whole, non-negative number", self.what)));
        }
        self.visit_u64(v as u64)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        (self.parse)(v).map_err(E::custom)
    }
}

/// A number, or a decimal number with an optional unit, with space around allowed.
const NUMBER: &str = r"^\s*([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*";

impl schemars::JsonSchema for Size {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Bytes, or a string with a binary unit: '4096', '64k', '256M', '1.5G', '2T' (a trailing B or iB is allowed).",
            "anyOf": [
                { "type": "integer", "minimum": 0, "maximum": MAX_SIZE },
                { "type": "string", "pattern": format!("{NUMBER}([kKmMgGtT]?([iI]?[bB])?)\\s*$") }
            ]
        })
    }
}

impl schemars::JsonSchema for DurationMs {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Milliseconds, or a string with a unit: '250ms', '5s', '1.5s', '2m', '1h' (at most 30 days).",
            "anyOf": [
                { "type": "integer", "minimum": 0, "maximum": MAX_DURATION_MS },
                { "type": "string", "pattern": format!("{NUMBER}([mM][sS]|[sS]([eE][cC])?|[mM]([iI][nN])?|[hH])?\\s*$") }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumberOrString { what: "size", parse: parse_size, max: MAX_SIZE }).map(Size)
    }
}

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumberOrString { what: "duration", parse: parse_duration_ms, max: MAX_DURATION_MS })
            .map(DurationMs)
    }
}

/// Formats bytes the way `parse_size` reads them back (`256M`, `1.5G`, `4096`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("k", 1 << 10)];
    for (unit, mult) in UNITS {
        if bytes >= mult {
            let v = bytes as f64 / mult as f64;
            return if v.fract() == 0.0 { format!("{}{unit}", v as u64) } else { format!("{v:.1}{unit}") };
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("256MB").unwrap(), 256 << 20);
        assert_eq!(parse_size("256mib").unwrap(), 256 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size(" 2T ").unwrap(), 2 << 40);
        assert!(parse_size("").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1.5").is_err());
        assert!(parse_size("99999999P").is_err());
        assert!(parse_size("1e400").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("250").unwrap(), 250);
        assert_eq!(parse_duration_ms("250ms").unwrap(), 250);
        assert_eq!(parse_duration_ms("5s").unwrap(), 5000);
        assert_eq!(parse_duration_ms("1.5s").unwrap(), 1500);
        assert_eq!(parse_duration_ms("2m").unwrap(), 120_000);
        assert_eq!(parse_duration_ms("1h").unwrap(), 3_600_000);
        assert!(parse_duration_ms("5 weeks").is_err());
        assert!(parse_duration_ms("999h").is_err());
    }

    #[test]
    fn serde_number_or_string() {
        let s: Size = serde_json::from_str("\"1G\"").unwrap();
        assert_eq!(s.0, 1 << 30);
        let s: Size = serde_json::from_str("1024").unwrap();
        assert_eq!(s.0, 1024);
        assert!(serde_json::from_str::<Size>("-5").is_err());
        assert!(serde_json::from_str::<Size>("1.5").is_err());
        assert!(serde_json::from_str::<Size>("true").is_err());
        let d: DurationMs = serde_json::from_str("\"5s\"").unwrap();
        assert_eq!(d.0, 5000);
    }

    #[test]
    fn format_round_trips() {
        for v in [0u64, 1, 4096, 256 << 20, 3 << 29, 1 << 30] {
            assert_eq!(parse_size(&format_size(v)).unwrap(), v);
        }
    }
}
