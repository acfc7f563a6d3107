//! Shell-style globs (`*`, `?`, `[abc]`, `[a-z]`, `[!x]`) as yum uses them
//! for `exclude=` and `installonlypkgs`. Hand-written because the patterns
//! are tiny and a regex engine would be a heavy dependency for this.

/// Whether `text` matches the whole of `pattern`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with single-star backtracking: linear in practice.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, next)) = class(&p, pi, t[ti]) {
                        if ok {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        // An unterminated class is a literal `[`.
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Checks the shape of a version pattern (a pin such as `3.10.*`): a
/// non-empty version prefix, then one `*` that ends it, and nothing else.
/// `*` matches the rest of a version, so text after it (`3.10.*.x`) would
/// only match versions ending in that text, never what was meant; `?` and
/// `[...]` have no use on versions. Returns the prefix (for the caller to
/// check as the start of a version label).
pub fn version_pattern_prefix(pattern: &str) -> Result<&str, String> {
    if let Some(c) = pattern.chars().find(|c| matches!(c, '?' | '[' | ']')) {
        return Err(format!(
            "`{c}` cannot appear in the version pattern `{pattern}`: only a final `*` is a wildcard"
        ));
    }
    let prefix = pattern.strip_suffix('*').unwrap_or(pattern);
    if prefix.contains('*') {
        return Err(format!(
            "`*` must end the version pattern `{pattern}`: it matches the rest of the version"
        ));
    }
    if prefix.is_empty() {
        return Err(format!(
            "the version pattern `{pattern}` matches every version: leave the constraint out"
        ));
    }
    Ok(prefix)
}

/// Matches `c` against the class starting at `p[start] == '['`; returns
/// whether it matched and the index after `]`, or `None` if unterminated.
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            matched |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            matched |= p[i] == c;
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn version_patterns() {
        use super::version_pattern_prefix as prefix;
        assert_eq!(prefix("3.10.*"), Ok("3.10."));
        assert_eq!(prefix("1.0-3*"), Ok("1.0-3"));
        assert!(prefix("3.10.*.x").unwrap_err().contains("must end"));
        assert!(prefix("3.1?").unwrap_err().contains("`?`"));
        assert!(prefix("*").unwrap_err().contains("every version"));
    }

    #[test]
    fn globs() {
        assert!(glob_match("*-debuginfo", "glibc-debuginfo"));
        assert!(!glob_match("*-debuginfo", "glibc-debuginfo-common"));
        assert!(glob_match("kernel-*", "kernel-devel"));
        assert!(!glob_match("kernel-*", "kernel"));
        assert!(glob_match("kernel", "kernel"));
        assert!(glob_match("lib?", "libc"));
        assert!(!glob_match("lib?", "lib"));
        assert!(glob_match("x[0-9]*", "x86_64"));
        assert!(!glob_match("x[!0-9]*", "x86_64"));
        assert!(glob_match("*a*b*c", "aXbXbc"));
        assert!(glob_match("a[b", "a[b"));
        assert!(glob_match("*", ""));
    }
}
