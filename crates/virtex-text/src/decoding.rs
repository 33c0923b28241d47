//! Caption decoding with the forward head (`virtex/utils/beam_search.py`,
//! `virtex/utils/nucleus_sampling.py`): beam search, nucleus sampling and
//! greedy, batched over images, each step decoding one position through the
//! decoder's key/value cache instead of re-running the whole prefix.
//!
//! Run it on an inference backend (`model.valid()`), where dropout is off.
//!
//! [`CaptionDecoder::prior_penalty`] (virtex-rs; 0, the reference's decoding,
//! by default) chooses the first token by `log p(t | image) − λ·log p(t | no
//! image)`, the first-token form of Li et al.'s maximum-mutual-information
//! decoding ("A Diversity-Promoting Objective Function for Neural
//! Conversation Models", 2016): a caption that opens the same way whatever
//! the image pays for it.
//!
//! [`CaptionDecoder::backward_weight`] (virtex-rs; 0 by default) lets a
//! bicaptioning model's backward decoder choose among beam search's final
//! beams: each is ranked by its forward score plus μ times the backward
//! decoder's log-probability of the caption read from its end, the
//! bidirectional rescoring of Liu et al. ("Agreement on Target-Bidirectional
//! Neural Machine Translation", 2016). The backward decoder reads the caption's
//! end first, `… a <kind> emoji` on the bundled data, so it weighs what kind of
//! thing the image shows before any name.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::decoder::TransformerDecoder;
use crate::head::TransformerTextualHead;
use crate::losses::caption_log_probs;

/// What the reference gives the previous token (a logit when sampling, a
/// log-probability in beam search), banning immediate repeats.
const REPEAT_BAN: f32 = -10_000.0;

/// What the decoder reads of a beam's caption after the first step
/// (`MODEL.DECODER.BEAM_PREFIX`: `drop_sos` or `keep_sos`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BeamPrefix {
    /// The reference's `AutoRegressiveBeamSearch` (v1.2 and later, behind
    /// its published captioning numbers): the first step reads `[SOS]`, every
    /// later one only the predicted tokens, `t1 … tk` at positions `0 … k-1`.
    DropSos,
    /// `[SOS] t1 … tk` at positions `0 … k`, the sequences the model was
    /// trained on (the default: docs/deviations.md).
    #[default]
    KeepSos,
}

impl std::str::FromStr for BeamPrefix {
    type Err = String;

    /// `drop_sos` / `keep_sos`, with `-` or `_`.
    fn from_str(name: &str) -> Result<Self, String> {
        match name.replace('-', "_").as_str() {
            "drop_sos" => Ok(Self::DropSos),
            "keep_sos" => Ok(Self::KeepSos),
            _ => Err(format!(
                "unknown beam prefix '{name}': expected drop_sos (the reference's) or keep_sos"
            )),
        }
    }
}

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DecodingStrategy {
    /// The reference's beam search: `beam_size` beams, each expanded by its
    /// `per_node_beam_size` best tokens, no length penalty.
    Beam {
        /// Beams kept (5).
        beam_size: usize,
        /// Expansions per beam (2).
        per_node_beam_size: usize,
        /// The prefix convention ([`BeamPrefix::KeepSos`]; the reference's
        /// search is [`BeamPrefix::DropSos`]).
        prefix: BeamPrefix,
    },
    /// Sampling from the smallest set of tokens whose probability reaches `top_p` (0.9).
    Nucleus {
        /// The nucleus mass.
        top_p: f64,
    },
    /// The most likely token at each step.
    Greedy,
}

impl Default for DecodingStrategy {
    fn default() -> Self {
        Self::Beam {
            beam_size: 5,
            per_node_beam_size: 2,
            prefix: BeamPrefix::default(),
        }
    }
}

/// Decoding settings; defaults are the reference's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CaptionDecoder {
    /// Beam, nucleus or greedy.
    pub strategy: DecodingStrategy,
    /// Most tokens generated after `[SOS]` (30).
    pub max_steps: usize,
    /// `[SOS]` id (1).
    pub sos_id: u32,
    /// `[EOS]` id (2).
    pub eos_id: u32,
    /// λ ≥ 0: the first token's score is `log p(t | image) − λ·log p(t | no
    /// image)`, "no image" being all-zero visual features (0: the reference's
    /// decoding). Later tokens are scored as without it.
    pub prior_penalty: f32,
    /// μ ≥ 0: beam search returns the final beam with the best forward score
    /// plus μ·log p(caption read backwards | image) under the backward
    /// decoder given to [`CaptionDecoder::decode_bicaptioning`] (0: the
    /// reference's, the best forward beam). Greedy and nucleus decoding make
    /// one caption per image, so it has nothing to choose among there.
    pub backward_weight: f32,
}

