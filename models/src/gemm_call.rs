//! The `gemm` crate's f32 product with each matrix named by a pointer and its strides, so a
//! call site states shapes and layouts rather than `gemm::gemm`'s 19 positional arguments.
#![allow(
    unsafe_code,
    reason = "a thin wrapper of `gemm::gemm`, whose entry point takes raw pointers and strides; \
              the callers state why their operands are in bounds"
)]

/// A matrix operand: element `(i, j)` lies at `ptr + i·row_stride + j·col_stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strided<P> {
    pub ptr: P,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<P> Strided<P> {
    /// Rows `stride` apart, each contiguous (row-major).
    pub fn rows(ptr: P, stride: usize) -> Self {
        Self {
            ptr,
            row_stride: stride,
            col_stride: 1,
        }
    }

    /// Columns `stride` apart, each contiguous (column-major; a row-major matrix read
    /// transposed).
    pub fn columns(ptr: P, stride: usize) -> Self {
        Self {
            ptr,
            row_stride: 1,
            col_stride: stride,
        }
    }
}

fn isize_of(n: usize) -> isize {
    isize::try_from(n).expect("a matrix stride fits isize")
}

/// `dst (m × n) = [dst +] scale · lhs (m × k) · rhs (k × n)`: `accumulate` adds the product to
/// what `dst` holds, else overwrites it.
///
/// # Safety
/// Every element the shapes and strides address lies inside one live allocation per operand,
/// and `dst` overlaps neither `lhs` nor `rhs`.
#[allow(
    clippy::too_many_arguments,
    reason = "the shapes, three operands and two scalars"
)]
pub(crate) unsafe fn multiply(
    (m, n, k): (usize, usize, usize),
    dst: Strided<*mut f32>,
    accumulate: bool,
    lhs: Strided<*const f32>,
    rhs: Strided<*const f32>,
    scale: f32,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: the caller's contract is exactly `gemm::gemm`'s.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            isize_of(dst.col_stride),
            isize_of(dst.row_stride),
            accumulate,
            lhs.ptr,
            isize_of(lhs.col_stride),
            isize_of(lhs.row_stride),
            rhs.ptr,
            isize_of(rhs.col_stride),
            isize_of(rhs.row_stride),
            if accumulate { 1.0 } else { 0.0 },
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}
