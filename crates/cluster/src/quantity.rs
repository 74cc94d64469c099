//! Storage sizes as Kubernetes writes them (`10Gi`, `500M`, `1.5Ti`, `1e9`), compared in bytes.
//!
//! A target claim must be at least as large as its source, and `--size` is checked against the
//! source's capacity before anything is created, so sizes must be read exactly as the API
//! server reads them.

use crate::{Error, Result};

/// Parses a Kubernetes quantity into bytes (rounded up to a whole byte, as storage is).
pub fn bytes(quantity: &str) -> Result<u128> {
    let invalid = || {
        Error::Invalid(format!(
            "size {quantity:?} is not a Kubernetes quantity: write a number with an optional \
             suffix, such as 10Gi, 500Mi, 1G or 1500000000"
        ))
    };
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    if number.is_empty() || number.starts_with('.') && number.len() == 1 {
        return Err(invalid());
    }
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    let int_part = int_part.strip_prefix('+').unwrap_or(int_part);
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    // value = digits / 10^frac_len * multiplier, computed in integers.
    let digits: u128 = format!("{int_part}{frac_part}")
        .parse()
        .map_err(|_| invalid())?;
    let (mul, div_pow10): (u128, u32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "k" => (1_000, 0),
        "M" => (1_000_000, 0),
        "G" => (1_000_000_000, 0),
        "T" => (1_000_000_000_000, 0),
        "P" => (1_000_000_000_000_000, 0),
        "E" => (1_000_000_000_000_000_000, 0),
        "m" => (1, 3),
        s if s.starts_with(['e', 'E']) => {
            let exp: u32 = s[1..].parse().map_err(|_| invalid())?;
            if exp > 30 {
                return Err(invalid());
            }
            (10u128.pow(exp), 0)
        }
        _ => return Err(invalid()),
    };
    let frac_len = u32::try_from(frac_part.len()).map_err(|_| invalid())?;
    let div = 10u128
        .checked_pow(frac_len + div_pow10)
        .ok_or_else(invalid)?;
    let num = digits.checked_mul(mul).ok_or_else(invalid)?;
    Ok(num.div_ceil(div))
}

/// Formats bytes for people (binary units, one decimal).
pub fn human(bytes: u128) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quantities_as_the_api_server_does() {
        assert_eq!(bytes("10Gi").unwrap(), 10 << 30);
        assert_eq!(bytes("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(bytes("500M").unwrap(), 500_000_000);
        assert_eq!(bytes("1e3").unwrap(), 1000);
        assert_eq!(bytes("2k").unwrap(), 2000);
        assert_eq!(bytes("1500m").unwrap(), 2);
        assert_eq!(bytes("123").unwrap(), 123);
        assert_eq!(bytes("0.1Ki").unwrap(), 103);
    }

    #[test]
    fn refuses_what_is_not_a_quantity() {
        for bad in ["", "Gi", "10GB", "ten", "1.2.3Gi", "-1Gi", "10 Gi", "."] {
            let err = bytes(bad).unwrap_err().to_string();
            assert!(err.contains("Kubernetes quantity"), "{bad}: {err}");
        }
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }
}
