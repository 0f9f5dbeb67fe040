//! The `BAKA_*` environment settings of the CUDA path (docs/performance.md, "Environment
//! switches" under "Measuring"), each named with its default and range once, here, and read
//! strictly: a mistyped value would otherwise time the default under the setting's name, so it
//! stops the run with a line naming the variable, its value and what was expected.

/// A setting that is off (`0`) or on (`1`).
pub struct Switch {
    pub name: &'static str,
    pub default: bool,
}

/// A setting that is a whole number in `lo..=hi`.
pub struct Number {
    pub name: &'static str,
    pub default: u64,
    pub lo: u64,
    pub hi: u64,
}

/// `BAKA_CUBLASLT`: the GEMMs through cuBLASLt (`0`: `cublasGemmStridedBatchedEx`).
pub const CUBLASLT: Switch = Switch { name: "BAKA_CUBLASLT", default: true };
/// `BAKA_PDL`: programmatic dependent launch from compute capability 9.0 on.
pub const PDL: Switch = Switch { name: "BAKA_PDL", default: true };
/// `BAKA_WEIGHT_COPIES`: the parallel layers' bf16 weight copies kept from step to step, AdamW
/// writing them (off: faster, but cubecl's pool reserved a page more in one of three runs).
pub const WEIGHT_COPIES: Switch = Switch { name: "BAKA_WEIGHT_COPIES", default: false };
/// `BAKA_GLU_GEMM`: the MLP's down-projection backward and gate backward as one kernel on sm_90
/// (`glu_bwd_gemm`; off: cuBLAS, then `glu_bwd`).
pub const GLU_GEMM: Switch = Switch { name: "BAKA_GLU_GEMM", default: true };
/// `BAKA_CUBLASLT_TUNE`: cuBLASLt algorithms timed per GEMM shape.
pub const CUBLASLT_TUNE: Number = Number { name: "BAKA_CUBLASLT_TUNE", default: 16, lo: 1, hi: 16 };
/// `BAKA_CUBLASLT_WORKSPACE`: cuBLASLt's workspace in MiB.
pub const CUBLASLT_WORKSPACE: Number = Number { name: "BAKA_CUBLASLT_WORKSPACE", default: 0, lo: 0, hi: 4096 };
/// `BAKA_PAGE_MIB`: the page size of the `shared` memory pool in MiB.
pub const PAGE_MIB: Number = Number { name: "BAKA_PAGE_MIB", default: 1024, lo: 32, hi: 1 << 20 };

/// Every setting's value, checked before a CUDA run starts (`check_device`), so a mistyped one
/// stops it with one line and exit status 1 before anything is written.
pub fn check() -> Result<(), String> {
    for s in [&CUBLASLT, &PDL, &WEIGHT_COPIES, &GLU_GEMM] {
        s.parse()?;
    }
    for n in [&CUBLASLT_TUNE, &CUBLASLT_WORKSPACE, &PAGE_MIB] {
        n.parse()?;
    }
    Ok(())
}

impl Switch {
    /// Unset → the default, `0` → off, `1` → on; anything else panics ([`check`] has said so
    /// before a run starts).
    pub fn get(&self) -> bool {
        self.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse(&self) -> Result<bool, String> {
        parse_switch(self.name, std::env::var(self.name).ok().as_deref(), self.default)
    }

    /// Sets the switch until the guard drops, which restores the variable's earlier value (for
    /// tests that compare both settings; the GPU tests run one at a time).
    pub fn scoped(&self, on: bool) -> Scoped {
        let old = std::env::var(self.name).ok();
        std::env::set_var(self.name, if on { "1" } else { "0" });
        Scoped { name: self.name, old }
    }
}

/// A [`Switch::scoped`] setting; dropping it restores the variable as it was.
pub struct Scoped {
    name: &'static str,
    old: Option<String>,
}

impl Drop for Scoped {
    fn drop(&mut self) {
        match &self.old {
            Some(v) => std::env::set_var(self.name, v),
            None => std::env::remove_var(self.name),
        }
    }
}

impl Number {
    /// Unset → the default; a whole number in range; anything else panics ([`check`] has said so
    /// before a run starts).
    pub fn get(&self) -> u64 {
        self.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse(&self) -> Result<u64, String> {
        parse_number(self.name, std::env::var(self.name).ok().as_deref(), self.default, self.lo, self.hi)
    }
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
    use super::{parse_number, parse_switch, Switch};

    #[test]
    fn a_scoped_switch_holds_until_dropped_then_restores_the_variable() {
        const S: Switch = Switch { name: "BAKA_TEST_SCOPED_SWITCH", default: false };
        assert!(!S.get() && std::env::var(S.name).is_err());
        {
            let _on = S.scoped(true);
            assert!(S.get());
            {
                let _off = S.scoped(false);
                assert!(!S.get());
            }
            assert_eq!(std::env::var(S.name).as_deref(), Ok("1"), "the inner guard restores the outer setting");
        }
        assert!(std::env::var(S.name).is_err(), "unset again once every guard has dropped");
    }

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