impl Default for CaptionDecoder {
    fn default() -> Self {
        Self {
            strategy: DecodingStrategy::default(),
            max_steps: 30,
            sos_id: 1,
            eos_id: 2,
            prior_penalty: 0.0,
            backward_weight: 0.0,
        }
    }
}

/// One image's caption.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedCaption {
    /// Token ids after `[SOS]`, up to (not including) `[EOS]`.
    pub tokens: Vec<u32>,
    /// For each token, the last decoder layer's cross-attention over the grid
    /// cells (`h·w` values, averaged over heads) when it was predicted.
    pub attention: Vec<Vec<f32>>,
}

/// A partial caption.
#[derive(Clone, Debug)]
struct Hypothesis {
    tokens: Vec<u32>,
    attention: Vec<Vec<f32>>,
    score: f32,
}

impl Hypothesis {
    fn finish(self, eos: u32) -> DecodedCaption {
        let end = self
            .tokens
            .iter()
            .position(|&t| t == eos)
            .unwrap_or(self.tokens.len());
        DecodedCaption {
            tokens: self.tokens[..end].to_vec(),
            attention: self.attention.into_iter().take(end).collect(),
        }
    }
}

/// `[rows, V]` logits and `[rows, heads, S]` weights of one step, on the host.
struct StepOutput {
    logits: Vec<Vec<f32>>,
    attention: Vec<Vec<f32>>,
}

fn to_host<B: Backend>(logits: Tensor<B, 2>, weights: Tensor<B, 3>) -> StepOutput {
    let [rows, vocab] = logits.dims();
    let logits = logits
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 logits");
    let [_, heads, cells] = weights.dims();
    let weights = weights
        .mean_dim(1)
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 weights");
    debug_assert_eq!(weights.len(), rows * cells, "{heads} heads averaged");
    StepOutput {
        logits: logits.chunks(vocab).map(<[f32]>::to_vec).collect(),
        attention: weights.chunks(cells).map(<[f32]>::to_vec).collect(),
    }
}

/// `log p(t | image) − prior[t]`: the first token's mutual-information score.
fn without_prior(logits: &[f32], prior: &[f32]) -> Vec<f32> {
    log_softmax(logits)
        .into_iter()
        .zip(prior)
        .map(|(l, p)| l - p)
        .collect()
}

fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln() + max;
    logits.iter().map(|&l| l - log_sum).collect()
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    order.truncate(k);
    order
}

fn int_rows<B: Backend>(values: Vec<i64>, device: &B::Device) -> Tensor<B, 1, Int> {
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [len]), device)
}

impl CaptionDecoder {
    /// Captions for layer4 features `[batch, C, h, w]`, one per image, with the
    /// forward decoder of `head`. `rng` drives nucleus sampling only.
    pub fn decode<B: Backend>(
        &self,
        head: &TransformerTextualHead<B>,
        visual_features: Tensor<B, 4>,
        rng: &mut impl Rng,
    ) -> Vec<DecodedCaption> {
        self.decode_bicaptioning(head, None, visual_features, rng)
    }

    /// [`Self::decode`], with a bicaptioning model's `backward` decoder (which
    /// shares `head`'s embedding, projection and output) to rank beam
    /// search's final beams under [`Self::backward_weight`].
    pub fn decode_bicaptioning<B: Backend>(
        &self,
        head: &TransformerTextualHead<B>,
        backward: Option<&TransformerDecoder<B>>,
        visual_features: Tensor<B, 4>,
        rng: &mut impl Rng,
    ) -> Vec<DecodedCaption> {
        let max_steps = self.max_steps.min(head.embedding.max_length());
        match self.strategy {
            DecodingStrategy::Beam {
                beam_size,
                per_node_beam_size,
                prefix,
            } => {
                let (beams, memory) = self.beam_search(
                    head,
                    visual_features,
                    beam_size,
                    per_node_beam_size,
                    prefix,
                    max_steps,
                );
                match backward.filter(|_| self.backward_weight != 0.0) {
                    Some(decoder) => self.rank_by_both(head, decoder, memory, beams),
                    // The best forward beam, the first.
                    None => beams
                        .into_iter()
                        .map(|image_beams| {
                            let best = image_beams.into_iter().next().expect("beam_size ≥ 1");
                            best.finish(self.eos_id)
                        })
                        .collect(),
                }
            }
            DecodingStrategy::Greedy => self.sample(head, visual_features, max_steps, |logits| {
                top_k(logits, 1)[0]
            }),
            DecodingStrategy::Nucleus { top_p } => {
                self.sample(head, visual_features, max_steps, |logits| {
                    nucleus(logits, top_p, rng)
                })
            }
        }
    }

