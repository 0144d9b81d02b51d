//! Splitting a total into whole parts by weight (largest remainder), the one rounding rule used
//! for every derived count, so that parts always add up to the total they came from.

/// Splits `total` into parts proportional to `weights`: each part gets the floor of its quota,
/// and the units left over go to the largest remainders (ties to the lower index). A zero
/// weight always gets zero. If every weight is zero the weights are taken as equal.
pub(crate) fn apportion(total: u64, weights: &[u64]) -> Vec<u64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let weight_sum: u128 = weights.iter().map(|&weight| u128::from(weight)).sum();
    if weight_sum == 0 {
        return apportion(total, &vec![1; weights.len()]);
    }
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for (index, &weight) in weights.iter().enumerate() {
        let quota = u128::from(total) * u128::from(weight);
        parts.push((quota / weight_sum) as u64);
        remainders.push((quota % weight_sum, index));
    }
    let handed_out: u64 = parts.iter().sum();
    let left_over = (total - handed_out) as usize;
    // Largest remainder first; the stable sort keeps ties in index order.
    remainders.sort_by_key(|&(remainder, _)| std::cmp::Reverse(remainder));
    for &(_, index) in remainders.iter().take(left_over) {
        parts[index] += 1;
    }
    parts
}

/// Like [`apportion`], but every part gets at least one when the total allows it, so that every
/// unit of a level with traffic takes part.
pub(crate) fn apportion_at_least_one(total: u64, weights: &[u64]) -> Vec<u64> {
    let count = weights.len() as u64;
    if count == 0 || total < count {
        return apportion(total, weights);
    }
    apportion(total - count, weights)
        .into_iter()
        .map(|part| part + 1)
        .collect()
}

/// A column of published counts multiplied by `numerator / denominator`: the column total is
/// rounded half up, then split over the rows by largest remainder, so the scaled rows add up to
/// the scaled total and a blank (zero) row stays zero.
pub(crate) fn scale_column(values: &[u64], numerator: u64, denominator: u64) -> Vec<u64> {
    let sum: u128 = values.iter().map(|&value| u128::from(value)).sum();
    let scaled_sum =
        (2 * sum * u128::from(numerator) + u128::from(denominator)) / (2 * u128::from(denominator));
    apportion(scaled_sum as u64, values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn apportion_examples() {
        assert_eq!(apportion(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(apportion(7, &[0, 5, 2]), vec![0, 5, 2]);
        assert_eq!(apportion(3, &[0, 0]), vec![2, 1]);
        assert_eq!(apportion_at_least_one(5, &[100, 0, 0]), vec![3, 1, 1]);
        assert_eq!(apportion_at_least_one(2, &[1, 1, 1]), vec![1, 1, 0]);
        assert_eq!(scale_column(&[150, 0, 50], 1, 100), vec![2, 0, 0]);
        assert_eq!(scale_column(&[1_274_485], 1, 100), vec![12_745]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn parts_add_up_and_zero_weights_get_nothing(
            total in 0u64..100_000,
            weights in proptest::collection::vec(0u64..1_000, 1..30),
        ) {
            let parts = apportion(total, &weights);
            prop_assert_eq!(parts.iter().sum::<u64>(), total);
            if weights.iter().any(|&weight| weight > 0) {
                for (part, weight) in parts.iter().zip(&weights) {
                    if *weight == 0 {
                        prop_assert_eq!(*part, 0);
                    }
                }
            }
        }

        #[test]
        fn scaling_by_one_is_identity(values in proptest::collection::vec(0u64..10_000, 1..30)) {
            prop_assert_eq!(scale_column(&values, 1, 1), values);
        }
    }
}
