//! The CUDA kernels (`crates/bakallm-kernels/src/cuda/*.cu`, one module in the order
//! `nvrtc.rs` joins them) compiled without a GPU by NVRTC, the compiler the CUDA build uses at run
//! time, to machine code for each architecture the build targets: sm_80 (Ampere), sm_90 and sm_90a
//! (Hopper; the H200's target, with `wgmma`). A kernel that does not compile fails here instead of
//! at the first step on a GPU machine; ptxas's register and spill report is printed, and a kernel
//! that starts spilling registers to local memory on sm_90a fails.
//!
//! Needs NVRTC's library: `pip install nvidia-cuda-nvrtc==13.0.88` (CUDA 13.0, the GPU machines'
//! toolkit; `.ci/run` installs it), or `BAKA_NVRTC=/path/to/libnvrtc.so.13`.

use libloading::os::unix::{Library, Symbol, RTLD_GLOBAL, RTLD_NOW};
use std::ffi::{c_char, c_int, c_void, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

const PIP: &str = "pip install nvidia-cuda-nvrtc==13.0.88";

/// Kernels that spill a few bytes on sm_90a today (ALiBi and head dim 32, off the pristine
/// path). Any other kernel that spills fails the test.
const SPILLS_ON_SM90A: [&str; 4] = ["flash_bwd_hd64_alibi", "flash_bwd_hd32_alibi", "flash_bwd_hd32", "flash_fwd_hd64_alibi"];

/// `libnvrtc.so*`: `BAKA_NVRTC`, else the pip package in python3's site-packages, else the CUDA toolkit's.
fn library() -> PathBuf {
    if let Some(p) = std::env::var_os("BAKA_NVRTC") {
        return PathBuf::from(p);
    }
    let site = Command::new("python3").args(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).output().ok();
    let site = site.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let dirs = [Path::new(&site).join("nvidia/cu13/lib"), PathBuf::from("/usr/local/cuda/lib64")];
    dirs.iter()
        .map(|d| d.join("libnvrtc.so.13"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("the NVRTC compile test needs NVRTC 13: run `{PIP}` (or set BAKA_NVRTC to libnvrtc.so.13); looked in {dirs:?}"))
}

/// The kernel source as `nvrtc.rs` builds it: the files its `FILES` list names, in that order,
/// and each file's name with its first line in the joined source (1-based).
fn source() -> (String, Vec<(String, usize)>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/bakallm-kernels/src");
    let list = std::fs::read_to_string(root.join("nvrtc.rs")).unwrap();
    let names: Vec<String> = list.lines().filter_map(|l| l.trim().strip_prefix("(\"")?.split_once("\", include_str!(\"cuda/").map(|(n, _)| n.to_string())).collect();
    let on_disk = std::fs::read_dir(root.join("cuda")).unwrap().filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.ends_with(".cu")).count();
    assert_eq!(names.len(), on_disk, "nvrtc.rs's FILES names {names:?}, cuda/ holds {on_disk} .cu files");
    let texts: Vec<String> = names.iter().map(|n| std::fs::read_to_string(root.join("cuda").join(n)).unwrap()).collect();
    // the join adds one line break after each file
    let mut first = 1;
    let mut starts = Vec::new();
    for (n, t) in names.into_iter().zip(&texts) {
        starts.push((n, first));
        first += t.matches('\n').count() + 1;
    }
    (texts.join("\n"), starts)
}

/// `bakallm.cu(N)` in NVRTC's messages as the file of `cuda/` and its line.
fn located(message: &str, files: &[(String, usize)]) -> String {
    let Some((head, rest)) = message.split_once("bakallm.cu(") else { return message.to_string() };
    let Some((n, tail)) = rest.split_once(')') else { return message.to_string() };
    match (n.parse::<usize>(), files.iter().rev().find(|f| n.parse::<usize>().is_ok_and(|n| n >= f.1))) {
        (Ok(n), Some((file, start))) => format!("{head}cuda/{file}:{}{tail}", n - start + 1),
        _ => message.to_string(),
    }
}

struct Nvrtc {
    lib: Library,
}

type Prog = *mut c_void;

impl Nvrtc {
    fn open() -> Self {
        let path = library();
        // libnvrtc dlopens its builtins by soname: load them from its folder first, globally
        let dir = path.parent().unwrap();
        let builtins = std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("libnvrtc-builtins.so.") && !n.contains(".alt.")
        });
        if let Some(b) = builtins {
            std::mem::forget(unsafe { Library::open(Some(&b), RTLD_NOW | RTLD_GLOBAL) }.unwrap_or_else(|e| panic!("{}: {e}", b.display())));
        }
        let lib = unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_GLOBAL) }.unwrap_or_else(|e| panic!("{}: {e} (`{PIP}`)", path.display()));
        Nvrtc { lib }
    }

    fn sym<T>(&self, name: &[u8]) -> Symbol<T> {
        unsafe { self.lib.get(name) }.unwrap_or_else(|e| panic!("NVRTC lacks {}: {e}", String::from_utf8_lossy(name)))
    }

    fn version(&self) -> (c_int, c_int) {
        let (mut major, mut minor) = (0, 0);
        let f: Symbol<unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int> = self.sym(b"nvrtcVersion");
        assert_eq!(unsafe { f(&mut major, &mut minor) }, 0);
        (major, minor)
    }

    /// Compiles `src` with `options`; returns (succeeded, the log).
    fn compile(&self, src: &str, options: &[&str]) -> (bool, String) {
        let create: Symbol<unsafe extern "C" fn(*mut Prog, *const c_char, *const c_char, c_int, *const *const c_char, *const *const c_char) -> c_int> = self.sym(b"nvrtcCreateProgram");
        let compile: Symbol<unsafe extern "C" fn(Prog, c_int, *const *const c_char) -> c_int> = self.sym(b"nvrtcCompileProgram");
        let log_size: Symbol<unsafe extern "C" fn(Prog, *mut usize) -> c_int> = self.sym(b"nvrtcGetProgramLogSize");
        let get_log: Symbol<unsafe extern "C" fn(Prog, *mut c_char) -> c_int> = self.sym(b"nvrtcGetProgramLog");
        let destroy: Symbol<unsafe extern "C" fn(*mut Prog) -> c_int> = self.sym(b"nvrtcDestroyProgram");
        let (src, name) = (CString::new(src).unwrap(), CString::new("bakallm.cu").unwrap());
        let opts: Vec<CString> = options.iter().map(|o| CString::new(*o).unwrap()).collect();
        let ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
        let mut prog: Prog = std::ptr::null_mut();
        unsafe {
            assert_eq!(create(&mut prog, src.as_ptr(), name.as_ptr(), 0, std::ptr::null(), std::ptr::null()), 0, "nvrtcCreateProgram");
            let ok = compile(prog, ptrs.len() as c_int, ptrs.as_ptr()) == 0;
            let mut n = 0usize;
            assert_eq!(log_size(prog, &mut n), 0);
            let mut log = vec![0u8; n.max(1)];
            assert_eq!(get_log(prog, log.as_mut_ptr() as *mut c_char), 0);
            destroy(&mut prog);
            (ok, String::from_utf8_lossy(&log).trim_end_matches('\0').to_string())
        }
    }
}

