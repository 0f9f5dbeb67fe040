//! The CUDA kernels (`crates/bakallm-kernels/src/cuda/*.cu`) checked without a GPU: compiled as
//! C++ with g++ against a CPU emulation of the CUDA they use (`tests/emu/emu.h`: threads and
//! barriers for the block and warp, the tensor-core and shared-memory instructions from the PTX
//! ISA's fragment layouts) and compared with their formulas in f64 (`tests/emu/*_check.cpp`: flash
//! attention, the kernels on the fused projection, cross-entropy, the norms, the MLP gate). The GPU
//! tests (`gpu_tests.rs`) check the real instructions; these let CI catch a broken index, mask or
//! pipeline step in the kernels' logic.

use std::path::{Path, PathBuf};
use std::process::Command;

/// CUDA source with each `#if __CUDA_ARCH__ >= 800` body (the instruction wrappers) replaced by
/// `EMU_<function>`; returns it and how many were replaced.
fn swapped(src: &str) -> (String, usize) {
    let (mut out, mut function, mut skipping, mut swapped) = (String::new(), String::new(), false, 0);
    for line in src.lines() {
        if let Some(head) = line.strip_prefix("__device__ __forceinline__ ") {
            function = head.split('(').next().and_then(|h| h.split_whitespace().last()).unwrap_or_default().to_string();
        }
        if line.trim() == "#if __CUDA_ARCH__ >= 800" {
            out += &format!("    EMU_{function}\n");
            (skipping, swapped) = (true, swapped + 1);
        } else if skipping {
            skipping = line.trim() != "#endif";
        } else {
            out += line;
            out.push('\n');
        }
    }
    (out, swapped)
}

/// `cuda/common.cu` + the flash files emulated ([`swapped`]), the dynamic shared memory a static array.
fn emulated(src: &str) -> String {
    let (out, swapped) = swapped(src);
    assert_eq!(swapped, 22, "common.cu + flash_tiles.cu: expected the 22 instruction wrappers (pack, prefetch, ex2, smem, 4 cp.async, mma, 2 ldmatrix, cp4, 4 bulk, 6 wgmma)");
    let dynamic = "extern __shared__ __align__(16) bf16 fa_dyn[];";
    assert!(out.contains(dynamic), "flash_bwd.cu, flash_bwd_wg.cu: the backwards' dynamic shared memory moved");
    // the most either backward asks for (flash.rs's bwd_smem: 70 KiB with wgmma, 64 KiB without)
    out.replace(dynamic, "static __attribute__((aligned(16))) bf16 fa_dyn[36864];")
}

/// A kernel file of `crates/bakallm-kernels/src/cuda`.
fn read(f: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/bakallm-kernels/src/cuda").join(f)).unwrap()
}

/// `cuda/common.cu` emulated ([`swapped`]): the helpers the non-flash kernels need.
fn common() -> String {
    let (common, n) = swapped(&read("common.cu"));
    assert_eq!(n, 8, "common.cu: the pack, prefetch, ex2, smem and 4 cp.async wrappers");
    common
}

/// Runs a check program with `args`, prints its output and asserts it succeeded (`what` names the
/// case); returns the output.
fn run(exe: &Path, args: &[&str], what: &str) -> String {
    let run = Command::new(exe).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&run.stdout).into_owned();
    eprint!("{text}");
    assert!(run.status.success(), "{what} ({}):\n{text}", exe.display());
    text
}

/// `tests/emu/<check>.cpp` compiled with g++ against `kernels` (saved as `kernels.cu` beside it, in
/// a folder of its own under the target's temporary folder) and `defines` (`-D` arguments);
/// returns the program.
fn build(check: &str, kernels: &str, defines: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{check}{}", defines.concat()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kernels.cu"), kernels).unwrap();
    let exe = dir.join(check);
    let built = Command::new("g++")
        .args(["-std=c++20", "-O2", "-pthread", "-w"])
        .args(defines)
        .arg("-I")
        .arg(&dir)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/emu/{check}.cpp")))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("the emulator tests need g++ (apt-get install g++): {e}"));
    assert!(built.status.success(), "g++ failed on {check}.cpp:\n{}", String::from_utf8_lossy(&built.stderr));
    exe
}

