//! The binary starts on a machine without a system font library: charts render with the font it
//! carries, so its dynamic section names no fontconfig or freetype (a NEEDED entry is a plain
//! soname string in the file).

#[test]
fn the_binary_links_no_font_library() {
    let bin = std::fs::read(env!("CARGO_BIN_EXE_baka")).expect("the baka binary");
    for lib in ["libfontconfig.so", "libfreetype.so", "libexpat.so"] {
        assert!(!bin.windows(lib.len()).any(|w| w == lib.as_bytes()), "the baka binary names {lib}");
    }
    // and the check sees sonames at all: the C library is always there
    assert!(bin.windows(9).any(|w| w == b"libc.so.6"), "no libc.so.6 in the binary: the soname check would not see anything");
}
