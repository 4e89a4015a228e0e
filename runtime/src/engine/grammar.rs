//! Constrained decoding with llguidance: the token trie built from a model's vocabulary, the
//! parser factory shared by a deployment's requests, and the per-sequence matcher that gives
//! the worker its mask of allowed tokens.
//!
//! The trie is built here from the codec's token bytes rather than through
//! `toktrie_hf_tokenizers`, which pins an older `tokenizers`; GGUF vocabularies have no
//! `tokenizer.json` at all.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};

use super::generation::TokenConstraint;
use super::text::TextCodec;

/// The vocabulary as llguidance sees it: the trie for masks, the model's own tokenizer for
/// the literal strings a grammar forces.
struct Vocabulary {
    trie: TokTrie,
    codec: Arc<dyn TextCodec>,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        // Grammar literals are text; bytes that are not UTF-8 can only be split greedily.
        match std::str::from_utf8(s) {
            Ok(text) => self
                .codec
                .encode(text, false)
                .unwrap_or_else(|_| self.trie.greedy_tokenize(s)),
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// A deployment's grammar compiler.
pub struct GrammarEngine {
    factory: ParserFactory,
}

impl std::fmt::Debug for GrammarEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarEngine")
            .field(
                "vocab_size",
                &self.factory.tok_env().tok_trie().vocab_size(),
            )
            .finish()
    }
}

impl GrammarEngine {
    /// Builds the trie from `codec`'s token bytes, padded to the model's `vocab_size` (the
    /// length of its logits); `eos` is the token a finished grammar allows, one of the
    /// model's stop tokens.
    pub fn new(codec: Arc<dyn TextCodec>, vocab_size: usize, eos: u32) -> Result<Self, String> {
        let mut words = codec.token_bytes();
        words.resize(vocab_size.max(words.len()), Vec::new());
        let vocab_size = u32::try_from(words.len()).map_err(|e| e.to_string())?;
        let mut info = TokRxInfo::new(vocab_size, eos);
        info.tok_end_of_turn = Some(eos);
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(Vocabulary { trie, codec });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(Self { factory })
    }

    /// A fresh matcher for `grammar`, or why the grammar cannot be enforced (an unsupported
    /// JSON Schema keyword, a malformed regex, ...).
    pub fn constraint(&self, grammar: TopLevelGrammar) -> Result<GrammarConstraint, String> {
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| e.to_string())?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(error) = matcher.get_error() {
            return Err(error);
        }
        Ok(GrammarConstraint { matcher })
    }
}

/// A deployment's grammar engine, built by the first request that asks for structured output
/// or tools: the token trie and the parser factory take ~9 MB (SmolLM2's 49k tokens) and
/// ~0.1 s, which a deployment that never constrains its output should not pay.
pub struct LazyGrammar {
    codec: Arc<dyn TextCodec>,
    /// The token a finished grammar allows; `None` when the model names no stop token.
    eos: Option<u32>,
    deployment: String,
    engine: OnceLock<Result<Arc<GrammarEngine>, String>>,
}

impl std::fmt::Debug for LazyGrammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyGrammar")
            .field("vocab_size", &self.codec.vocab_size())
            .field("built", &self.engine.get().is_some())
            .finish()
    }
}

impl LazyGrammar {
    pub fn new(codec: Arc<dyn TextCodec>, eos: Option<u32>, deployment: &str) -> Self {
        Self {
            codec,
            eos,
            deployment: deployment.to_owned(),
            engine: OnceLock::new(),
        }
    }

    /// The engine, built on the first call (concurrent first callers wait for the one
    /// build); or why this vocabulary cannot make a token trie. Blocks: call it off the
    /// async threads.
    pub fn engine(&self) -> Result<Arc<GrammarEngine>, String> {
        self.engine
            .get_or_init(|| {
                let started = Instant::now();
                let eos = self
                    .eos
                    .ok_or_else(|| "the model names no end-of-sequence token".to_owned())?;
                let built = GrammarEngine::new(self.codec.clone(), self.codec.vocab_size(), eos);
                match &built {
                    Ok(_) => tracing::info!(
                        deployment = self.deployment,
                        seconds = started.elapsed().as_secs_f32(),
                        "token trie built for structured outputs"
                    ),
                    Err(e) => tracing::warn!(
                        deployment = self.deployment,
                        error = %e,
                        "no structured outputs: the vocabulary does not make a token trie"
                    ),
                }
                // The trie's staging (every token's bytes) was freed on this blocking-pool
                // thread, which may idle for long.
                crate::allocator::return_freed_memory();
                built.map(Arc::new)
            })
            .clone()
    }
}

