//! The per-sequence key/value cache: for each layer, the rotated keys and the values of every
//! position seen so far, `[kv_heads, positions, head_dim]`.
//!
//! Each step appends with `Tensor::cat` (a copy of the layer's cache): simple and fine for
//! chat-length sequences; a preallocated ring or paged cache is the next step for long ones.

use burn::prelude::*;

/// Keys and values of one sequence, all layers.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<3>, Tensor<3>)>>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for `num_layers` layers, refusing to grow past `capacity` positions.
    pub fn new(num_layers: usize, capacity: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
            capacity,
        }
    }

    /// Positions cached (the position the next token takes).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most positions it holds (the model's context length).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position, keeping the cache for a new sequence.
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|layer| *layer = None);
        self.len = 0;
    }

    /// Appends `keys` and `values` (`[kv_heads, new, head_dim]`) to `layer` and returns the
    /// whole layer's keys and values. The caller advances the length with [`Self::advance`]
    /// once every layer is done.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        keys: Tensor<3>,
        values: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        let slot = &mut self.layers[layer];
        let (k, v) = match slot.take() {
            None => (keys, values),
            Some((k, v)) => (
                Tensor::cat(vec![k, keys], 1),
                Tensor::cat(vec![v, values], 1),
            ),
        };
        *slot = Some((k.clone(), v.clone()));
        (k, v)
    }

    pub(crate) fn advance(&mut self, tokens: usize) {
        self.len += tokens;
    }
}
