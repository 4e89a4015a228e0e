//! The additive causal mask of a decoder step, shared by every decoder family.

use burn::prelude::*;

/// `[1, new, len]`: 0 where query row `i` (at position `cached + i`) may see key `j`, −∞
/// after it.
pub(crate) fn causal_mask(new: usize, len: usize, cached: usize, device: &Device) -> Tensor<3> {
    let mask: Vec<f32> = (0..new)
        .flat_map(|i| {
            (0..len).map(move |j| {
                if j > cached + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_data(TensorData::new(mask, [1, new, len]), device)
}