/// `cuda/<file>` with its dynamic shared memory `dynamic` declared as the static array `fixed`
/// (the emulator sizes no shared memory at launch).
fn with_static_shared(file: &str, dynamic: &str, fixed: &str) -> String {
    let src = read(file);
    assert!(src.contains(dynamic), "{file}: the dynamic shared memory `{dynamic}` moved");
    src.replace(dynamic, fixed)
}

/// Builds `tests/emu/<check>.cpp` against common.cu (emulated) and `kernels`, and runs it.
fn check(check: &str, kernels: &str, defines: &[&str], what: &str) {
    run(&build(check, &format!("{}\n{kernels}", common()), defines), &[], what);
}

#[test]
fn flash_kernels_match_f64_attention_in_the_emulator() {
    let kernels = emulated(&["common.cu", "flash_tiles.cu", "flash_fwd.cu", "flash_bwd.cu", "flash_bwd_wg.cu"].map(read).join("\n"));
    // sm_80's atomics for dQ, and sm_90's bulk reductions (`FA_BULK_DQ`)
    // sm_80: atomics for dQ and mma.sync; sm_90: bulk reductions (`FA_BULK_DQ`); sm_90a: and the
    // head-dim-64 kernels' products by wgmma (`FA_WGMMA`), as an H200 runs them
    let sm90a = ["-D__CUDA_ARCH__=900", "-D__CUDA_ARCH_FEAT_SM90_ALL"];
    let exes = [build("flash_check", &kernels, &[]), build("flash_check", &kernels, &["-D__CUDA_ARCH__=900"]), build("flash_check", &kernels, &sm90a)];
    // (head dim, length, bias, o merged, q/k/v fused, dq/dk rotated back): both head dims, lengths off the 64- and
    // 128-row tiles (300: three forward blocks, warps skipping whole key tiles; 101: a last dQ
    // chunk of one row), with and without
    // ALiBi (slots without a position among them); o and dO in the heads' layout or side by side, q, k, v and their gradients in the
    // heads' layout or in the fused projection's (the attention block's: both; 2: at the front of
    // wider rows, as the parallel layer's), dq and dk rotated back by RoPE/xPos tables as they are
    // written or not
    let cases = [
        ("64", "100", "1", "0", "0", "0"),
        ("32", "130", "0", "0", "0", "0"),
        ("64", "300", "0", "0", "0", "0"),
        ("64", "100", "1", "1", "1", "0"),
        ("32", "130", "0", "1", "1", "0"),
        ("64", "70", "0", "0", "1", "0"),
        ("64", "101", "0", "0", "0", "0"),
        ("64", "100", "0", "1", "1", "1"),
        ("32", "130", "0", "1", "1", "1"),
        ("32", "130", "1", "0", "1", "0"),
        ("64", "100", "0", "1", "2", "1"),
        ("32", "70", "1", "1", "2", "0"),
    ];
    for ((exe, (bulk, wg)), (hd, l, bias, merged, fused, rot)) in exes.iter().zip([(0, 0), (1, 0), (1, 1)]).flat_map(|e| cases.iter().map(move |c| (e, *c))) {
        let what = format!("flash kernels, head dim {hd}, L {l}, bias {bias}, merged {merged}, fused {fused}, rotated {rot}");
        let text = run(exe, &[hd, l, bias, merged, fused, rot], &what);
        let path = format!("FA_BULK_DQ {bulk} FA_WGMMA {wg}\n");
        assert!(text.starts_with(&path), "{}: expected the paths {path}{text}", exe.display());
    }
}

/// The kernels on the fused projection (the end of `cuda/attention.cu`): linspace's key term
/// (`add_key`, `sum_key`) and the in-place rotation of q and k (`rotate_qk`) against
/// their formulas in the emulator, f32 and bf16, plain and vector widths, lengths and widths off
/// the 256-thread blocks.
#[test]
fn fused_projection_kernels_match_their_formulas_in_the_emulator() {
    let attention = read("attention.cu");
    let keys = &attention[attention.find("// A key term added").expect("attention.cu: the key-term kernels")..];
    check("key_check", keys, &[], "key-term kernels");
}

