//! The crate's one error type, [`ModelError`]: every failure names the file, tensor or field
//! it is about, so a broken model folder can be fixed from the message alone.

use std::path::PathBuf;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A file the model needs is not there.
    #[error("model file {} is missing (run scripts/fetch-models to install the models)", path.display())]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
    },

    /// A file exists but could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },

    /// A JSON file is malformed or a field has the wrong type or value.
    #[error("invalid {}: field `{field}`: {reason}", path.display())]
    Config {
        /// The JSON file.
        path: PathBuf,
        /// Dotted path of the offending field (`.` when the document itself is wrong).
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The tokenizer file could not be loaded or configured.
    #[error("cannot load tokenizer {}: {reason}", path.display())]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizer library's message.
        reason: String,
    },

    /// The weights file could not be opened or parsed.
    #[error("cannot load weights {}: {reason}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// A GGUF metadata entry the model needs is missing or has the wrong type or value.
    #[error("metadata `{key}` in {}: {reason}", path.display())]
    Metadata {
        /// The GGUF file.
        path: PathBuf,
        /// The metadata key (`llama.block_count`).
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A tensor the model needs is absent from the weights file, or has the wrong shape or type.
    #[error("tensor `{tensor}` in {}: {reason}", path.display())]
    Tensor {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name as the model expects it.
        tensor: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Text could not be tokenized.
    #[error("tokenization failed: {0}")]
    Tokenize(String),

    /// An input batch the model cannot run (empty sequence, too long, unknown token id).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// Text could not be turned into phonemes (espeak-ng missing, unknown voice, …).
    #[error("phonemizer: {0}")]
    Phonemizer(String),

    /// A chat template does not compile or fails to render.
    #[error("chat template: {0}")]
    Template(String),

    /// The backend failed while running or reading back a tensor.
    #[error("backend error: {0}")]
    Backend(String),

    /// The caller asked to stop (its client went away) before the work was done.
    #[error("cancelled")]
    Cancelled,
}
