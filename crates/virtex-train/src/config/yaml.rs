//! The YAML tree under a config: `_BASE_` inheritance, merging, `--set` keys,
//! and the config's file paths made relative to the file that names them.

use std::path::{Component, Path, PathBuf};

use serde_yaml_ng::Value;

use super::ConfigError;

/// The keys whose values are paths to files or folders.
const PATH_KEYS: [[&str; 2]; 3] = [
    ["DATA", "ROOT"],
    ["DATA", "TOKENIZER_MODEL"],
    ["DATA", "SHARDS"],
];

/// Reads `path` as YAML, merging in its `_BASE_` chain, base first. A
/// relative `_BASE_` or [`PATH_KEYS`] value is relative to the file that
/// names it, wherever the command runs (a base's `DATA.ROOT` to the base).
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
    let dir = path.parent().unwrap_or(Path::new("."));
    resolve_paths(&mut tree, dir);
    let base = tree.as_mapping_mut().and_then(|m| m.remove("_BASE_"));
    match base {
        Some(Value::String(base)) if depth < 8 => {
            let base_path = dir.join(base);
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

/// Makes each relative [`PATH_KEYS`] value in `tree` relative to `dir`.
fn resolve_paths(tree: &mut Value, dir: &Path) {
    for [section, key] in PATH_KEYS {
        let value = tree
            .get_mut(section)
            .and_then(|section| section.get_mut(key));
        if let Some(Value::String(value)) = value
            && Path::new(value.as_str()).is_relative()
        {
            *value = normalize(&dir.join(value.as_str()))
                .to_string_lossy()
                .into_owned();
        }
    }
}

/// `path` with `.` dropped and each `..` cancelling the name before it, so
/// `data/configs/../emoji` reads `data/emoji` (lexically: the files these
/// keys name are not reached through symlinked folders of configs).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
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
