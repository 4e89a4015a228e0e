//! BERT-family encoders (BERT, MiniLM, BGE, E5) in burn: configuration, modules, weight
//! loading and sentence pooling.

pub mod checkpoint;
pub mod config;
mod direct_gemm;
pub mod gelu;
pub mod host;
pub mod loader;
pub mod model;
pub mod pooling;
mod simd;

pub use config::{Activation, BertConfig, SentenceBertConfig};
pub use host::HostEncoder;
pub use loader::load_bert;
pub use model::BertModel;
pub use pooling::{Pooling, PoolingHead};