    /// `λ·log p(t | no image)` for the first token, one row per image, when
    /// [`Self::prior_penalty`] is set.
    fn first_token_prior<B: Backend>(
        &self,
        head: &TransformerTextualHead<B>,
        visual_features: &Tensor<B, 4>,
    ) -> Option<Vec<Vec<f32>>> {
        if self.prior_penalty == 0.0 {
            return None;
        }
        let batch = visual_features.dims()[0];
        let mut cache = head.start(visual_features.zeros_like());
        let sos = int_rows::<B>(
            vec![i64::from(self.sos_id); batch],
            &visual_features.device(),
        );
        let (logits, weights) = head.step(sos, 0, &mut cache);
        let step = to_host(logits, weights);
        Some(
            step.logits
                .iter()
                .map(|row| {
                    log_softmax(row)
                        .into_iter()
                        .map(|l| self.prior_penalty * l)
                        .collect()
                })
                .collect(),
        )
    }

    /// One token per step per image, chosen by `pick` from the step's logits
    /// (after the repeat ban; at the first step, the mutual-information
    /// scores under [`Self::prior_penalty`]), until every caption has ended.
    fn sample<B: Backend>(
        &self,
        head: &TransformerTextualHead<B>,
        visual_features: Tensor<B, 4>,
        max_steps: usize,
        mut pick: impl FnMut(&[f32]) -> usize,
    ) -> Vec<DecodedCaption> {
        let prior = self.first_token_prior(head, &visual_features);
        let device = visual_features.device();
        let batch = visual_features.dims()[0];
        let mut cache = head.start(visual_features);
        let mut captions = vec![
            Hypothesis {
                tokens: Vec::new(),
                attention: Vec::new(),
                score: 0.0,
            };
            batch
        ];
        let mut last = vec![self.sos_id; batch];
        for position in 0..max_steps {
            let tokens = int_rows::<B>(last.iter().map(|&t| i64::from(t)).collect(), &device);
            let (logits, weights) = head.step(tokens, position, &mut cache);
            let step = to_host(logits, weights);
            for (row, caption) in captions.iter_mut().enumerate() {
                if last[row] == self.eos_id {
                    continue;
                }
                let mut logits = match (&prior, position) {
                    (Some(prior), 0) => without_prior(&step.logits[row], &prior[row]),
                    _ => step.logits[row].clone(),
                };
                logits[last[row] as usize] = REPEAT_BAN;
                let token = pick(&logits) as u32;
                caption.tokens.push(token);
                caption.attention.push(step.attention[row].clone());
                last[row] = token;
            }
            if last.iter().all(|&t| t == self.eos_id) {
                break;
            }
        }
        captions
            .into_iter()
            .map(|c| c.finish(self.eos_id))
            .collect()
    }

