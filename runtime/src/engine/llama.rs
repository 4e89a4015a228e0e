//! Llama-family models (hearth-models) behind the engine's [`Decoder`] and [`TextCodec`]
//! traits: from a GGUF file (weights and tokenizer in one file) or a Hugging Face checkpoint
//! folder (`config.json`, safetensors, `tokenizer.json`, `tokenizer_config.json`).

use std::path::Path;
use std::sync::Arc;

use hearth_models::ChatTokenizer;
use hearth_models::chat_template::ChatTemplate;
use hearth_models::gguf::{GgufFile, GgufTokenizer};
use hearth_models::llama::{KvCache, LlamaModel};

use super::generation::{Decoder, GenerationOptions, GenerationQueue};
use super::grammar::LazyGrammar;
use super::text::{TextCodec, TextEngine};
use crate::config::{CpuWeights, DeviceChoice};
use crate::error::{HearthError, Result};

impl Decoder for LlamaModel {
    type Cache = KvCache;

    fn new_cache(&self) -> KvCache {
        LlamaModel::new_cache(self)
    }

    fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
    ) -> std::result::Result<Vec<f32>, String> {
        LlamaModel::forward(self, tokens, cache).map_err(|e| e.to_string())
    }

    fn forward_batch(
        &self,
        batch: &mut [(&[u32], &mut KvCache)],
    ) -> std::result::Result<Vec<Vec<f32>>, String> {
        LlamaModel::forward_batch(self, batch).map_err(|e| e.to_string())
    }

    fn context_length(&self) -> usize {
        self.config().context_length
    }
}

/// The GGUF tokenizer as the HTTP side's codec (special tokens are not decoded
/// into the answer's text).
#[derive(Debug)]
struct GgufCodec(GgufTokenizer);

impl TextCodec for GgufCodec {
    fn encode(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> std::result::Result<Vec<u32>, String> {
        self.0
            .encode(text, add_special_tokens)
            .map_err(|e| e.to_string())
    }

    fn decode(&self, ids: &[u32]) -> std::result::Result<String, String> {
        self.0.decode(ids, true).map_err(|e| e.to_string())
    }

    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }

    fn token_bytes(&self) -> Vec<Vec<u8>> {
        (0..self.0.vocab_size() as u32)
            .map(|id| match self.0.token_bytes(id) {
                Some(bytes) if !bytes.is_empty() => bytes.to_vec(),
                // A control token: it stands for no text, only for itself.
                _ => {
                    let mut marked = vec![0xFF];
                    marked.extend(self.0.decode(&[id], false).unwrap_or_default().bytes());
                    marked
                }
            })
            .collect()
    }
}

/// A Hugging Face tokenizer as the codec. `vocab_size` is the model's (checkpoints often
/// pad the embedding past the tokenizer's last id).
#[derive(Debug)]
struct HfCodec {
    tokenizer: ChatTokenizer,
    vocab_size: usize,
}

impl TextCodec for HfCodec {
    fn encode(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> std::result::Result<Vec<u32>, String> {
        self.tokenizer
            .encode(text, add_special_tokens)
            .map_err(|e| e.to_string())
    }

    fn decode(&self, ids: &[u32]) -> std::result::Result<String, String> {
        self.tokenizer.decode(ids, true).map_err(|e| e.to_string())
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn token_bytes(&self) -> Vec<Vec<u8>> {
        self.tokenizer.token_bytes()
    }
}

fn model_error(e: hearth_models::ModelError) -> HearthError {
    HearthError::Internal(e.to_string())
}

/// What the HTTP side needs of a tokenizer, whichever file it came from.
struct TokenizerParts {
    codec: Arc<dyn TextCodec>,
    template: Option<ChatTemplate>,
    stop_tokens: Vec<u32>,
}

/// Reads a model's weights on the worker thread.
type ModelLoad = Box<dyn FnOnce() -> Result<LlamaModel> + Send>;

/// Loads a chat model — a GGUF file or a Hugging Face checkpoint folder — onto its own
/// worker thread. `weights` says how a GGUF file's, or a 16-bit checkpoint's, weights are kept
/// on the CPU.
pub fn start_llama(
    name: &str,
    path: &Path,
    device: DeviceChoice,
    weights: CpuWeights,
    options: GenerationOptions,
) -> Result<TextEngine> {
    let (device, device_name) = super::select_device(device)?;
    let started = std::time::Instant::now();
    let (parts, load): (TokenizerParts, ModelLoad) = if path.is_dir() {
        let config = hearth_models::llama::LlamaConfig::from_hf_config(&path.join("config.json"))
            .map_err(model_error)?;
        let tokenizer = ChatTokenizer::load(path).map_err(model_error)?;
        let template = tokenizer
            .chat_template()
            .map(|source| {
                ChatTemplate::new(
                    source,
                    tokenizer.bos_token().unwrap_or_default(),
                    tokenizer.eos_token().unwrap_or_default(),
                )
            })
            .transpose()
            .map_err(model_error)?;
        let parts = TokenizerParts {
            template,
            stop_tokens: tokenizer.stop_ids().to_vec(),
            codec: Arc::new(HfCodec {
                tokenizer,
                vocab_size: config.vocab_size,
            }),
        };
        let dir = path.to_path_buf();
        (
            parts,
            Box::new(move || {
                let keep = weights == CpuWeights::Quantised;
                LlamaModel::load_hf_with(&dir, &device, keep).map_err(model_error)
            }),
        )
    } else {
        // One read of the file serves the HTTP side's tokenizer and the worker's weights.
        let file = GgufFile::open(path).map_err(model_error)?;
        let tokenizer = GgufTokenizer::from_gguf(&file).map_err(model_error)?;
        let template = tokenizer
            .chat_template()
            .map(|source| {
                let token = |id: Option<u32>| {
                    id.and_then(|id| tokenizer.decode(&[id], false).ok())
                        .unwrap_or_default()
                };
                ChatTemplate::new(
                    source,
                    &token(tokenizer.bos_id()),
                    &token(tokenizer.eos_id()),
                )
            })
            .transpose()
            .map_err(model_error)?;
        let parts = TokenizerParts {
            template,
            stop_tokens: tokenizer.stop_ids().to_vec(),
            codec: Arc::new(GgufCodec(tokenizer)),
        };
        (
            parts,
            Box::new(move || {
                let quantised = weights == CpuWeights::Quantised;
                LlamaModel::from_gguf_with(&file, &device, quantised).map_err(model_error)
            }),
        )
    };
    let grammar = Arc::new(LazyGrammar::new(
        parts.codec.clone(),
        parts.stop_tokens.first().copied(),
        name,
    ));
    let (queue, context_length) = GenerationQueue::start(name, options, move || {
        let model = load()?;
        let context_length = model.config().context_length;
        Ok((model, context_length))
    })?;
    // The file's buffer was read on this thread and freed on the worker.
    crate::allocator::return_freed_memory();
    tracing::info!(
        deployment = name,
        device = device_name,
        context_length,
        chat_template = parts.template.is_some(),
        seconds = started.elapsed().as_secs_f32(),
        "chat model ready"
    );
    Ok(TextEngine {
        queue,
        codec: parts.codec,
        template: parts.template,
        stop_tokens: parts.stop_tokens,
        context_length,
        grammar,
    })
}
