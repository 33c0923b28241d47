//! What the training tests share: the repository root and the tiny config.

use std::path::{Path, PathBuf};

use virtex_train::config::Config;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `data/configs/tests/emoji_tiny.yaml` (the bundled config shrunk to
/// seconds) for `iterations`, with the data paths made absolute and `extra`
/// keys (`KEY=VALUE`) set.
pub fn tiny(iterations: u64, extra: &[&str]) -> Config {
    let root = root();
    let mut sets = vec![
        format!("DATA.ROOT={}", root.join("data/emoji").display()),
        format!(
            "DATA.TOKENIZER_MODEL={}",
            root.join("data/vocab/emoji_1k.model").display()
        ),
        format!("OPTIM.NUM_ITERATIONS={iterations}"),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    Config::load(
        Some(&root.join("data/configs/tests/emoji_tiny.yaml")),
        &sets,
    )
    .unwrap()
}