    /// The reference's `AutoRegressiveBeamSearch`, batched over images:
    /// log-softmax of each step's logits, then the prefix's last token's set
    /// to −10000 (from the second step on), each beam's `per_node_beam_size`
    /// best tokens added to its score, the best `beam_size` of those kept (ties: the earlier beam,
    /// then the lower id); a beam that has said `[EOS]` goes on with `[EOS]`
    /// at no cost; done when every beam has ended or after `max_steps`.
    /// The first tokens are scored under [`Self::prior_penalty`].
    ///
    /// Returns each image's final beams, best forward score first, and the
    /// decoder memory `[batch, S, H]` they were decoded from.
    fn beam_search<B: Backend>(
        &self,
        head: &TransformerTextualHead<B>,
        visual_features: Tensor<B, 4>,
        beam_size: usize,
        per_node_beam_size: usize,
        prefix: BeamPrefix,
        max_steps: usize,
    ) -> (Vec<Vec<Hypothesis>>, Tensor<B, 3>) {
        let prior = self.first_token_prior(head, &visual_features);
        let device = visual_features.device();
        let batch = visual_features.dims()[0];
        let memory = head.memory(visual_features);
        let mut cache = head.transformer.start(memory.clone());
        // The cross-attention keys and values alone, for a prefix without [SOS].
        let empty = (prefix == BeamPrefix::DropSos).then(|| cache.clone());
        let sos = int_rows::<B>(vec![i64::from(self.sos_id); batch], &device);
        let (logits, weights) = head.step(sos, 0, &mut cache);
        let first = to_host(logits, weights);
        // Each image starts from its `beam_size` best first tokens.
        let mut beams: Vec<Vec<Hypothesis>> = (0..batch)
            .map(|b| {
                let log_probs = match &prior {
                    Some(prior) => without_prior(&first.logits[b], &prior[b]),
                    None => log_softmax(&first.logits[b]),
                };
                top_k(&log_probs, beam_size)
                    .into_iter()
                    .map(|token| Hypothesis {
                        tokens: vec![token as u32],
                        attention: vec![first.attention[b].clone()],
                        score: log_probs[token],
                    })
                    .collect()
            })
            .collect();
        let rows = int_rows::<B>(
            (0..batch)
                .flat_map(|b| std::iter::repeat_n(b as i64, beam_size))
                .collect(),
            &device,
        );
        // Without [SOS], the first predicted token opens a new prefix at 0.
        let shift = usize::from(empty.is_some());
        cache = empty.unwrap_or(cache).select(rows);

        for position in 1..max_steps {
            let last: Vec<u32> = beams
                .iter()
                .flatten()
                .map(|h| *h.tokens.last().expect("beams start with a token"))
                .collect();
            if last.iter().all(|&t| t == self.eos_id) {
                break;
            }
            let tokens = int_rows::<B>(last.iter().map(|&t| i64::from(t)).collect(), &device);
            let (logits, weights) = head.step(tokens, position - shift, &mut cache);
            let step = to_host(logits, weights);
            let mut parents = Vec::with_capacity(batch * beam_size);
            for (b, image_beams) in beams.iter_mut().enumerate() {
                // (score, parent beam, token), in the reference's order.
                let mut candidates = Vec::with_capacity(beam_size * per_node_beam_size);
                for (k, hypothesis) in image_beams.iter().enumerate() {
                    let row = b * beam_size + k;
                    let previous = last[row];
                    let log_probs = if previous == self.eos_id {
                        // A finished beam can only go on with [EOS], at no cost.
                        let mut forced = vec![f32::NEG_INFINITY; step.logits[row].len()];
                        forced[self.eos_id as usize] = 0.0;
                        forced
                    } else {
                        // The ban replaces a log-probability, after the
                        // softmax: the others keep their share of its mass.
                        let mut log_probs = log_softmax(&step.logits[row]);
                        log_probs[previous as usize] = REPEAT_BAN;
                        log_probs
                    };
                    for token in top_k(&log_probs, per_node_beam_size) {
                        candidates.push((hypothesis.score + log_probs[token], k, token as u32));
                    }
                }
                let scores: Vec<f32> = candidates.iter().map(|c| c.0).collect();
                let next: Vec<Hypothesis> = top_k(&scores, beam_size)
                    .into_iter()
                    .map(|i| {
                        let (score, k, token) = candidates[i];
                        parents.push((b * beam_size + k) as i64);
                        let mut hypothesis = image_beams[k].clone();
                        hypothesis.tokens.push(token);
                        hypothesis
                            .attention
                            .push(step.attention[b * beam_size + k].clone());
                        hypothesis.score = score;
                        hypothesis
                    })
                    .collect();
                *image_beams = next;
            }
            cache = cache.select(int_rows::<B>(parents, &device));
        }
        (beams, memory)
    }

