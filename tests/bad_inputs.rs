//! Bad inputs and faults driven through the real binary: each must exit ≠ 0 with ONE error line
//! naming the culprit, and must leave every file that already existed byte-for-byte unchanged.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// SHA-256 of every file under `dirs` (path → hash), to prove nothing was clobbered.
fn snapshot(dirs: &[&Path]) -> BTreeMap<PathBuf, String> {
    let mut m = BTreeMap::new();
    fn walk(d: &Path, m: &mut BTreeMap<PathBuf, String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, m);
            } else {
                m.insert(p.clone(), bakallm::fsutil::sha256_file(&p).unwrap());
            }
        }
    }
    dirs.iter().for_each(|d| walk(d, &mut m));
    m
}

/// A finished tiny run with a checkpoint, to be protected by every case.
fn finished_run(base: &Path) -> PathBuf {
    let run = base.join("done");
    ok(&train("002_nope", &run, 4, &[]));
    run
}

fn sets(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for s in tiny_sets() {
        v.push("--set".into());
        v.push(s);
    }
    for e in extra {
        v.push(e.to_string());
    }
    v
}

fn run_case(name: &str, args: &[String], env: &[(&str, &str)], needles: &[&str], protect: &[&Path]) {
    let before = snapshot(protect);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = baka_env(&a, env);
    eprintln!("{name}: {}", stderr(&o).lines().find(|l| l.starts_with("error:")).unwrap_or("<no error line>"));
    fails_with(&o, needles);
    let after = snapshot(protect);
    for (p, h) in &before {
        assert_eq!(after.get(p), Some(h), "{name}: {} was changed or removed", p.display());
    }
}

fn train_args(branch: &str, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec!["train".into(), "--branch".into(), branch.into(), "--steps".into(), "3".into(), "--out".into(), out.display().to_string()];
    v.extend(sets(extra));
    v
}

