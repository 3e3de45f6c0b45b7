//! Sizes given on the command line: parsing (`1G`, `512M`) and the
//! capacity check (a non-zero multiple of 512).

/// Check that a capacity is usable: a non-zero multiple of 512.
pub fn check_size(size: u64) -> Result<(), String> {
    if size == 0 {
        return Err("size must not be 0".into());
    }
    if !size.is_multiple_of(512) {
        return Err(format!("size {size} is not a multiple of 512 bytes"));
    }
    Ok(())
}

/// Parse a size such as `1G`, `512M`, `4096`, `10k` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => {
            let unit = s[i..].trim_end_matches(['B', 'b']).trim_end_matches(['i']);
            let m = match unit.to_ascii_lowercase().as_str() {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1 << 40,
                _ => {
                    return Err(format!(
                        "invalid size '{s}': unknown unit (use K, M, G or T)"
                    ))
                }
            };
            (&s[..i], m)
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size '{s}': expected a number with an optional K/M/G/T"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size '{s}': too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("10k").unwrap(), 10 << 10);
        assert!(parse_size("1X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(check_size(1000).is_err());
        assert!(check_size(0).is_err());
        assert!(check_size(1024).is_ok());
    }
}
