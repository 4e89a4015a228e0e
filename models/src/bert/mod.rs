//! BERT-family encoders (BERT, MiniLM, BGE, E5) in burn: configuration, modules, weight
//! loading and sentence pooling.

pub mod checkpoint;
pub mod config;
pub mod gelu;
pub mod loader;
pub mod model;
pub mod pooling;

pub use config::{Activation, BertConfig, SentenceBertConfig};
pub use loader::load_bert;
pub use model::BertModel;
pub use pooling::{Pooling, PoolingHead};
