//! Kubernetes resource quantities (`500m`, `2Gi`, `1.5`, `1e3`) parsed into integers.

use thiserror::Error;

/// A quantity string that is not a valid Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid quantity {input:?}: {problem}; write it like Kubernetes does, e.g. \"500m\", \"2\", \"512Mi\", \"4Gi\"")]
pub struct QuantityError {
    /// The text that failed to parse.
    pub input: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

fn err(input: &str, problem: &'static str) -> QuantityError {
    QuantityError {
        input: input.to_string(),
        problem,
    }
}

/// Splits a quantity into its number and its multiplier (as a power of ten
/// numerator/denominator pair, or a binary multiplier).
fn parse_scaled(input: &str) -> Result<f64, QuantityError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(err(input, "it is empty"));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    // An exponent form like `1e3` has the `e` as its suffix start.
    let (number, multiplier) = match suffix {
        "" => (number.to_string(), 1.0),
        "m" => (number.to_string(), 1e-3),
        "k" => (number.to_string(), 1e3),
        "M" => (number.to_string(), 1e6),
        "G" => (number.to_string(), 1e9),
        "T" => (number.to_string(), 1e12),
        "P" => (number.to_string(), 1e15),
        "E" => (number.to_string(), 1e18),
        "Ki" => (number.to_string(), 1024.0),
        "Mi" => (number.to_string(), 1024.0 * 1024.0),
        "Gi" => (number.to_string(), 1024.0 * 1024.0 * 1024.0),
        "Ti" => (number.to_string(), 1024f64.powi(4)),
        "Pi" => (number.to_string(), 1024f64.powi(5)),
        "Ei" => (number.to_string(), 1024f64.powi(6)),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..]
                .parse()
                .map_err(|_| err(input, "the exponent is not an integer"))?;
            (number.to_string(), 10f64.powi(e))
        }
        _ => return Err(err(input, "unknown suffix")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| err(input, "the number part is not a number"))?;
    if value < 0.0 {
        return Err(err(input, "resource quantities cannot be negative"));
    }
    Ok(value * multiplier)
}

/// Parses a CPU quantity into millicores (`"500m"` -> 500, `"2"` -> 2000), rounding up
/// as Kubernetes does.
pub fn parse_cpu_millis(input: &str) -> Result<u64, QuantityError> {
    let cores = parse_scaled(input)?;
    Ok((cores * 1000.0 - 1e-9).ceil().max(0.0) as u64)
}

/// Parses a byte quantity (`"512Mi"`, `"1G"`, `"1024"`) into bytes, rounding up.
pub fn parse_bytes(input: &str) -> Result<u64, QuantityError> {
    let bytes = parse_scaled(input)?;
    Ok((bytes - 1e-6).ceil().max(0.0) as u64)
}

/// Parses a plain count quantity (pods, GPUs) into an integer, rounding up.
pub fn parse_count(input: &str) -> Result<u64, QuantityError> {
    let n = parse_scaled(input)?;
    Ok((n - 1e-9).ceil().max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities() {
        assert_eq!(parse_cpu_millis("500m").unwrap(), 500);
        assert_eq!(parse_cpu_millis("2").unwrap(), 2000);
        assert_eq!(parse_cpu_millis("0.25").unwrap(), 250);
        assert_eq!(parse_cpu_millis("1.5").unwrap(), 1500);
        assert_eq!(parse_cpu_millis("1e1").unwrap(), 10_000);
    }

    #[test]
    fn memory_quantities() {
        assert_eq!(parse_bytes("512Mi").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_bytes("4Gi").unwrap(), 4 << 30);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert_eq!(parse_bytes("1k").unwrap(), 1000);
    }

    #[test]
    fn bad_quantities_name_the_problem() {
        let e = parse_bytes("12Qi").unwrap_err();
        assert!(e.to_string().contains("unknown suffix"), "{e}");
        assert!(parse_cpu_millis("").is_err());
        assert!(parse_cpu_millis("-1").is_err());
        assert!(parse_cpu_millis("abc").is_err());
    }
}
