//! Streaming detokenisation: text is released only once its bytes form complete UTF-8, so a
//! character split across tokens (byte-level BPE splits emoji and CJK) is never cut in two.

use super::GgufTokenizer;
use crate::ModelError;

/// Turns generated token ids, fed one at a time, into text pieces.
///
/// ```no_run
/// # fn demo(tokenizer: &hearth_models::gguf::GgufTokenizer, ids: &[u32]) -> Result<(), hearth_models::ModelError> {
/// let mut detok = hearth_models::gguf::IncrementalDetokenizer::default();
/// let mut text = String::new();
/// for &id in ids {
///     text.push_str(&detok.push(tokenizer, id)?);
/// }
/// text.push_str(&detok.finish());
/// # Ok(()) }
/// ```
#[derive(Debug, Default, Clone)]
pub struct IncrementalDetokenizer {
    pending: Vec<u8>,
}

impl IncrementalDetokenizer {
    /// Adds token `id` and returns the text that is now complete (often empty mid-character).
    /// Control tokens add nothing. Bytes that can never be valid UTF-8 come out as U+FFFD.
    pub fn push(&mut self, tokenizer: &GgufTokenizer, id: u32) -> Result<String, ModelError> {
        let bytes = tokenizer.token_bytes(id).ok_or_else(|| {
            ModelError::InvalidInput(format!(
                "token id {id} is outside the vocabulary ({})",
                tokenizer.vocab_size()
            ))
        })?;
        self.pending.extend_from_slice(bytes);
        Ok(self.take_complete())
    }

    /// Ends the stream: whatever is still pending (an incomplete character) as U+FFFD.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }

    /// Whether bytes of an incomplete character are waiting for the next token.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(err) => {
                    let valid = err.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match err.error_len() {
                        // An incomplete character at the end: keep it for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Invalid bytes: replace them and go on.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }
}
