//! Inputs the fuzz targets (`fuzz/`, `fuzz_loop`) found failing, each
//! replayed through the same property function and, where it helps,
//! checked directly on the public API.

use cvmbuild::fuzzing;
use cvmbuild::repo::Evr;

/// `0:1.0_1-3:1.0_1` parsed as epoch 0, version `1.0_1-3:1.0_1`... and
/// displayed without the epoch, which reads back as epoch `1.0_1-3`
/// (an error) -- or, for `0:1:2`, silently as epoch 1, version 2.
#[test]
fn evr_with_colon_in_version_displays_its_epoch() {
    let e = Evr::parse("0:1:2").unwrap();
    assert_eq!((e.epoch, &*e.version), (0, "1:2"));
    assert_eq!(e.to_string(), "0:1:2");
    assert_eq!(Evr::parse(&e.to_string()).unwrap(), e);
    fuzzing::evr(b"\xfc:1.0~r\xff\xff\xff\xffc1t1-1\n0:1.0_1-3:1.0_1-3:1.0_1-3:1.0_1-3:1.0_1-3");
}

/// `1.0-1t1-1-` parses (as rpm does) to version `1.0-1t1-1` with an empty,
/// i.e. no, release; displayed as `1.0-1t1-1` it read back as release `1`.
#[test]
fn evr_with_dash_in_version_and_no_release_keeps_the_dash() {
    let e = Evr::parse("1.0-1t1-1-").unwrap();
    assert_eq!((&*e.version, e.release.as_deref()), ("1.0-1t1-1", None));
    assert_eq!(Evr::parse(&e.to_string()).unwrap(), e);
    fuzzing::evr(b"2:1.0~rc1-1t1-1-\n0:1.0_1-3el6\n1.0^git1-1-\n0:");
}
