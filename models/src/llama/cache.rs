//! The per-sequence key/value cache: for each layer, the rotated keys and the values of every
//! position seen so far, in buffers of `[kv_heads, allocated, head_dim]` written in place.
//!
//! A step writes its new positions into the buffer with `slice_assign`, which burn's CPU and
//! GPU backends do in place when the buffer has no other owner (the views a step hands to
//! attention are gone by the next one), and reads the filled prefix as a strided view that
//! the matmuls take without a copy. Buffers grow by doubling (from 64 positions up to the
//! capacity), so a chat holds memory for its own length rather than the model's whole
//! context, and a long sequence copies its past O(log n) times instead of every step. A
//! cloned cache shares the buffers until one side writes (copy on write).
//!
//! The CPU decoder on quantised weights (`host.rs`) keeps its keys and values in plain
//! vectors here instead, `[positions, kv_heads, head_dim]` per layer, grown by `Vec`'s own
//! doubling and overwritten in place after [`KvCache::clear`].

use burn::prelude::*;

/// Positions the first buffer of a layer holds (it doubles from there).
const FIRST_ALLOCATION: usize = 64;

/// Keys and values of one sequence, all layers.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<3>, Tensor<3>)>>,
    host: Vec<HostLayer>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for `num_layers` layers, refusing to grow past `capacity` positions.
    pub fn new(num_layers: usize, capacity: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            host: vec![HostLayer::default(); num_layers],
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

    /// Positions the buffers of `layer` hold before they must grow (0 before its first write).
    pub fn allocated(&self, layer: usize) -> usize {
        self.layers[layer].as_ref().map_or(0, |(k, _)| k.dims()[1])
    }

    /// Forgets every position, keeping the buffers for a new sequence.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Writes `keys` and `values` (`[kv_heads, new, head_dim]`) after the cached positions of
    /// `layer` and returns views of the layer's keys and values so far. The caller advances the
    /// length with [`Self::advance`] once every layer is done.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        keys: Tensor<3>,
        values: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        let [heads, new, dim] = keys.dims();
        let (start, end) = (self.len, self.len + new);
        let allocation = growth(self.allocated(layer), end, self.capacity);
        let slot = &mut self.layers[layer];
        let (k, v) = match slot.take() {
            Some(buffers) if allocation == buffers.0.dims()[1] => buffers,
            old => {
                let device = keys.device();
                let fresh = || Tensor::zeros([heads, allocation, dim], &device);
                let (mut k, mut v) = (fresh(), fresh());
                if let Some((old_k, old_v)) = old.filter(|_| start > 0) {
                    let past = s![.., 0..start];
                    k = k.slice_assign(past, old_k.slice(past));
                    v = v.slice_assign(past, old_v.slice(past));
                }
                (k, v)
            }
        };
        let fresh = s![.., start..end];
        let (k, v) = (k.slice_assign(fresh, keys), v.slice_assign(fresh, values));
        let filled = s![.., 0..end];
        let views = (k.clone().slice(filled), v.clone().slice(filled));
        *slot = Some((k, v));
        views
    }

    pub(crate) fn advance(&mut self, tokens: usize) {
        self.len += tokens;
    }

    /// The host buffers of `layer`.
    pub(crate) fn host(&self, layer: usize) -> &HostLayer {
        &self.host[layer]
    }

    /// The host buffers of `layer`, cut to the cached positions (what a step appends to).
    pub(crate) fn host_layer(&mut self, layer: usize, row: usize) -> &mut HostLayer {
        let host = &mut self.host[layer];
        host.keys.truncate(self.len * row);
        host.values.truncate(self.len * row);
        host
    }
}

/// One layer's keys and values on the host: `[positions, kv_heads, head_dim]` each.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostLayer {
    pub keys: Vec<f32>,
    pub values: Vec<f32>,
}

/// The positions a layer's buffer must hold to take `needed` of them: what it has when that is
/// enough, else doubled (at least [`FIRST_ALLOCATION`]) until it is, never past `capacity`.
fn growth(allocated: usize, needed: usize, capacity: usize) -> usize {
    if needed <= allocated {
        return allocated;
    }
    let mut size = allocated.max(FIRST_ALLOCATION);
    while size < needed {
        size *= 2;
    }
    size.min(capacity.max(needed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(device: &Device, from: usize, n: usize) -> Tensor<3> {
        #[allow(clippy::cast_precision_loss, reason = "small test values")]
        let values: Vec<f32> = (from * 4..(from + n) * 4).map(|v| v as f32).collect();
        Tensor::from_data(TensorData::new(values, [2, n, 2]), device)
    }

    #[test]
    fn buffers_double_and_never_pass_the_capacity() {
        assert_eq!(growth(0, 1, 8192), 64);
        assert_eq!(growth(64, 64, 8192), 64);
        assert_eq!(growth(64, 65, 8192), 128);
        assert_eq!(growth(0, 300, 8192), 512);
        assert_eq!(growth(4096, 4097, 5000), 5000);
        assert_eq!(growth(0, 10, 16), 16);
    }

    #[test]
    fn growing_and_cloning_keep_every_position() {
        let device = Device::default();
        let mut cache = KvCache::new(1, 1000);
        let mut written: Vec<Tensor<3>> = Vec::new();
        let mut forked = None;
        for (step, n) in [3usize, 1, 70, 1, 200].into_iter().enumerate() {
            let k = positions(&device, cache.len(), n);
            let (keys, values) = cache.append(0, k.clone(), k.clone() * 2.0);
            cache.advance(n);
            written.push(k);
            let expected = Tensor::cat(written.clone(), 1);
            keys.to_data().assert_eq(&expected.to_data(), true);
            values
                .to_data()
                .assert_eq(&(expected * 2.0).to_data(), true);
            if step == 1 {
                forked = Some((cache.clone(), Tensor::cat(written.clone(), 1)));
            }
        }
        assert_eq!(cache.allocated(0), 512);
        // The clone taken after two steps still holds exactly those positions.
        let (mut fork, before) = forked.expect("forked");
        let extra = positions(&device, 100, 1);
        let (keys, _) = fork.append(0, extra.clone(), extra.clone());
        keys.to_data()
            .assert_eq(&Tensor::cat(vec![before, extra], 1).to_data(), true);
    }
}
