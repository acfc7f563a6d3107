//! "Did you mean" suggestions by edit distance.

/// Optimal-string-alignment distance: Levenshtein plus adjacent
/// transpositions, so that `verison` is one edit from `version`.
pub(crate) use strsim::osa_distance as distance;

/// The candidate closest to `name`, if it is close enough to be a likely
/// typo: at most one edit per three characters (and at least one).
pub(crate) fn nearest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("verison", "version"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn nearest_picks_close_names_only() {
        let names = ["version", "packages", "repos"];
        assert_eq!(nearest("verison", names), Some("version"));
        assert_eq!(nearest("repo", names), Some("repos"));
        assert_eq!(nearest("kernel", names), None);
    }
}
