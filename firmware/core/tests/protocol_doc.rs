//! The examples in docs/protocol.md parse with the codec, and re-encoding them gives the same
//! bytes: the document and the code cannot drift apart.

use fwcore::proto::{parse, FrameWriter};

#[test]
fn documented_examples_parse_and_round_trip() {
    let doc = include_str!("../../../docs/protocol.md");
    let block = doc
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("an examples block");
    let mut n = 0;
    for line in block.lines().filter(|l| l.starts_with('@')) {
        let f = parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
        let mut buf = [0u8; 512];
        let mut w = FrameWriter::new(&mut buf, f.kind);
        for (k, v) in f.fields() {
            w.field(k, v);
        }
        let again = w.finish().unwrap();
        assert_eq!(std::str::from_utf8(again).unwrap().trim_end(), line);
        n += 1;
    }
    assert!(n >= 10, "only {n} examples");
}
