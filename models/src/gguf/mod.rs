//! GGUF model files (llama.cpp's format), read natively: the container ([`GgufFile`]), its
//! metadata values ([`GgufValue`]), dequantisation of ggml tensor types to f32
//! ([`GgmlType`], [`dequantize`]) and the tokenizer stored in the metadata
//! ([`GgufTokenizer`], with [`IncrementalDetokenizer`] for streaming).

mod cursor;
mod dequant;
mod detok;
mod file;
mod tokenizer;
mod value;

pub use dequant::{GgmlType, dequantize, f16_to_f32, ggml_type_name};
pub(crate) use dequant::{scale_k3, scale_min_k4};
pub use detok::IncrementalDetokenizer;
pub use file::{GgufFile, GgufTensorInfo, SharedTensor};
pub use tokenizer::GgufTokenizer;
pub(crate) use tokenizer::unicode_to_byte;
pub use value::GgufValue;