/// ptxas's report per kernel: (name, registers, spill-store bytes).
fn report(log: &str) -> Vec<(String, u32, u32)> {
    let mut out: Vec<(String, u32, u32)> = Vec::new();
    let num_before = |line: &str, unit: &str| line.split(unit).next().and_then(|h| h.split_whitespace().last()).and_then(|n| n.parse().ok());
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            out.push((rest.split('\'').next().unwrap().to_string(), 0, 0));
        } else if let (Some(last), true) = (out.last_mut(), line.contains(" bytes spill stores")) {
            last.2 = num_before(line, " bytes spill stores").unwrap_or(0);
        } else if let (Some(last), true) = (out.last_mut(), line.contains("Used ")) {
            last.1 = line.split("Used ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0);
        }
    }
    out
}

#[test]
fn kernels_compile_for_every_target_without_new_spills() {
    let nvrtc = Nvrtc::open();
    let (src, files) = source();
    eprintln!("NVRTC {:?}, {} files: {}", nvrtc.version(), files.len(), files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>().join(" "));
    let results = std::thread::scope(|s| {
        let jobs: Vec<_> = ["sm_90a", "sm_90", "sm_80"]
            .map(|arch| {
                let (nvrtc, src) = (&nvrtc, &src);
                s.spawn(move || (arch, nvrtc.compile(src, &[&format!("--gpu-architecture={arch}"), "--ptxas-options=-v"])))
            })
            .into_iter()
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect::<Vec<_>>()
    });
    for (arch, (ok, log)) in &results {
        let problems: Vec<String> = log.lines().filter(|l| !l.starts_with("ptxas")).filter(|l| !l.trim().is_empty()).map(|l| located(l, &files)).collect();
        assert!(*ok && problems.is_empty(), "NVRTC for {arch}:\n{}", problems.join("\n"));
        let kernels = report(log);
        assert!(kernels.len() > 50, "{arch}: ptxas reported {} kernels:\n{log}", kernels.len());
        for (name, regs, spill) in &kernels {
            eprintln!("{arch:7} {name:40} {regs:4} registers {spill:4} bytes spilled");
        }
        if *arch == "sm_90a" {
            let spilled: Vec<&str> = kernels.iter().filter(|k| k.2 > 0).map(|k| k.0.as_str()).filter(|n| !SPILLS_ON_SM90A.contains(n)).collect();
            assert!(spilled.is_empty(), "sm_90a: {spilled:?} now spill registers to local memory (ptxas report above)");
        }
    }
}

