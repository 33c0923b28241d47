//! Weight-name conventions: burn field paths, torchvision state-dict keys and
//! Detectron2 backbone keys.

/// Splits `a.b.c` into (`a.b`, `c`); a key without a dot has an empty module.
fn split_leaf(key: &str) -> (&str, &str) {
    key.rsplit_once('.').unwrap_or(("", key))
}

fn join(module: &str, leaf: &str) -> String {
    if module.is_empty() {
        leaf.to_string()
    } else {
        format!("{module}.{leaf}")
    }
}

/// Whether the module path names a BatchNorm (`bn1`, `layer1.0.bn3`, `…downsample.bn`).
fn is_batch_norm(module: &str) -> bool {
    module
        .rsplit('.')
        .next()
        .is_some_and(|last| last.starts_with("bn"))
}

/// burn path → torchvision key. The shortcut is `downsample.{conv,bn}` in burn
/// and the `nn.Sequential` indices `downsample.{0,1}` in torchvision; BN's
/// affine parameters are `gamma`/`beta` in burn and `weight`/`bias` in PyTorch.
pub fn burn_to_torchvision(path: &str) -> String {
    let (module, leaf) = split_leaf(path);
    let leaf = match leaf {
        "gamma" if is_batch_norm(module) => "weight",
        "beta" if is_batch_norm(module) => "bias",
        leaf => leaf,
    };
    let module = module
        .replace(".downsample.conv", ".downsample.0")
        .replace(".downsample.bn", ".downsample.1");
    join(&module, leaf)
}

/// torchvision key → burn path (inverse of [`burn_to_torchvision`]).
pub fn torchvision_to_burn(key: &str) -> String {
    let (module, leaf) = split_leaf(key);
    let module = module
        .replace(".downsample.0", ".downsample.conv")
        .replace(".downsample.1", ".downsample.bn");
    let leaf = match leaf {
        "weight" if is_batch_norm(&module) => "gamma",
        "bias" if is_batch_norm(&module) => "beta",
        leaf => leaf,
    };
    join(&module, leaf)
}

/// torchvision key → Detectron2 backbone key, as VirTex's
/// `TorchvisionVisualBackbone.detectron2_backbone_state_dict()` renames them:
/// stem parameters get `stem.`, `layerN` → `res{N+1}`, `bnN` → `convN.norm`,
/// `downsample.0` → `shortcut`, `downsample.1` → `shortcut.norm`.
pub fn torchvision_to_detectron2(key: &str) -> String {
    let mut name = if key.contains("layer") {
        key.to_string()
    } else {
        format!("stem.{key}")
    };
    for t in 1..=4 {
        name = name.replace(&format!("layer{t}"), &format!("res{}", t + 1));
    }
    for t in 1..=3 {
        name = name.replace(&format!("bn{t}"), &format!("conv{t}.norm"));
    }
    name.replace("downsample.0", "shortcut")
        .replace("downsample.1", "shortcut.norm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_and_burn_names_round_trip() {
        let cases = [
            (
                "layer2.0.downsample.1.running_var",
                "layer2.0.downsample.bn.running_var",
            ),
            (
                "layer2.0.downsample.1.weight",
                "layer2.0.downsample.bn.gamma",
            ),
            (
                "layer2.0.downsample.0.weight",
                "layer2.0.downsample.conv.weight",
            ),
            ("layer1.1.bn3.weight", "layer1.1.bn3.gamma"),
            ("bn1.bias", "bn1.beta"),
            ("conv1.weight", "conv1.weight"),
            ("fc.bias", "fc.bias"),
        ];
        for (torchvision, burn) in cases {
            assert_eq!(torchvision_to_burn(torchvision), burn);
            assert_eq!(burn_to_torchvision(burn), torchvision);
        }
    }

    #[test]
    fn detectron2_names_follow_the_reference() {
        let cases = [
            ("conv1.weight", "stem.conv1.weight"),
            ("bn1.running_mean", "stem.conv1.norm.running_mean"),
            ("layer1.0.conv2.weight", "res2.0.conv2.weight"),
            ("layer3.5.bn3.bias", "res4.5.conv3.norm.bias"),
            ("layer4.0.downsample.0.weight", "res5.0.shortcut.weight"),
            (
                "layer4.0.downsample.1.num_batches_tracked",
                "res5.0.shortcut.norm.num_batches_tracked",
            ),
        ];
        for (torchvision, detectron2) in cases {
            assert_eq!(torchvision_to_detectron2(torchvision), detectron2);
        }
    }
}
