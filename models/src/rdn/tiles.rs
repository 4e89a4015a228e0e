//! Equal overlapping windows over one image axis, so the windows of a large image can run as
//! one batch: each window is `window` pixels (or the whole axis when shorter), and each keeps
//! only the part of its output at least `overlap` pixels from its edges, except where its edge
//! is the image's own.

/// One window along an axis: the input pixels `start..start + len`, of which the output of
/// `keep_from..keep_to` (image coordinates) is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub len: usize,
    pub keep_from: usize,
    pub keep_to: usize,
}

/// Windows covering `0..length` whose kept parts tile it exactly once. `window` must exceed
/// `2 × overlap`.
pub fn spans(length: usize, window: usize, overlap: usize) -> Vec<Span> {
    assert!(
        window > 2 * overlap,
        "a window of {window} with an overlap of {overlap} keeps nothing"
    );
    if length <= window {
        return vec![Span {
            start: 0,
            len: length,
            keep_from: 0,
            keep_to: length,
        }];
    }
    let core = window - 2 * overlap;
    (0..length)
        .step_by(core)
        .map(|from| Span {
            start: from.saturating_sub(overlap).min(length - window),
            len: window,
            keep_from: from,
            keep_to: (from + core).min(length),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_parts_tile_the_axis_and_stay_clear_of_inner_edges() {
        for length in [1, 5, 64, 100, 101, 150, 151, 257, 1000] {
            for (window, overlap) in [(100, 10), (64, 12), (30, 0)] {
                let spans = spans(length, window, overlap);
                let mut next = 0;
                for span in &spans {
                    assert_eq!(
                        span.keep_from, next,
                        "{length} {window} {overlap}: {spans:?}"
                    );
                    assert!(span.keep_to > span.keep_from);
                    assert!(span.start + span.len <= length);
                    assert!(span.len == window.min(length));
                    if span.start > 0 {
                        assert!(span.keep_from >= span.start + overlap, "{span:?}");
                    }
                    if span.start + span.len < length {
                        assert!(span.keep_to + overlap <= span.start + span.len, "{span:?}");
                    }
                    next = span.keep_to;
                }
                assert_eq!(next, length);
            }
        }
    }
}
