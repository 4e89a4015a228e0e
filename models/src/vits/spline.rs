//! The inverse of the unconstrained rational-quadratic spline (Durkan et al., "Neural Spline
//! Flows") with linear tails, as VITS' stochastic duration predictor inverts it in each
//! `ConvFlow`. It runs on the host in f64: one value per phoneme, a few dozen per sentence.

/// VITS' spline constants (`transforms.py`).
const MIN_BIN_WIDTH: f64 = 1e-3;
const MIN_BIN_HEIGHT: f64 = 1e-3;
const MIN_DERIVATIVE: f64 = 1e-3;

/// One monotone spline on `[-tail_bound, tail_bound]`, the identity outside.
#[derive(Debug, Clone)]
pub(crate) struct Spline {
    cum_widths: Vec<f64>,
    cum_heights: Vec<f64>,
    /// At every knot, `bins + 1` of them.
    derivatives: Vec<f64>,
    tail_bound: f64,
}

impl Spline {
    /// `widths` and `heights` are the `bins` unnormalised bin sizes (already divided by
    /// `sqrt(filter_channels)`), `inner_derivatives` the `bins - 1` unnormalised derivatives at
    /// the inner knots.
    pub fn new(
        widths: &[f64],
        heights: &[f64],
        inner_derivatives: &[f64],
        tail_bound: f64,
    ) -> Self {
        let bins = widths.len();
        let span = 2.0 * tail_bound;
        let knots = |raw: &[f64], min: f64| -> Vec<f64> {
            let max = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = raw.iter().map(|v| (v - max).exp()).collect();
            let total: f64 = exps.iter().sum();
            #[allow(clippy::cast_precision_loss, reason = "ten bins")]
            let share = 1.0 - min * bins as f64;
            let mut cum = Vec::with_capacity(bins + 1);
            cum.push(-tail_bound);
            let mut acc = 0.0;
            for e in &exps {
                acc += min + share * e / total;
                cum.push(span * acc - tail_bound);
            }
            cum[bins] = tail_bound;
            cum
        };
        // The boundary derivatives are fixed so the spline meets the linear tails with slope 1.
        let boundary = (1.0 - MIN_DERIVATIVE).exp_m1().ln();
        let softplus = |v: f64| if v > 20.0 { v } else { v.exp().ln_1p() };
        let derivatives = (0..=bins)
            .map(|k| {
                let raw = if k == 0 || k == bins {
                    boundary
                } else {
                    inner_derivatives[k - 1]
                };
                MIN_DERIVATIVE + softplus(raw)
            })
            .collect();
        Self {
            cum_widths: knots(widths, MIN_BIN_WIDTH),
            cum_heights: knots(heights, MIN_BIN_HEIGHT),
            derivatives,
            tail_bound,
        }
    }

    fn bins(&self) -> usize {
        self.cum_widths.len() - 1
    }

    /// The bin of `v` among `knots` (searchsorted with the last knot nudged up, as VITS does).
    fn bin(&self, knots: &[f64], v: f64) -> usize {
        let bins = self.bins();
        knots
            .iter()
            .enumerate()
            .filter(|&(k, &edge)| v >= if k == bins { edge + 1e-6 } else { edge })
            .count()
            .saturating_sub(1)
            .min(bins - 1)
    }

    fn inside(&self, v: f64) -> bool {
        (-self.tail_bound..=self.tail_bound).contains(&v)
    }

    /// The `x` whose image is `y`.
    pub fn inverse(&self, y: f64) -> f64 {
        if !self.inside(y) {
            return y;
        }
        let k = self.bin(&self.cum_heights, y);
        let (x_k, w_k) = (
            self.cum_widths[k],
            self.cum_widths[k + 1] - self.cum_widths[k],
        );
        let (y_k, h_k) = (
            self.cum_heights[k],
            self.cum_heights[k + 1] - self.cum_heights[k],
        );
        let delta = h_k / w_k;
        let (d_k, d_k1) = (self.derivatives[k], self.derivatives[k + 1]);
        let dy = y - y_k;
        let sum = d_k + d_k1 - 2.0 * delta;
        let a = dy * sum + h_k * (delta - d_k);
        let b = h_k * d_k - dy * sum;
        let c = -delta * dy;
        let discriminant = (b * b - 4.0 * a * c).max(0.0);
        let theta = (2.0 * c) / (-b - discriminant.sqrt());
        theta * w_k + x_k
    }

    /// The image of `x` (what training runs; here to check [`Spline::inverse`]).
    #[cfg(test)]
    pub fn forward(&self, x: f64) -> f64 {
        if !self.inside(x) {
            return x;
        }
        let k = self.bin(&self.cum_widths, x);
        let (x_k, w_k) = (
            self.cum_widths[k],
            self.cum_widths[k + 1] - self.cum_widths[k],
        );
        let (y_k, h_k) = (
            self.cum_heights[k],
            self.cum_heights[k + 1] - self.cum_heights[k],
        );
        let delta = h_k / w_k;
        let (d_k, d_k1) = (self.derivatives[k], self.derivatives[k + 1]);
        let theta = (x - x_k) / w_k;
        let t1 = theta * (1.0 - theta);
        let numerator = h_k * (delta * theta * theta + d_k * t1);
        let denominator = delta + (d_k + d_k1 - 2.0 * delta) * t1;
        y_k + numerator / denominator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_parameters_give_the_identity_and_tails_pass_through() {
        let zeros = [0.0; 10];
        // Equal bins and unit slopes (softplus(boundary) + min = 1): the identity map.
        let unit = [(1.0 - MIN_DERIVATIVE).exp_m1().ln(); 9];
        let spline = Spline::new(&zeros, &zeros, &unit, 5.0);
        for y in [-4.9, -1.0, 0.0, 0.3, 2.5, 4.99] {
            let x = spline.inverse(y);
            assert!((x - y).abs() < 1e-9, "{y} → {x}");
        }
        assert_eq!(spline.inverse(7.5), 7.5);
        assert_eq!(spline.inverse(-5.5), -5.5);
    }

    #[test]
    fn inverse_undoes_the_forward_map_and_is_monotone() {
        let widths = [0.3, -1.0, 2.0, 0.0, 0.5, -0.2, 1.1, 0.0, -0.7, 0.4];
        let heights = [-0.5, 0.2, 0.9, -1.2, 0.0, 0.3, 0.3, 1.5, -0.1, 0.0];
        let derivs = [0.1, -0.3, 1.0, 0.5, -1.0, 0.2, 0.0, 2.0, -0.5];
        let spline = Spline::new(&widths, &heights, &derivs, 5.0);
        let mut last = f64::NEG_INFINITY;
        for step in 0..=200 {
            let x = -5.0 + 0.05 * f64::from(step);
            let y = spline.forward(x);
            assert!(y > last, "not monotone at {x}");
            last = y;
            let back = spline.inverse(y);
            assert!((back - x).abs() < 1e-9, "{x} → {y} → {back}");
        }
        // A non-trivial map: some point moves.
        assert!((spline.forward(1.0) - 1.0).abs() > 1e-3);
    }
}
