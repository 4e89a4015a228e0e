//! The ranking, free of bindings so that it can be unit-tested natively.

use std::cmp::Ordering;

/// What the ranking needs to know about one candidate target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The candidate's id.
    pub id: &'a str,
    /// The host's view of its health.
    pub healthy: bool,
    /// Requests in flight on it.
    pub in_flight: u32,
    /// Recent latency in milliseconds, if measured.
    pub latency_ms: Option<u32>,
    /// Configured relative weight; 0 means drained.
    pub weight: u32,
}

/// The outcome of ranking: a target and its fallbacks, as candidate ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The id to send the request to.
    pub target: String,
    /// The ids to try next, in order.
    pub fallbacks: Vec<String>,
}

/// Ranks `targets` best first (see the crate docs) and returns the best as the
/// target and the rest as fallbacks; `None` when there are no targets.
pub fn rank(targets: &[Target<'_>]) -> Option<Choice> {
    let mut order: Vec<&Target<'_>> = targets.iter().collect();
    order.sort_by(|a, b| compare(a, b));
    let (first, rest) = order.split_first()?;
    Some(Choice {
        target: first.id.to_owned(),
        fallbacks: rest.iter().map(|t| t.id.to_owned()).collect(),
    })
}

/// The rank class: lower is better.
fn class(t: &Target<'_>) -> u8 {
    match (t.healthy, t.weight > 0) {
        (true, true) => 0,
        (true, false) => 1,
        (false, true) => 2,
        (false, false) => 3,
    }
}

/// Orders two targets, better first.
fn compare(a: &Target<'_>, b: &Target<'_>) -> Ordering {
    class(a)
        .cmp(&class(b))
        .then_with(|| compare_score(a, b))
        .then_with(|| compare_latency(a.latency_ms, b.latency_ms))
        .then_with(|| a.id.cmp(b.id))
}

/// Compares (in_flight + 1) / weight exactly by cross-multiplying; a weight of
/// 0 (only compared against another 0, since it is its own class) is treated
/// as 1 so that drained targets still spread by load.
fn compare_score(a: &Target<'_>, b: &Target<'_>) -> Ordering {
    let load = |t: &Target<'_>| u64::from(t.in_flight) + 1;
    let weight = |t: &Target<'_>| u64::from(t.weight.max(1));
    (load(a) * weight(b)).cmp(&(load(b) * weight(a)))
}

/// Lower latency first; unmeasured after any measured one.
fn compare_latency(a: Option<u32>, b: Option<u32>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(
        id: &str,
        healthy: bool,
        in_flight: u32,
        latency_ms: Option<u32>,
        weight: u32,
    ) -> Target<'_> {
        Target {
            id,
            healthy,
            in_flight,
            latency_ms,
            weight,
        }
    }

    fn ids(choice: &Choice) -> Vec<&str> {
        std::iter::once(choice.target.as_str())
            .chain(choice.fallbacks.iter().map(String::as_str))
            .collect()
    }

    #[test]
    fn no_candidates_gives_none() {
        assert_eq!(rank(&[]), None);
    }

    #[test]
    fn single_candidate_is_picked_without_fallbacks() {
        let c = rank(&[t("a", true, 5, None, 1)]).unwrap();
        assert_eq!(c.target, "a");
        assert!(c.fallbacks.is_empty());
    }

    #[test]
    fn least_in_flight_wins() {
        let c = rank(&[
            t("a", true, 3, Some(10), 1),
            t("b", true, 1, Some(50), 1),
            t("c", true, 2, Some(5), 1),
        ])
        .unwrap();
        assert_eq!(ids(&c), ["b", "c", "a"]);
    }

    #[test]
    fn weight_scales_the_score() {
        // a: (4+1)/1 = 5; b: (9+1)/4 = 2.5; c: (2+1)/1 = 3
        let c = rank(&[
            t("a", true, 4, None, 1),
            t("b", true, 9, None, 4),
            t("c", true, 2, None, 1),
        ])
        .unwrap();
        assert_eq!(ids(&c), ["b", "c", "a"]);
    }

    #[test]
    fn equal_fractions_tie_then_latency_decides() {
        // a: (1+1)/2 = 1; b: (0+1)/1 = 1 -> tie, b is faster.
        let c = rank(&[t("a", true, 1, Some(80), 2), t("b", true, 0, Some(20), 1)]).unwrap();
        assert_eq!(ids(&c), ["b", "a"]);
    }

    #[test]
    fn unmeasured_latency_loses_ties_and_id_breaks_the_rest() {
        let c = rank(&[
            t("z", true, 0, None, 1),
            t("y", true, 0, Some(900), 1),
            t("b", true, 0, None, 1),
            t("a", true, 0, None, 1),
        ])
        .unwrap();
        assert_eq!(ids(&c), ["y", "a", "b", "z"]);
    }

    #[test]
    fn unhealthy_come_last_even_when_idle() {
        let c = rank(&[
            t("sick", false, 0, Some(1), 10),
            t("busy", true, 50, Some(500), 1),
        ])
        .unwrap();
        assert_eq!(ids(&c), ["busy", "sick"]);
    }

    #[test]
    fn best_unhealthy_is_picked_when_none_is_healthy() {
        let c = rank(&[t("a", false, 3, None, 1), t("b", false, 1, None, 1)]).unwrap();
        assert_eq!(ids(&c), ["b", "a"]);
    }

    #[test]
    fn drained_targets_follow_their_health_class() {
        let c = rank(&[
            t("unhealthy-drained", false, 0, None, 0),
            t("drained", true, 0, None, 0),
            t("unhealthy", false, 0, None, 1),
            t("ok", true, 100, None, 1),
        ])
        .unwrap();
        assert_eq!(ids(&c), ["ok", "drained", "unhealthy", "unhealthy-drained"]);
    }

    #[test]
    fn large_values_do_not_overflow() {
        let c = rank(&[
            t("a", true, u32::MAX, None, u32::MAX),
            t("b", true, u32::MAX - 1, None, 1),
        ])
        .unwrap();
        assert_eq!(ids(&c), ["a", "b"]);
    }
}