/// One sequence's grammar state.
pub struct GrammarConstraint {
    matcher: Matcher,
}

impl std::fmt::Debug for GrammarConstraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarConstraint")
            .field("stopped", &self.matcher.is_stopped())
            .finish()
    }
}

impl GrammarConstraint {
    /// An independent copy in the same state (one per choice of a request).
    pub fn fork(&self) -> Self {
        Self {
            matcher: self.matcher.deep_clone(),
        }
    }
}

impl TokenConstraint for GrammarConstraint {
    fn allowed(&mut self) -> Result<Vec<u32>, String> {
        self.matcher
            .compute_mask_or_eos()
            .map(|mask| mask.as_slice().to_vec())
            .map_err(|e| e.to_string())
    }

    fn commit(&mut self, token: u32) -> Result<(), String> {
        self.matcher.consume_token(token).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_models::sampling::is_allowed;

    /// Single characters, two whole words, and an end token.
    #[derive(Debug)]
    struct Letters;

    const WORDS: [&str; 6] = ["{", "}", "\"", "a", "yes", "no"];
    const EOS: u32 = 6;

    impl TextCodec for Letters {
        fn encode(&self, text: &str, _: bool) -> Result<Vec<u32>, String> {
            text.chars()
                .map(|c| {
                    WORDS
                        .iter()
                        .position(|w| *w == c.to_string())
                        .map(|i| i as u32)
                        .ok_or_else(|| format!("no token for {c}"))
                })
                .collect()
        }
        fn decode(&self, ids: &[u32]) -> Result<String, String> {
            Ok(ids
                .iter()
                .filter_map(|&i| WORDS.get(i as usize).copied())
                .collect())
        }
        fn vocab_size(&self) -> usize {
            7
        }
        fn token_bytes(&self) -> Vec<Vec<u8>> {
            let mut words: Vec<Vec<u8>> = WORDS.iter().map(|w| w.as_bytes().to_vec()).collect();
            words.push(b"\xFF<end>".to_vec());
            words
        }
    }

    fn allowed_ids(constraint: &mut GrammarConstraint) -> Vec<u32> {
        let mask = constraint.allowed().unwrap();
        (0..7).filter(|&t| is_allowed(&mask, t as usize)).collect()
    }

    #[test]
    fn a_schema_steers_every_step_and_ends_on_the_stop_token() {
        let engine = GrammarEngine::new(Arc::new(Letters), 7, EOS).unwrap();
        let schema = serde_json::json!({"enum": ["yes", "no"]});
        let mut c = engine
            .constraint(TopLevelGrammar::from_json_schema(schema))
            .unwrap();
        assert_eq!(
            allowed_ids(&mut c),
            [2],
            "a JSON string starts with a quote"
        );
        c.commit(2).unwrap();
        assert_eq!(allowed_ids(&mut c), [4, 5], "only the two words");
        c.commit(5).unwrap();
        assert_eq!(allowed_ids(&mut c), [2]);
        c.commit(2).unwrap();
        assert_eq!(allowed_ids(&mut c), [EOS], "complete: only the end");
        assert!(c.commit(3).is_err(), "a forbidden token is refused");
    }

    #[test]
    fn an_unenforceable_schema_is_refused_with_its_keyword() {
        let engine = GrammarEngine::new(Arc::new(Letters), 7, EOS).unwrap();
        let schema = serde_json::json!({"type": "string", "format": "no-such-format"});
        let error = engine
            .constraint(TopLevelGrammar::from_json_schema(schema))
            .unwrap_err();
        assert!(error.contains("no-such-format"), "{error}");
    }
}
