//! Tokenises sentences with a SentencePiece model, prints each one's pieces
//! and ids, and decodes the ids back to text.
//!
//! ```sh
//! cargo run -p virtex-data --example tokenize
//! cargo run -p virtex-data --example tokenize -- coco_10k.model "a dog surfing" "two cats"
//! ```
//!
//! Without arguments it uses the bundled emoji vocabulary
//! (`data/vocab/emoji_1k.model`, a BPE model built by `cargo xtask
//! build-vocab`) on three captions; any SentencePiece `.model` file works,
//! the reference's `coco_10k.model` included.

use virtex_data::tokenizer::SentencePieceTokenizer;

const BUNDLED_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/vocab/emoji_1k.model"
);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| BUNDLED_MODEL.to_string());
    let mut sentences: Vec<String> = args.collect();
    if sentences.is_empty() {
        sentences = [
            "an emoji of white smiling face",
            "face with thermometer, a face unwell emoji",
            "a dog surfing",
        ]
        .map(String::from)
        .to_vec();
    }

    let tokenizer = SentencePieceTokenizer::from_file(&model)?;
    println!(
        "{model}: {:?}, {} pieces",
        tokenizer.algorithm(),
        tokenizer.vocab_size()
    );
    for sentence in &sentences {
        let ids = tokenizer.encode(sentence);
        let pieces: Vec<&str> = ids
            .iter()
            .map(|&id| tokenizer.id_to_piece(id).unwrap_or("?"))
            .collect();
        println!("\n{sentence:?}");
        println!("  pieces:  {pieces:?}");
        println!("  ids:     {ids:?}");
        println!("  decoded: {:?}", tokenizer.decode(&ids));
    }
    Ok(())
}
