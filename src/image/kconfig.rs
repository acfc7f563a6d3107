//! `kernel.config`: a Kconfig fragment the chosen kernel package must
//! satisfy, checked against the `/boot/config-VERSION` it ships.
//!
//! cvmbuild does not compile kernels (CernVM took its kernel from a package
//! too), so a spec's kernel configuration is a *requirement*: the options
//! the image relies on (overlayfs, squashfs with the right decompressor,
//! initrd compression, devtmpfs...). Stating them turns "the image does not
//! boot" after a kernel update into a build error naming the option.
//!
//! The fragment has the syntax of a `.config` file, as `merge_config.sh`
//! takes: `CONFIG_NAME=VALUE` and `# CONFIG_NAME is not set`; other
//! comments and blank lines are ignored.

use super::Error;
use std::collections::BTreeMap;

/// An option's value: `y`, `m`, `n` (also "is not set"), or anything else
/// (numbers, quoted strings) compared literally.
type Value = String;

/// Parses a `.config`-syntax text: symbol -> (value, 1-based line).
/// `origin` names the text in errors.
pub fn parse(text: &str, origin: &str) -> Result<BTreeMap<String, (Value, usize)>, Error> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let n = i + 1;
        let (sym, val) = if let Some(rest) = line.strip_prefix("# ") {
            match rest.strip_suffix(" is not set") {
                Some(sym) if is_symbol(sym) => (sym, "n"),
                _ => continue,
            }
        } else if line.is_empty() || line.starts_with('#') {
            continue;
        } else {
            match line.split_once('=') {
                Some((sym, val)) if is_symbol(sym) && !val.is_empty() => (sym, val),
                _ => {
                    return Err(format!(
                        "{origin}:{n}: `{line}` is not `CONFIG_NAME=VALUE` or `# CONFIG_NAME is not set`"
                    ).into())
                }
            }
        };
        if let Some((_, first)) = out.insert(sym.to_string(), (val.to_string(), n)) {
            return Err(format!("{origin}:{n}: {sym} is already set on line {first}").into());
        }
    }
    Ok(out)
}

/// `CONFIG_` and Kconfig symbol characters (real configs have lowercase
/// ones, e.g. `CONFIG_MTD_NETtel`).
fn is_symbol(s: &str) -> bool {
    s.strip_prefix("CONFIG_").is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// Every option of `wanted` (from [`parse`]) that the kernel's `have`
/// configuration does not satisfy, one line each, in `wanted` line order.
/// `m` is satisfied by `y` too (the code is there, built in); `n` by an
/// option the kernel does not set at all.
pub fn unmet(
    wanted: &BTreeMap<String, (Value, usize)>,
    have: &BTreeMap<String, (Value, usize)>,
) -> Vec<String> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (sym, (want, line)) in wanted {
        let got = have.get(sym).map_or("n", |(v, _)| v.as_str());
        let ok = match want.as_str() {
            "m" => got == "m" || got == "y",
            w => got == w,
        };
        if !ok {
            let got = match got {
                "n" => "does not set it".to_string(),
                v => format!("has {sym}={v}"),
            };
            out.push((
                *line,
                format!("line {line}: {sym}={want} wanted, the kernel {got}"),
            ));
        }
    }
    out.sort();
    out.into_iter().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL: &str = "#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_MODULES=y\n\
        CONFIG_OVERLAY_FS=m\nCONFIG_SQUASHFS=m\nCONFIG_TMPFS=y\n# CONFIG_MODULE_SIG_FORCE is not set\n\
        CONFIG_HZ=250\nCONFIG_LOCALVERSION=\"\"\n";

    #[test]
    fn parses_values_and_not_set_and_skips_comments() {
        let c = parse(KERNEL, "config").unwrap();
        assert_eq!(c["CONFIG_OVERLAY_FS"], ("m".to_string(), 5));
        assert_eq!(c["CONFIG_MODULE_SIG_FORCE"], ("n".to_string(), 8));
        assert_eq!(c["CONFIG_LOCALVERSION"].0, "\"\"");
        assert_eq!(c.len(), 7);
    }

    #[test]
    fn bad_lines_and_duplicates_name_the_line() {
        let e = parse("CONFIG_A=y\nOVERLAY=y\n", "k.config")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("k.config:2: `OVERLAY=y`"), "{e}");
        let e = parse("CONFIG_A=y\n\nCONFIG_A=m\n", "k.config")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "k.config:3: CONFIG_A is already set on line 1");
        assert!(parse("CONFIG_A=\n", "k").is_err());
        assert!(parse("CONFIG_A-B=y\n", "k").is_err());
        assert!(parse("CONFIG_=y\n", "k").is_err());
        assert_eq!(parse("CONFIG_MTD_NETtel=m\n", "k").unwrap().len(), 1);
    }

    #[test]
    fn unmet_options_are_listed_in_line_order() {
        let have = parse(KERNEL, "config").unwrap();
        let ok = parse(
            "CONFIG_TMPFS=y\nCONFIG_SQUASHFS=m\n# modules may be built in\nCONFIG_TMPFS_X=n\n\
             CONFIG_MODULES=m\n# CONFIG_MODULE_SIG_FORCE is not set\nCONFIG_HZ=250\n",
            "spec",
        )
        .unwrap();
        assert_eq!(unmet(&ok, &have), Vec::<String>::new());
        let bad = parse(
            "CONFIG_OVERLAY_FS=y\nCONFIG_EROFS_FS=m\n# CONFIG_MODULES is not set\nCONFIG_HZ=1000\n",
            "spec",
        )
        .unwrap();
        assert_eq!(
            unmet(&bad, &have),
            [
                "line 1: CONFIG_OVERLAY_FS=y wanted, the kernel has CONFIG_OVERLAY_FS=m",
                "line 2: CONFIG_EROFS_FS=m wanted, the kernel does not set it",
                "line 3: CONFIG_MODULES=n wanted, the kernel has CONFIG_MODULES=y",
                "line 4: CONFIG_HZ=1000 wanted, the kernel has CONFIG_HZ=250",
            ]
        );
    }
}