#[test]
fn the_report_reader_takes_ptxas_lines() {
    let log = "ptxas info    : Compiling entry function 'a_k' for 'sm_90a'\nptxas info    : Function properties for a_k\nptxas         .     16 bytes stack frame, 12 bytes spill stores, 12 bytes spill loads\nptxas info    : Used 119 registers, used 1 barriers\nptxas info    : Compiling entry function 'b' for 'sm_90a'\nptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\nptxas info    : Used 22 registers, used 0 barriers, 8 bytes cmem[0]";
    assert_eq!(report(log), vec![("a_k".to_string(), 119, 12), ("b".to_string(), 22, 0)]);
    let files = [("common.cu".to_string(), 1), ("norm.cu".to_string(), 99)];
    assert_eq!(located("bakallm.cu(100): error: x", &files), "cuda/norm.cu:2: error: x");
    assert_eq!(located("bakallm.cu(98): error: x", &files), "cuda/common.cu:98: error: x");
}

/// The kernels of `src` whose body does not begin with `GRID_DEPENDENCY();` (common.cu): on sm_90
/// every kernel is launched so that it may start before the one before it ends, which is safe
/// only if it waits for that one first.
fn without_grid_dependency(src: &str) -> Vec<String> {
    let mut missing = Vec::new();
    for (at, _) in src.match_indices("extern \"C\" __global__") {
        let rest = &src[at..];
        let (head, body) = rest.split_once('{').expect("a kernel's body");
        let name = head.split('(').next().and_then(|h| h.split_whitespace().last()).unwrap_or_default();
        let first = body.split(';').next().unwrap_or_default().replace('\\', "");
        if first.trim() != "GRID_DEPENDENCY()" {
            missing.push(name.to_string());
        }
    }
    missing
}

#[test]
fn every_kernel_waits_for_the_grid_before_it() {
    let (src, _) = source();
    assert_eq!(src.matches("extern \"C\" __global__").count(), 32, "the kernel count changed: check the list below still sees them all");
    assert_eq!(without_grid_dependency(&src), Vec::<String>::new(), "kernels that do not begin with GRID_DEPENDENCY();");
    // the check itself: a kernel without it, one-line and multi-line, is reported
    let bad = "extern \"C\" __global__ void a_k(int n) { b(n); }\nextern \"C\" __global__ void c_k(int n) {\n    GRID_DEPENDENCY();\n    d(n);\n}\nextern \"C\" __global__ void e_k(int n) {\n    f(n); GRID_DEPENDENCY();\n}";
    assert_eq!(without_grid_dependency(bad), vec!["a_k".to_string(), "e_k".to_string()]);
}
