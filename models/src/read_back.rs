//! Reading a tensor back to the host as f32 values, with an error that says what was read.

use burn::prelude::*;

use crate::ModelError;

/// `tensor`'s values, row-major; a backend failure names `what`.
pub(crate) fn read_back<const D: usize>(
    tensor: Tensor<D>,
    what: &str,
) -> Result<Vec<f32>, ModelError> {
    let backend = |e: String| ModelError::Backend(format!("reading {what}: {e}"));
    tensor
        .try_into_data()
        .map_err(|e| backend(format!("{e:?}")))?
        .try_into_vec_as()
        .map_err(|e| backend(format!("{e:?}")))
}