/// The LM head's cross-entropy kernels (`ce_grad` and `ce_grad_rows`, `cuda/tokens.cu`: each row's
/// loss and its logits' gradient in place; `ce_fwd` + `ce_bwd`) against the cross-entropy in f64 in
/// the emulator, bf16 and f32; the embedding's gradient and `scale_by` against sums and products.
#[test]
fn cross_entropy_kernel_matches_f64_in_the_emulator() {
    let tokens = with_static_shared("tokens.cu", "extern __shared__ Word4 row[];", "static Word4 row[2 * 50304 / 8];");
    check("ce_check", &tokens, &[], "token kernels");
}

/// LayerNorm and RMSNorm (`cuda/norm.cu`: the forward, the sums' zeroing and the backward with the
/// residual's gradient) against f64 in the emulator: the register paths and the any-width loops,
/// 16-byte and one-element accesses, f32 and bf16, rows ending mid-block.
#[test]
fn norm_kernels_match_f64_in_the_emulator() {
    let norm = with_static_shared("norm.cu", "extern __shared__ float acc[];", "static float acc[8192];");
    check("norm_check", &norm, &[], "norm kernels");
}

/// The MLP gate (`cuda/gate.cu`: `glu_fwd`/`glu_bwd` on the fused projection, `silu_mul_fwd`/`_bwd`
/// on separate inputs) against f64 in the emulator: 16-byte and one-element accesses, f32 and
/// bf16, threads striding over the rows, σ's under- and overflow; `cast_many`'s weight casts.
#[test]
fn gate_kernels_match_f64_in_the_emulator() {
    check("gate_check", &read("gate.cu"), &[], "gate kernels");
}

/// The optimizer step (`cuda/optim.cu`): the global norm's sum of squares against f64, and AdamW
/// against its formula in f32 bit for bit (first step, a clipped step, a non-finite loss that keeps
/// the state), three tensors per launch over whole and partial chunks, aligned and not.
#[test]
fn optimizer_kernels_match_their_formulas_in_the_emulator() {
    check("optim_check", &read("optim.cu"), &["-ffp-contract=off"], "optimizer kernels");
}

/// The GEMM + softmax attention (`cuda/attention.cu`): the causal softmax with a bias and its
/// backward (rows in registers and longer ones), the head split and merge with and without the
/// rotation, against f64 in the emulator.
#[test]
fn attention_kernels_match_f64_in_the_emulator() {
    check("attn_check", &read("attention.cu"), &[], "attention kernels");
}

/// The MLP's fused down-projection and gate backward (`cuda/glu_gemm.cu`: wgmma m64n128k16 by two
/// warpgroups, a three-stage cp.async pipeline, the gate's backward in the epilogue) against f64 in
/// the emulator with sm_90a's code path: its layouts, indices and tails (the emulator copies at
/// issue, so a missing wait or barrier shows only on a GPU: `gpu_glu_gemm_…`, `gpu_mlp_…`).
#[test]
fn glu_gemm_kernel_matches_f64_in_the_emulator() {
    let (tiles, n) = swapped(&read("flash_tiles.cu"));
    assert_eq!(n, 14, "flash_tiles.cu: the mma, 2 ldmatrix, cp4, 4 bulk and 6 wgmma wrappers");
    let (glu, n) = swapped(&read("glu_gemm.cu"));
    assert_eq!(n, 2, "glu_gemm.cu: the wgmma and L2-prefetch wrappers");
    let dynamic = "extern __shared__ __align__(16) bf16 gg_dyn[];";
    assert!(glu.contains(dynamic), "glu_gemm.cu: the dynamic shared memory `{dynamic}` moved");
    // what mlp.rs's GLU_GEMM_SMEM asks for (99,328 bytes)
    let glu = glu.replace(dynamic, "static __attribute__((aligned(16))) bf16 gg_dyn[49664];");
    check("glu_gemm_check", &[tiles, read("gate.cu"), glu].join("\n"), &["-D__CUDA_ARCH__=900", "-D__CUDA_ARCH_FEAT_SM90_ALL"], "glu_bwd_gemm");
}
