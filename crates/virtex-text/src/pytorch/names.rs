//! Parameter names: burn paths of a [`PretrainingModel`] and the reference's
//! state-dict keys (those of the model zoo's `.pth` files), which the checkpoint loader and the
//! optimiser's no-decay rule both speak.

use virtex_vision::pytorch::burn_to_torchvision;

#[cfg(doc)]
use crate::models::PretrainingModel;

/// The reference's name of a burn parameter path of a [`PretrainingModel`]
/// (`visual.layer1.0.bn1.gamma` → `visual.cnn.layer1.0.bn1.weight`,
/// `….self_attn.query.weight` → `….self_attn.in_proj_weight`).
pub fn official_name(path: &str) -> String {
    if let Some(visual) = path.strip_prefix("visual.") {
        return format!("visual.cnn.{}", burn_to_torchvision(visual));
    }
    let (module, leaf) = path.rsplit_once('.').unwrap_or(("", path));
    for (projection, _) in IN_PROJ_ROWS {
        if let Some(attention) = module.strip_suffix(&format!(".{projection}")) {
            let leaf = if leaf == "weight" {
                "in_proj_weight"
            } else {
                "in_proj_bias"
            };
            return format!("{attention}.{leaf}");
        }
    }
    let leaf = match leaf {
        "gamma" if is_layer_norm(module) => "weight",
        "beta" if is_layer_norm(module) => "bias",
        leaf => leaf,
    };
    format!("{module}.{leaf}")
}

/// `norm1`–`norm3`, `layer_norm`, a pre-norm decoder's final `norm`.
fn is_layer_norm(module: &str) -> bool {
    module
        .rsplit('.')
        .next()
        .is_some_and(|m| m.contains("norm"))
}

/// The burn path of an official textual key that keeps its module: only
/// LayerNorm parameters are renamed (`weight`/`bias` → `gamma`/`beta`).
pub(crate) fn textual_path(key: &str) -> String {
    match key.rsplit_once('.') {
        Some((module, "weight")) if is_layer_norm(module) => format!("{module}.gamma"),
        Some((module, "bias")) if is_layer_norm(module) => format!("{module}.beta"),
        _ => key.to_string(),
    }
}

/// The rows of `in_proj_*` each projection takes, in order.
pub(crate) const IN_PROJ_ROWS: [(&str, usize); 3] = [("query", 0), ("key", 1), ("value", 2)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_paths_map_to_the_reference_keys() {
        for (path, key) in [
            (
                "visual.layer1.0.bn1.gamma",
                "visual.cnn.layer1.0.bn1.weight",
            ),
            (
                "visual.layer2.0.downsample.conv.weight",
                "visual.cnn.layer2.0.downsample.0.weight",
            ),
            (
                "textual.embedding.layer_norm.beta",
                "textual.embedding.layer_norm.bias",
            ),
            (
                "textual.transformer.layers.0.self_attn.key.bias",
                "textual.transformer.layers.0.self_attn.in_proj_bias",
            ),
            (
                "backward_textual.transformer.layers.1.norm3.gamma",
                "backward_textual.transformer.layers.1.norm3.weight",
            ),
            ("textual.output.bias", "textual.output.bias"),
        ] {
            assert_eq!(official_name(path), key);
        }
        assert_eq!(
            textual_path("textual.transformer.norm.weight"),
            "textual.transformer.norm.gamma"
        );
    }
}
