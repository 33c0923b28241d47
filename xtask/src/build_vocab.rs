//! `cargo xtask build-vocab`: a SentencePiece BPE vocabulary from COCO-format
//! captions (the reference's `scripts/build_vocabulary.py`).

use anyhow::Context;
use virtex_data::caption::normalize_caption;
use virtex_data::coco::read_captions;
use virtex_data::tokenizer::SentencePieceTokenizer;
use virtex_data::tokenizer::train::train_bpe;

use crate::flags::BuildVocab;
use crate::write_file;

impl BuildVocab {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let mut captions = Vec::new();
        for path in &self.captions {
            let file = read_captions(path)?;
            captions.extend(file.iter().map(|c| normalize_caption(c)));
        }
        anyhow::ensure!(!captions.is_empty(), "no captions in {:?}", self.captions);
        let model = train_bpe(captions.iter().map(String::as_str), self.vocab_size)
            .map_err(anyhow::Error::msg)?;
        let tokenizer = SentencePieceTokenizer::from_bytes(&model).map_err(anyhow::Error::msg)?;

        let model_path = self.output.with_extension("model");
        if let Some(dir) = model_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_file(&model_path, &model)?;
        println!(
            "wrote {} ({} pieces from {} captions)",
            model_path.display(),
            tokenizer.vocab_size(),
            captions.len()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project_root;

    #[test]
    fn rebuilding_the_bundled_vocabulary_is_byte_identical() {
        let root = project_root();
        let output =
            std::env::temp_dir().join(format!("virtex-vocab-{}/emoji_1k", std::process::id()));
        BuildVocab {
            captions: vec![root.join("data/emoji/annotations/captions_train2017.json")],
            vocab_size: 1000,
            output: output.clone(),
        }
        .run()
        .unwrap();
        let built = std::fs::read(output.with_extension("model")).unwrap();
        let committed = std::fs::read(root.join("data/vocab/emoji_1k.model")).unwrap();
        assert!(
            built == committed,
            "data/vocab/emoji_1k.model is stale: rerun build-vocab"
        );
    }

    #[test]
    fn a_malformed_captions_file_is_named() {
        let root = project_root();
        let bad = root.join("data/fixtures/resnet18_state_dict_shapes.txt");
        let err = BuildVocab {
            captions: vec![bad],
            vocab_size: 100,
            output: std::env::temp_dir().join("virtex-vocab-bad"),
        }
        .run()
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("resnet18_state_dict_shapes.txt"),
            "{err:#}"
        );
    }
}
