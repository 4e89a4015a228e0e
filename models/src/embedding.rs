//! [`EmbeddingModel`]: a sentence-embedding model folder (tokenizer, BERT encoder, pooling)
//! behind one synchronous API that the server's engine thread owns.

use std::path::Path;

use burn::prelude::*;

use crate::ModelError;
use crate::bert::{BertConfig, BertModel, HostEncoder, PoolingHead, SentenceBertConfig, load_bert};
use crate::tokenizer::TextTokenizer;

/// A loaded sentence-embedding model (all-MiniLM-L6-v2 and other BERT-family encoders in the
/// Hugging Face / sentence-transformers folder layout).
///
/// Files read from the folder: `config.json`, `model.safetensors`, `tokenizer.json`, and when
/// present `modules.json`, the pooling config it names (`1_Pooling/config.json`) and
/// `sentence_bert_config.json`.
#[derive(Debug)]
pub struct EmbeddingModel {
    encoder: Encoder,
    head: PoolingHead,
    tokenizer: TextTokenizer,
    config: BertConfig,
    max_input_tokens: usize,
    device: Device,
}

/// Where the encoder runs: burn's tensors on a GPU, plain buffers on the CPU (`bert::host`).
#[derive(Debug)]
enum Encoder {
    Tensors(Box<BertModel>),
    Host(HostEncoder),
}

impl EmbeddingModel {
    /// Loads the model in `dir` onto `device` (for example [`crate::cpu_device`]).
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let config = BertConfig::load(&dir.join("config.json"))?;
        let sentence = SentenceBertConfig::load_optional(&dir.join("sentence_bert_config.json"))?;
        let head = PoolingHead::load(dir)?;
        let tokenizer = TextTokenizer::load(&dir.join("tokenizer.json"))?;
        let model = load_bert(&dir.join("model.safetensors"), &config, device)?;
        let encoder = if *device == Device::flex() {
            Encoder::Host(HostEncoder::new(&model, config.layer_norm_eps as f32))
        } else {
            Encoder::Tensors(Box::new(model))
        };
        let max_input_tokens = sentence
            .max_seq_length
            .map_or(config.max_position_embeddings, |limit| {
                limit.min(config.max_position_embeddings)
            });
        tracing::info!(
            dir = %dir.display(),
            layers = config.num_hidden_layers,
            dimensions = config.hidden_size,
            max_input_tokens,
            pooling = ?head.pooling,
            normalize = head.normalize,
            "loaded embedding model"
        );
        Ok(Self {
            encoder,
            head,
            tokenizer,
            config,
            max_input_tokens,
            device: device.clone(),
        })
    }

    /// Token ids of `text`, with the special tokens (`[CLS] ... [SEP]`), not padded and not
    /// truncated: the caller decides what to do with inputs over [`Self::max_input_tokens`].
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.tokenizer.encode(text)
    }

    /// The longest input [`Self::embed`] accepts, special tokens included: the model's
    /// position count, capped by sentence-transformers' `max_seq_length` when the folder has one.
    pub fn max_input_tokens(&self) -> usize {
        self.max_input_tokens
    }

    /// Length of every embedding vector.
    pub fn dimensions(&self) -> usize {
        self.config.hidden_size
    }

    /// The encoder's configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The pooling and normalisation applied after the encoder.
    pub fn pooling(&self) -> PoolingHead {
        self.head
    }

    /// Embeds a batch of token-id sequences (from [`Self::tokenize`]) in one forward pass.
    ///
    /// Sequences are padded to the longest one and the padding is masked out of attention and
    /// pooling, so a sequence gets the same vector alone or in any batch. Every sequence must be
    /// non-empty, at most [`Self::max_input_tokens`] long, and use ids below the vocabulary size.
    #[tracing::instrument(level = "debug", skip_all, fields(batch = batch.len()))]
    pub fn embed(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.check_inputs(batch)?;
        let model = match &self.encoder {
            Encoder::Host(host) => return Ok(host.embed(batch, self.head)),
            Encoder::Tensors(model) => model,
        };
        let rows = batch.len();
        let seq = batch.iter().map(Vec::len).max().unwrap_or(0);

        let mut ids = Vec::with_capacity(rows * seq);
        let mut padding = Vec::with_capacity(rows * seq);
        let mut mask = Vec::with_capacity(rows * seq);
        for tokens in batch {
            ids.extend(tokens.iter().map(|&id| i64::from(id)));
            // Pad with id 0 ([PAD] in BERT vocabularies); its value never reaches the output.
            ids.resize(ids.len() + seq - tokens.len(), 0);
            for position in 0..seq {
                let is_padding = position >= tokens.len();
                padding.push(is_padding);
                mask.push(if is_padding { 0.0f32 } else { 1.0 });
            }
        }
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, seq]), &self.device);
        let padding =
            Tensor::<2, Bool>::from_data(TensorData::new(padding, [rows, seq]), &self.device);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [rows, seq]), &self.device);

        let hidden = model.forward(ids, padding)?;
        let pooled = self.head.forward(hidden, mask);
        let data = pooled
            .try_into_data()
            .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
        let values: Vec<f32> = data
            .try_into_vec_as()
            .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
        Ok(values
            .chunks_exact(self.dimensions())
            .map(<[f32]>::to_vec)
            .collect())
    }

    fn check_inputs(&self, batch: &[Vec<u32>]) -> Result<(), ModelError> {
        for (index, tokens) in batch.iter().enumerate() {
            if tokens.is_empty() {
                return Err(ModelError::InvalidInput(format!(
                    "sequence {index} has no tokens"
                )));
            }
            if tokens.len() > self.max_input_tokens {
                return Err(ModelError::InvalidInput(format!(
                    "sequence {index} has {} tokens; the model reads at most {}",
                    tokens.len(),
                    self.max_input_tokens
                )));
            }
            let vocab = self.config.vocab_size;
            if let Some(id) = tokens.iter().find(|&&id| id as usize >= vocab) {
                return Err(ModelError::InvalidInput(format!(
                    "sequence {index} has token id {id}, outside the vocabulary of {vocab}"
                )));
            }
        }
        Ok(())
    }
}
