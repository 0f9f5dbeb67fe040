//! Parity with an independent numpy re-implementation of the forward pass
//! (tests/parity/reference.py, driven by tests/parity/test_parity.py): for every position scheme,
//! the memory branch across several windows and the norm/residual/memory/global variants, the
//! logits of `baka logits` must match the reference to 1e-4; plus negative checks and the
//! tokenizer round trip. Needs python3 with `pip install numpy safetensors tokenizers`.

mod common;
use common::*;
use std::process::Command;

const PIP: &str = "pip install numpy safetensors tokenizers";

#[test]
fn logits_match_the_independent_numpy_reference() {
    // The Python side must be there: fail loudly (CI installs the packages), never skip.
    let probe = Command::new("python3").args(["-c", "import numpy, safetensors, tokenizers"]).output();
    match probe {
        Err(e) => panic!("parity test needs python3 ({e}); then run: {PIP}"),
        Ok(o) if !o.status.success() => {
            panic!("parity test needs numpy, safetensors and tokenizers for python3: run `{PIP}`\n{}", String::from_utf8_lossy(&o.stderr))
        }
        Ok(_) => {}
    }

    prepared();
    let work = scratch("parity");
    let script = root().join("tests").join("parity").join("test_parity.py");
    let o = Command::new("python3")
        .arg(&script)
        .arg("--baka")
        .arg(env!("CARGO_BIN_EXE_baka"))
        .arg("--work")
        .arg(&work)
        .arg("--cache")
        .arg(cache())
        .current_dir(root())
        .output()
        .expect("run python3 tests/parity/test_parity.py");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    println!("{out}");
    eprintln!("{err}");
    assert!(o.status.success(), "parity script failed (exit {:?}); work dir kept at {}\n{out}\n{err}", o.status.code(), work.display());
    let _ = std::fs::remove_dir_all(&work);
}
