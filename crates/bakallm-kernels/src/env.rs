//! The `BAKA_*` environment settings of the CUDA path (docs/performance.md, "Environment
//! switches" under "Measuring"), read
//! strictly: a mistyped value would otherwise time the default under the setting's name, so it
//! stops the run with a line naming the variable, its value and what was expected.

/// Every setting's value, checked before a CUDA run starts (`check_device`), so a mistyped one
/// stops it with one line and exit status 1 before anything is written.
pub fn check() -> Result<(), String> {
    let var = |name: &str| std::env::var(name).ok();
    for name in ["BAKA_CUBLASLT", "BAKA_PDL"] {
        parse_switch(name, var(name).as_deref(), true)?;
    }
    parse_number("BAKA_CUBLASLT_TUNE", var("BAKA_CUBLASLT_TUNE").as_deref(), 16, 1, 16)?;
    parse_number("BAKA_CUBLASLT_WORKSPACE", var("BAKA_CUBLASLT_WORKSPACE").as_deref(), 0, 0, 4096)?;
    parse_number("BAKA_PAGE_MIB", var("BAKA_PAGE_MIB").as_deref(), 1024, 32, 1 << 20)?;
    Ok(())
}

/// `name` as a switch: unset → `default`, `0` → off, `1` → on; anything else panics.
pub fn switch(name: &str, default: bool) -> bool {
    parse_switch(name, std::env::var(name).ok().as_deref(), default).unwrap_or_else(|e| panic!("{e}"))
}

/// `name` as a whole number in `lo..=hi`: unset → `default`; anything else panics.
pub fn number(name: &str, default: u64, lo: u64, hi: u64) -> u64 {
    parse_number(name, std::env::var(name).ok().as_deref(), default, lo, hi).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_switch(name: &str, value: Option<&str>, default: bool) -> Result<bool, String> {
    match value {
        None => Ok(default),
        Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(v) => Err(format!("{name}={v}: expected 0 (off) or 1 (on)")),
    }
}

fn parse_number(name: &str, value: Option<&str>, default: u64, lo: u64, hi: u64) -> Result<u64, String> {
    let Some(v) = value else { return Ok(default) };
    match v.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("{name}={v}: expected a whole number from {lo} to {hi}")),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_number, parse_switch};

    #[test]
    fn switches_take_0_or_1_and_name_anything_else() {
        assert_eq!(parse_switch("BAKA_X", None, true), Ok(true));
        assert_eq!(parse_switch("BAKA_X", None, false), Ok(false));
        assert_eq!(parse_switch("BAKA_X", Some("0"), true), Ok(false));
        assert_eq!(parse_switch("BAKA_X", Some("1"), false), Ok(true));
        for bad in ["", "off", "true", "2", " 1"] {
            assert_eq!(parse_switch("BAKA_X", Some(bad), true), Err(format!("BAKA_X={bad}: expected 0 (off) or 1 (on)")));
        }
    }

    #[test]
    fn numbers_are_whole_and_in_range() {
        assert_eq!(parse_number("BAKA_N", None, 16, 1, 16), Ok(16));
        assert_eq!(parse_number("BAKA_N", Some("8"), 16, 1, 16), Ok(8));
        assert_eq!(parse_number("BAKA_N", Some("1"), 16, 1, 16), Ok(1));
        for bad in ["0", "17", "-1", "8.5", "eight", "", " 8"] {
            assert_eq!(parse_number("BAKA_N", Some(bad), 16, 1, 16), Err(format!("BAKA_N={bad}: expected a whole number from 1 to 16")));
        }
    }
}