#[test]
fn bad_inputs_fail_with_one_line_naming_the_culprit_and_clobber_nothing() {
    prepared();
    let base = scratch("bad");
    let run = finished_run(&base);
    let data = cache();
    let protect: Vec<&Path> = vec![&run, &data];
    let fresh = base.join("fresh");

    // --- config files and keys
    let broken = base.join("broken.toml");
    std::fs::write(&broken, "[model\nd_model = 64\n").unwrap();
    run_case("broken TOML", &train_args(broken.to_str().unwrap(), &fresh, &[]), &[], &["broken.toml", "line 1"], &protect);
    let unknown_key_file = base.join("typo.toml");
    std::fs::write(&unknown_key_file, "[model]\nd_modle = 64\n").unwrap();
    run_case("unknown key in branch file", &train_args(unknown_key_file.to_str().unwrap(), &fresh, &[]), &[], &["typo.toml", "d_modle"], &protect);
    run_case("unknown branch", &train_args("999_nothing", &fresh, &[]), &[], &["unknown branch", "999_nothing"], &protect);
    run_case("unknown --set key", &train_args("002_nope", &fresh, &["--set", "model.d_modle=3"]), &[], &["--set model.d_modle=3", "d_modle"], &protect);
    run_case("unknown --set section", &train_args("002_nope", &fresh, &["--set", "optimizer.lr=3"]), &[], &["--set optimizer.lr=3", "optimizer"], &protect);
    run_case("wrong type", &train_args("002_nope", &fresh, &["--set", "model.d_model=abc"]), &[], &["--set model.d_model=abc"], &protect);
    run_case("negative size", &train_args("002_nope", &fresh, &["--set", "model.d_model=-64"]), &[], &["--set model.d_model=-64"], &protect);
    run_case("zero layers", &train_args("002_nope", &fresh, &["--set", "model.n_layers=0"]), &[], &["model.n_layers = 0"], &protect);
    run_case("zero batch", &train_args("002_nope", &fresh, &["--set", "train.batch=0"]), &[], &["train.batch = 0"], &protect);
    run_case("heads do not divide d_model", &train_args("002_nope", &fresh, &["--set", "model.n_heads=5"]), &[], &["model.n_heads = 5", "model.d_model = 64"], &protect);
    run_case("odd head dim with RoPE", &train_args("001_pristine", &fresh, &["--set", "model.n_heads=64"]), &[], &["even head dim"], &protect);
    run_case("unknown position scheme", &train_args("002_nope", &fresh, &["--set", "model.positions=rotary"]), &[], &["--set model.positions=rotary", "rotary"], &protect);
    run_case("window larger than the model allows", &train_args("002_nope", &fresh, &["--set", "model.window=100000"]), &[], &["model.window = 100000"], &protect);
    run_case(
        "sample longer than the validation split",
        &train_args("002_nope", &fresh, &["--set", "model.window=4096", "--set", "train.n_windows=64"]),
        &[],
        &["val.tok", "fewer than one sample"],
        &protect,
    );
    run_case("negative learning rate", &train_args("002_nope", &fresh, &["--set", "train.lr=-1.0"]), &[], &["train.lr = -1"], &protect);
    run_case("bf16 on the CPU", &train_args("002_nope", &fresh, &["--set", "train.dtype=bf16"]), &[], &["train.dtype", "bf16"], &protect);
    run_case("unknown matmul", &train_args("002_nope", &fresh, &["--set", "train.matmul=cutlass"]), &[], &["train.matmul", "cutlass", "cublas"], &protect);
    run_case("unknown cross-entropy kernel", &train_args("002_nope", &fresh, &["--set", "train.ce=triton"]), &[], &["train.ce", "triton", "fused"], &protect);
    run_case("unknown attention kernel", &train_args("002_nope", &fresh, &["--set", "train.attention=sdpa"]), &[], &["train.attention", "sdpa", "flash"], &protect);
    run_case("unknown layernorm kernel", &train_args("002_nope", &fresh, &["--set", "train.layernorm=apex"]), &[], &["train.layernorm", "apex", "burn"], &protect);
    run_case("unknown gate kernel", &train_args("002_nope", &fresh, &["--set", "train.gate=swish"]), &[], &["train.gate", "swish", "fused"], &protect);
    run_case("unknown adamw kernel", &train_args("002_nope", &fresh, &["--set", "train.adamw=apex"]), &[], &["train.adamw", "apex", "burn"], &protect);
    run_case("unknown memory pool", &train_args("002_nope", &fresh, &["--set", "train.memory_pool=huge"]), &[], &["train.memory_pool", "huge", "shared"], &protect);
    run_case("cuda on a CPU build", &train_args("002_nope", &fresh, &["--device", "cuda"]), &[], &["--features cuda"], &protect);
    let bench = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["bench", "--branch", "002_nope", "--steps", "1", "--warmup", "0"].map(String::from).to_vec();
        v.extend(sets(extra));
        v
    };
    let trace = base.join("trace.json").display().to_string();
    run_case("bench --trace on the CPU", &bench(&["--trace", &trace]), &[], &["--trace", "--device cuda", "cpu"], &protect);
    let nowhere = base.join("no-such-dir").join("trace.json").display().to_string();
    run_case("bench --trace into a missing directory", &bench(&["--device", "cuda", "--trace", &nowhere]), &[], &["--trace", "no-such-dir", "does not exist"], &protect);
    run_case("model vocab smaller than the token file's", &train_args("002_nope", &fresh, &["--set", "model.vocab=100"]), &[], &["model.vocab = 100", "1024"], &protect);

    // --- data
    run_case("missing corpus folder", &train_args("002_nope", &fresh, &["--set", "data.corpus=\"/nonexistent/corpus\""]), &[], &["/nonexistent/corpus"], &protect);
    let corpus = base.join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("good.txt"), "Plain English text.\n\n".repeat(200)).unwrap();
    std::fs::write(corpus.join("latin1.txt"), b"Caf\xe9 cr\xe8me, na\xefve.\n").unwrap();
    let c = format!("data.corpus=\"{}\"", corpus.display());
    run_case("non-UTF-8 file in a corpus folder", &train_args("002_nope", &fresh, &["--set", &c]), &[], &["latin1.txt", "UTF-8"], &protect);
    run_case("missing tokenizer file", &train_args("002_nope", &fresh, &["--set", "data.tokenizer=\"/nonexistent/tokenizer.json\""]), &[], &["/nonexistent/tokenizer.json"], &protect);
    let bad_tok = base.join("bad-tokenizer.json");
    std::fs::write(&bad_tok, "{ this is not a tokenizer").unwrap();
    let t = format!("data.tokenizer=\"{}\"", bad_tok.display());
    run_case("corrupt tokenizer file", &train_args("002_nope", &fresh, &["--set", &t]), &[], &["bad-tokenizer.json"], &protect);

    // --- damaged data cache (a copy of it): detected, named, never used or silently replaced
    let copy = base.join("cache-copy");
    let src = data.join("default").join("bpe1024-docsplit");
    let dst = copy.join("default").join("bpe1024-docsplit");
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["tokenizer.json", "train.tok", "val.tok", "test.tok", "meta.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let cd = format!("data.cache_dir=\"{}\"", copy.display());
    let tok = std::fs::read(dst.join("train.tok")).unwrap();
    std::fs::write(dst.join("train.tok"), &tok[..tok.len() - 1000]).unwrap();
    run_case("truncated token file", &train_args("002_nope", &fresh, &["--set", &cd]), &[], &["train.tok", "truncated", "delete it to rebuild"], &[&run, &data, &copy]);
    let mut flipped = tok.clone();
    flipped[tok.len() / 2] ^= 0x40;
    std::fs::write(dst.join("train.tok"), &flipped).unwrap();
    run_case("corrupted token file", &train_args("002_nope", &fresh, &["--set", &cd]), &[], &["train.tok", "checksum"], &[&run, &data, &copy]);
    bakallm::data::write_token_file(&dst.join("train.tok"), 4096, &[1, 2, 3, 4000]).unwrap();
    run_case("token file for another vocab", &train_args("002_nope", &fresh, &["--set", &cd]), &[], &["train.tok", "vocab 4096", "another vocab"], &[&run, &data, &copy]);
    std::fs::write(dst.join("tokenizer.json"), "{ broken").unwrap();
    run_case("corrupt cached tokenizer", &train_args("002_nope", &fresh, &["--set", &cd]), &[], &["tokenizer.json", "delete it"], &[&run, &data, &copy]);

    // --- output directory and existing runs
    let file = base.join("a-file");
    std::fs::write(&file, "x").unwrap();
    run_case("output dir under a regular file", &train_args("002_nope", &file.join("run"), &[]), &[], &["a-file"], &protect);
    run_case("existing run without --resume", &train_args("002_nope", &run, &[]), &[], &["already holds a run", "--resume"], &protect);
    run_case("resume with a changed config", &train_args("002_nope", &run, &["--resume", "--set", "train.lr=0.005"]), &[], &["changed config", "train.lr"], &protect);
    let no_ckpt = base.join("no-ckpt");
    std::fs::create_dir_all(&no_ckpt).unwrap();
    std::fs::write(no_ckpt.join("metrics.csv"), "step,tokens,elapsed_s,split,loss,lr,grad_norm,tok_per_s\n").unwrap();
    run_case("resume without a checkpoint", &train_args("002_nope", &no_ckpt, &["--resume"]), &[], &["no checkpoint"], &[&run, &data, &no_ckpt]);

    // --- injected write errors (a full disk): the run stops, earlier files stay intact
    let full = base.join("full-disk");
    run_case("write error on a CSV row", &train_args("002_nope", &full, &[]), &[("BAKA_FAULT", "ioerror:csv-row@3")], &[".csv: write failed", "injected write error"], &protect);
    let full2 = base.join("full-disk-ckpt");
    run_case("write error on a checkpoint", &train_args("002_nope", &full2, &[]), &[("BAKA_FAULT", "ioerror:checkpoint-write")], &["checkpoint", "injected write error"], &protect);

    // --- corrupted checkpoint
    let corrupt = base.join("corrupt");
    ok(&train("002_nope", &corrupt, 4, &[]));
    let model_bin = corrupt.join("checkpoint").join("model.bin");
    let mut bytes = std::fs::read(&model_bin).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&model_bin, &bytes).unwrap();
    run_case("corrupted checkpoint on resume", &train_args("002_nope", &corrupt, &["--resume"]), &[], &["model.bin", "checksum"], &[&run, &data, &corrupt]);
    run_case(
        "corrupted checkpoint on export",
        &["export".to_string(), corrupt.display().to_string(), "--out".into(), base.join("w/x.safetensors").display().to_string()],
        &[],
        &["model.bin", "checksum"],
        &[&run, &data, &corrupt],
    );

    // --- other commands
    let w2 = base.join("w2");
    let target = w2.join("x.safetensors").display().to_string();
    ok(&baka(&["export", run.to_str().unwrap(), "--out", &target]));
    run_case("export target exists", &["export".to_string(), run.display().to_string(), "--out".into(), target.clone()], &[], &["x.safetensors", "--force"], &[&run, &data, &w2]);
    let exp = base.join("exp.toml");
    std::fs::write(&exp, "branches = [\"002_nope\", \"777_ghost\"]\nseeds = [1]\n").unwrap();
    run_case("experiment naming an unknown branch", &["experiment".to_string(), exp.display().to_string()], &[], &["exp.toml", "777_ghost"], &protect);
    std::fs::write(&exp, "branches = [\"002_nope\"]\nseeds = [1]\n[overrides.model]\nd_model = \"big\"\n").unwrap();
    run_case("experiment override of the wrong type", &["experiment".to_string(), exp.display().to_string()], &[], &["exp.toml"], &protect);
    run_case(
        "plot with --steps 10..5",
        &["plot".to_string(), run.display().to_string(), "--steps".into(), "10..5".into(), "--out".into(), base.join("p").display().to_string()],
        &[],
        &["10..5"],
        &protect,
    );
    let empty = base.join("empty-run");
    std::fs::create_dir_all(&empty).unwrap();
    run_case("plot of an empty run dir", &["plot".to_string(), empty.display().to_string(), "--out".into(), base.join("p").display().to_string()], &[], &["empty-run"], &protect);
    let cut = base.join("cut-run");
    std::fs::create_dir_all(&cut).unwrap();
    std::fs::write(cut.join("metrics.csv"), "step,tokens,elapsed_s,split,loss,lr,tok_per_s\n1,10,0.1,train,5.0,0.001,100\n").unwrap();
    run_case("CSV with a missing column", &["plot".to_string(), cut.display().to_string(), "--out".into(), base.join("p").display().to_string()], &[], &["metrics.csv", "grad_norm"], &protect);
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    std::fs::write(cut.join("metrics.csv"), &csv[..csv.len() - 12]).unwrap();
    run_case("CSV with a truncated last line", &["plot".to_string(), cut.display().to_string(), "--out".into(), base.join("p").display().to_string()], &[], &["metrics.csv", "line"], &protect);
    run_case("logits of a missing weights file", &["logits".to_string(), "weights/none.safetensors".into(), "--tokens".into(), "1,2".into()], &[], &["weights/none.safetensors"], &protect);
    run_case("logits with an out-of-range token", &["logits".to_string(), run.display().to_string(), "--tokens".into(), "1,999999".into()], &[], &["999999"], &protect);
}
