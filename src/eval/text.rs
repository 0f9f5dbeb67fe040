//! Any UTF-8 text (a file, or a folder of `.txt` / JSON-lines files) as token ids, with the run's tokenizer.

use anyhow::{anyhow, bail, Result};
use std::path::Path;

/// The token ids of the text at `path` (documents joined by `eot`, if the tokenizer has one).
/// A missing path, a non-UTF-8 file, an empty text or a folder without `.txt` files is an error
/// naming it.
pub fn tokens_of(path: &Path, tok: &tokenizers::Tokenizer, eot: Option<u32>) -> Result<Vec<u32>> {
    let docs: Vec<(String, String)> = if path.is_dir() {
        let corpus = crate::data::corpus::read_folder(path, &Default::default(), &mut |_| {}).map_err(|e| anyhow!("{}", e.to_string().replace("(data.corpus)", "(--text)")))?;
        corpus.docs.into_iter().map(|d| (d.name, d.text)).collect()
    } else if path.is_file() {
        let bytes = std::fs::read(path).map_err(|e| anyhow!("{}: cannot read ({e}) (--text)", path.display()))?;
        let (text, _) = crate::data::corpus::decode(&path.display().to_string(), bytes, false)
            .map_err(|e| anyhow!("{}", e.to_string().replace("re-encode it or set data.latin1_fallback = true", "re-encode it as UTF-8 (--text)")))?;
        vec![(path.display().to_string(), text)]
    } else {
        bail!("{}: no such file or folder (--text)", path.display());
    };
    let mut ids = vec![];
    for (name, text) in &docs {
        if text.trim().is_empty() {
            continue;
        }
        let enc = tok.encode(text.as_str(), false).map_err(|e| anyhow!("{name}: cannot encode ({e})"))?;
        ids.extend_from_slice(enc.get_ids());
        ids.extend(eot);
    }
    if ids.len() < 2 {
        bail!("{}: no text to score (empty, or a single token) (--text)", path.display());
    }
    Ok(ids)
}
