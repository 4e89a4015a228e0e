//! The numpy array helpers diffusers builds its schedules with, reproduced value for value
//! (`linspace`'s pinned end, `arange`'s length rule, `round`'s ties to even, `interp`), so the
//! timesteps come out exactly as diffusers' do, ties included.

/// `np.linspace(start, stop, num, endpoint)`: `start + i·step`, the last value pinned to
/// `stop` when `endpoint`.
pub(crate) fn linspace(start: f64, stop: f64, num: usize, endpoint: bool) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let div = if endpoint { num - 1 } else { num };
    let step = (stop - start) / div as f64;
    let mut values: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if endpoint && let Some(last) = values.last_mut() {
        *last = stop;
    }
    values
}

/// `np.arange(start, stop, step)` for a float step: `ceil((stop − start)/step)` values
/// `start + i·δ`, where numpy's δ is `(start + step) − start` (not always `step` exactly).
pub(crate) fn arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Vec::new();
    }
    let delta = (start + step) - start;
    (0..len as usize)
        .map(|i| start + i as f64 * delta)
        .collect()
}

/// `np.round`: halves go to the even neighbour.
pub(crate) fn round(x: f64) -> f64 {
    x.round_ties_even()
}

/// `np.interp(x, arange(len(values)), values)`: linear interpolation between the values at
/// integer positions, clamped to the ends.
pub(crate) fn interp(x: f64, values: &[f64]) -> f64 {
    let last = values.len() - 1;
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return values[0];
    }
    if x >= last as f64 {
        return values[last];
    }
    let j = x.floor() as usize;
    let slope = values[j + 1] - values[j];
    slope * (x - j as f64) + values[j]
}

/// A value as an f32 and back: the precision diffusers stores its timesteps in.
pub(crate) fn to_f32(x: f64) -> f64 {
    f64::from(x as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_arange_and_round_match_numpy() {
        assert_eq!(
            linspace(0.0, 999.0, 4, true),
            vec![0.0, 333.0, 666.0, 999.0]
        );
        assert_eq!(linspace(0.0, 999.0, 3, true), vec![0.0, 499.5, 999.0]);
        assert_eq!(linspace(0.0, 10.0, 4, false), vec![0.0, 2.5, 5.0, 7.5]);
        assert_eq!(linspace(3.0, 7.0, 1, true), vec![3.0]);
        // np.arange(1000, 0, -1000/3) has 3 values, np.arange(1000, 0, -62.5) 16.
        assert_eq!(arange(1000.0, 0.0, -1000.0 / 3.0).len(), 3);
        let sixteenths = arange(1000.0, 0.0, -62.5);
        assert_eq!(sixteenths.len(), 16);
        assert_eq!(sixteenths[1], 937.5);
        assert_eq!(round(937.5), 938.0);
        assert_eq!(round(812.5), 812.0);
        assert_eq!(round(499.5), 500.0);
        assert_eq!(round(-0.4), 0.0);
    }

    #[test]
    fn interp_is_piecewise_linear_and_clamped() {
        let values = [1.0, 3.0, 7.0];
        assert_eq!(interp(0.5, &values), 2.0);
        assert_eq!(interp(1.25, &values), 4.0);
        assert_eq!(interp(2.0, &values), 7.0);
        assert_eq!(interp(-1.0, &values), 1.0);
        assert_eq!(interp(9.0, &values), 7.0);
    }
}
