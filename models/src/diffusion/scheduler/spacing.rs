//! The inference timesteps Euler, Euler ancestral and DDIM pick from the training range, by
//! `timestep_spacing` (Lin et al. 2023, table 2): `linspace` (evenly from N − 1 down to 0,
//! fractional), `leading` (multiples of N / steps, plus `steps_offset`) and `trailing` (evenly
//! from N − 1 down). DPM-Solver and LCM space theirs differently (in their own files).

use super::numpy::{arange, linspace, round};
use super::resolve::Spacing;

/// `steps` timesteps, descending, over `n` training steps. `linspace` values are left
/// unrounded (Euler keeps them fractional, DDIM rounds them).
pub(crate) fn spaced_timesteps(
    spacing: Spacing,
    n: usize,
    steps: usize,
    offset: usize,
) -> Vec<f64> {
    match spacing {
        Spacing::Linspace => {
            let mut values = linspace(0.0, (n - 1) as f64, steps, true);
            values.reverse();
            values
        }
        Spacing::Leading => {
            let ratio = n / steps;
            (0..steps)
                .rev()
                .map(|i| (i * ratio + offset) as f64)
                .collect()
        }
        Spacing::Trailing => trailing(n as f64, n, steps),
    }
}

/// `round(arange(start, 0, −n/steps)) − 1`. numpy's float `arange` has one value too many at
/// some step counts (61, 103, … for n = 1000: the last lands at −6e-13 and rounds to a
/// timestep of −1); only the first `steps` are kept.
pub(crate) fn trailing(start: f64, n: usize, steps: usize) -> Vec<f64> {
    arange(start, 0.0, -(n as f64 / steps as f64))
        .into_iter()
        .take(steps)
        .map(|t| round(t) - 1.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_steps_over_a_thousand() {
        assert_eq!(
            spaced_timesteps(Spacing::Linspace, 1000, 4, 0),
            vec![999.0, 666.0, 333.0, 0.0]
        );
        assert_eq!(
            spaced_timesteps(Spacing::Leading, 1000, 4, 1),
            vec![751.0, 501.0, 251.0, 1.0]
        );
        assert_eq!(
            spaced_timesteps(Spacing::Trailing, 1000, 4, 0),
            vec![999.0, 749.0, 499.0, 249.0]
        );
    }

    #[test]
    fn fifty_steps_over_a_thousand() {
        let linspace = spaced_timesteps(Spacing::Linspace, 1000, 50, 0);
        // 999·i/49 from the top.
        assert_eq!(linspace[0], 999.0);
        assert!((linspace[1] - 999.0 * 48.0 / 49.0).abs() < 1e-9);
        assert_eq!(linspace[49], 0.0);
        let leading = spaced_timesteps(Spacing::Leading, 1000, 50, 1);
        assert_eq!((leading[0], leading[1], leading[49]), (981.0, 961.0, 1.0));
        let trailing = spaced_timesteps(Spacing::Trailing, 1000, 50, 0);
        assert_eq!(
            (trailing[0], trailing[1], trailing[49]),
            (999.0, 979.0, 19.0)
        );
    }

    #[test]
    fn trailing_has_exactly_steps_values() {
        for steps in 1..=1000 {
            let t = spaced_timesteps(Spacing::Trailing, 1000, steps, 0);
            assert_eq!(t.len(), steps);
            assert!(
                t.iter().all(|&x| (0.0..1000.0).contains(&x)),
                "{steps}: {t:?}"
            );
        }
        // 16 steps: the ties 937.5, 812.5, … round to even as numpy does.
        let t = spaced_timesteps(Spacing::Trailing, 1000, 16, 0);
        assert_eq!(&t[..4], &[999.0, 937.0, 874.0, 811.0]);
    }
}
