use super::*;

fn layer(src: &str) -> (Source, toml::Table) {
    (Source::File(PathBuf::from("test.toml")), toml::from_str(src).unwrap())
}

#[test]
fn defaults_are_bakallm_pristine() {
    let c = Config::from_layers(&[]).unwrap();
    assert_eq!((c.model.d_model, c.model.n_layers, c.model.n_heads, c.model.d_ff, c.model.window), (768, 12, 12, 3072, 512));
    assert_eq!((c.train.lr, c.train.clip, c.train.schedule), (1e-3, 1.0, Schedule::Constant));
}

#[test]
fn unknown_key_names_layer_and_key() {
    let e = Config::from_layers(&[layer("[model]\nd_modle = 3")]).unwrap_err().to_string();
    assert!(e.contains("test.toml") && e.contains("d_modle"), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn wrong_type_names_layer() {
    let (k, v) = parse_set("model.d_model=abc").unwrap();
    let mut t = toml::Table::new();
    set_dotted(&mut t, &k, v);
    let e = Config::from_layers(&[(Source::Set("model.d_model=abc".into()), t)]).unwrap_err().to_string();
    assert!(e.starts_with("--set model.d_model=abc"), "{e}");
}

#[test]
fn set_parses_numbers_strings_and_bools() {
    assert_eq!(parse_set("a.b=128").unwrap().1, Value::Integer(128));
    assert_eq!(parse_set("a.b=1e-3").unwrap().1, Value::Float(1e-3));
    assert_eq!(parse_set("a.b=nope").unwrap().1, Value::String("nope".into()));
    assert_eq!(parse_set("a.b=true").unwrap().1, Value::Boolean(true));
    assert!(parse_set("novalue").is_err());
}

#[test]
fn kernel_fallbacks_are_said_on_cuda_only() {
    let cuda = "[train]\ndevice = \"cuda\"";
    let notes = |extra: &str| Config::from_layers(&[layer(&format!("{cuda}\n{extra}"))]).unwrap().kernel_fallbacks();
    let bf16 = |extra: &str| notes(&format!("dtype = \"bf16\"\n{extra}"));
    assert!(bf16("").is_empty(), "pristine (head dim 64, bf16) takes every kernel");
    assert!(notes("")[0].contains("bf16"), "f32 keeps the flash kernels out");
    assert!(bf16("[model]\npositions = \"linspace\"").is_empty(), "the layer op takes linspace's ramp");
    assert!(bf16("attention = \"block\"\n[model]\npositions = \"linspace\"")[0].contains("linspace"));
    assert!(bf16("[model]\npositions = \"linspace\"\nresidual = \"sequential\"").is_empty(), "the layer op takes the sequential residual");
    assert!(bf16("[model]\nresidual = \"sequential\"").is_empty());
    assert!(bf16("gate = \"burn\"\n[model]\nresidual = \"sequential\"")[0].contains("fused norm and gate"));
    assert!(bf16("attention = \"flash\"\n[model]\nresidual = \"sequential\"").is_empty());
    assert!(notes("kernels = \"reference\"").is_empty());
    assert!(Config::from_layers(&[layer("[model]\npositions = \"linspace\"")]).unwrap().kernel_fallbacks().is_empty());
}

#[test]
fn fused_layernorm_width_is_checked_on_cuda_only() {
    let wide = "[model]\nd_model = 8192\nn_heads = 64\n[train]\ndevice = \"cuda\"";
    let e = Config::from_layers(&[layer(wide)]).unwrap_err().to_string();
    assert!(e.contains("train.layernorm") && e.contains("8192") && e.contains("burn"), "{e}");
    assert!(Config::from_layers(&[layer(&format!("{wide}\nlayernorm = \"burn\""))]).is_ok());
    assert!(Config::from_layers(&[layer("[model]\nd_model = 8192\nn_heads = 64")]).is_ok());
}

#[test]
fn semantic_errors_name_the_key() {
    let e = Config::from_layers(&[layer("[model]\nd_model = 100\nn_heads = 12")]).unwrap_err().to_string();
    assert!(e.contains("model.n_heads") || e.contains("model.d_model"), "{e}");
    let e = Config::from_layers(&[layer("[train]\nbatch = 0")]).unwrap_err().to_string();
    assert!(e.contains("train.batch"), "{e}");
}

#[test]
fn resolved_config_round_trips() {
    let c = Config::from_layers(&[layer("[model]\npositions = \"alibi\"\n[memory]\ntokens = 4")]).unwrap();
    let back: Config = toml::from_str(&c.to_toml()).unwrap();
    assert_eq!(c, back);
}

#[test]
fn a_bad_value_in_a_file_names_its_key() {
    let e = Config::from_layers(&[layer("[model]\nnorm = \"batchnorm\"")]).unwrap_err().to_string();
    assert!(e.contains("test.toml") && e.contains("model.norm") && e.contains("batchnorm") && e.contains("rmsnorm"), "{e}");
    let e = Config::from_layers(&[layer("[train]\nschedule = \"linear\"\nsteps = 5")]).unwrap_err().to_string();
    assert!(e.contains("train.schedule") && e.contains("cosine"), "{e}");
}