    /// Each image's caption: of its final `beams` (decoded from `memory`
    /// `[batch, S, H]`), the one with the best forward score + μ·log
    /// p(caption read backwards | image) under the backward `decoder` (ties:
    /// the better forward beam).
    fn rank_by_both<B: Backend>(
        &self,
        head: &TransformerTextualHead<B>,
        decoder: &TransformerDecoder<B>,
        memory: Tensor<B, 3>,
        beams: Vec<Vec<Hypothesis>>,
    ) -> Vec<DecodedCaption> {
        let forward_scores: Vec<Vec<f32>> = beams
            .iter()
            .map(|image_beams| image_beams.iter().map(|h| h.score).collect())
            .collect();
        let finished: Vec<Vec<DecodedCaption>> = beams
            .into_iter()
            .map(|image_beams| {
                image_beams
                    .into_iter()
                    .map(|h| h.finish(self.eos_id))
                    .collect()
            })
            .collect();
        let captions: Vec<&DecodedCaption> = finished.iter().flatten().collect();
        let mut backward_scores = self
            .backward_log_probs(head, decoder, memory, &captions)
            .into_iter();
        finished
            .into_iter()
            .zip(forward_scores)
            .map(|(image_captions, forward)| {
                let scores: Vec<f32> = forward
                    .iter()
                    .map(|&f| {
                        f + self.backward_weight * backward_scores.next().expect("a score per beam")
                    })
                    .collect();
                let best = top_k(&scores, 1)[0];
                image_captions
                    .into_iter()
                    .nth(best)
                    .expect("a caption per score")
            })
            .collect()
    }

    /// `log p(caption read backwards | image)` under the backward `decoder`,
    /// one per caption: the sum of its next-token log-probabilities over the
    /// backward decoder's training target, `[SOS] t1 … tk [EOS]` cut to the
    /// head's positions and reversed (the framing of
    /// `virtex_data::caption::CaptionTokens::from_pieces`, which virtex-text's
    /// tests check this against; not a dependency here, for one rule).
    /// `captions` are `memory`'s images' beams, the same number per image, in
    /// order.
    ///
    /// # Shapes
    /// - `memory`: `[batch, S, H]`, `captions`: a multiple of `batch` → as many scores
    fn backward_log_probs<B: Backend>(
        &self,
        head: &TransformerTextualHead<B>,
        decoder: &TransformerDecoder<B>,
        memory: Tensor<B, 3>,
        captions: &[&DecodedCaption],
    ) -> Vec<f32> {
        let images = memory.dims()[0];
        if images == 0 {
            return Vec::new();
        }
        let per_image = captions.len() / images;
        let device = memory.device();
        let sequences: Vec<Vec<u32>> = captions
            .iter()
            .map(|caption| {
                let mut forward = vec![self.sos_id];
                forward.extend(&caption.tokens);
                forward.push(self.eos_id);
                forward.truncate(head.embedding.max_length());
                forward.reverse();
                forward
            })
            .collect();
        let lengths: Vec<usize> = sequences.iter().map(Vec::len).collect();
        let longest = lengths.iter().copied().max().unwrap_or(0);
        let padded: Vec<i64> = sequences
            .iter()
            .flat_map(|s| {
                s.iter()
                    .map(|&t| i64::from(t))
                    .chain(std::iter::repeat_n(0, longest - s.len()))
            })
            .collect();
        let tokens = Tensor::<B, 2, Int>::from_data(
            TensorData::new(padded, [sequences.len(), longest]),
            &device,
        );
        let rows = int_rows::<B>(
            (0..captions.len())
                .map(|r| (r / per_image) as i64)
                .collect(),
            &device,
        );
        let logits = head.decode_with(
            decoder,
            memory.select(0, rows),
            tokens.clone(),
            &lengths,
            true,
        );
        caption_log_probs(logits, tokens)
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32 scores")
    }
}

/// Samples from the nucleus: tokens by falling probability, each kept while
/// the mass before it is at most `top_p` (so the first is always kept).
fn nucleus(logits: &[f32], top_p: f64, rng: &mut impl Rng) -> usize {
    let log_probs = log_softmax(logits);
    let order = top_k(&log_probs, log_probs.len());
    let mut kept = Vec::new();
    let mut mass = 0.0f64;
    for &token in &order {
        if mass > top_p {
            break;
        }
        let p = f64::from(log_probs[token].exp());
        kept.push((token, p));
        mass += p;
    }
    let mut draw = rng.random::<f64>() * kept.iter().map(|(_, p)| p).sum::<f64>();
    for &(token, p) in &kept {
        if draw < p {
            return token;
        }
        draw -= p;
    }
    kept.last().expect("the nucleus is never empty").0
}
