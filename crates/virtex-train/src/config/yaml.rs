//! The YAML tree under a config: `_BASE_` inheritance, merging, `--set` keys.

use std::path::Path;

use serde_yaml_ng::Value;

use super::ConfigError;

/// Reads `path` as YAML, merging in its `_BASE_` chain (paths relative to
/// the file naming them), base first.
pub(super) fn read_tree(path: &Path, depth: usize) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut tree: Value = serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Yaml {
        path: path.to_path_buf(),
        source,
    })?;
    if tree.is_null() {
        tree = Value::Mapping(Default::default());
    }
    let base = tree.as_mapping_mut().and_then(|m| m.remove("_BASE_"));
    match base {
        Some(Value::String(base)) if depth < 8 => {
            let base_path = path.parent().unwrap_or(Path::new(".")).join(base);
            let mut merged = read_tree(&base_path, depth + 1)?;
            merge(&mut merged, tree);
            Ok(merged)
        }
        Some(other) => Err(ConfigError::Key {
            origin: path.display().to_string(),
            key: "_BASE_".into(),
            message: format!("expected the path of a base config (at most 8 deep), got {other:?}"),
        }),
        None => Ok(tree),
    }
}

/// Overlays `over` onto `base`, recursing into mappings.
pub(super) fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(base), Value::Mapping(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// Sets dotted `key` in `tree` to `value`, creating sections as needed.
pub(super) fn set_key(tree: &mut Value, key: &str, value: Value) {
    let mut node = tree;
    for part in key.split('.') {
        if !node.is_mapping() {
            *node = Value::Mapping(Default::default());
        }
        let map = node.as_mapping_mut().expect("made a mapping");
        node = map
            .entry(Value::String(part.to_string()))
            .or_insert(Value::Null);
    }
    *node = value;
}
