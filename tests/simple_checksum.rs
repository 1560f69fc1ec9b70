//! The simple protocol's `checksum` object verified end to end through the decoder: the
//! DERIVED worked row as a simple INSERT (`tests/fixtures/avro/worked_row_simple_insert.json`,
//! checksum 3458821086, TIMESTAMP in `Asia/Shanghai`) after a BOOTSTRAP announcing its column
//! types; tampered values, UPDATE `previous`, DELETE, and tables not yet announced.

use cdcmon::checksum::Verdict;
use cdcmon::event::Protocol;
use cdcmon::protocol::{Compression, Decoder, ProtocolChoice};

/// BOOTSTRAP for `test.t`, shaped like TiCDC's (TF `simple/message.go` TableSchema; columns in
/// column-ID order). Constructed here for the DERIVED worked row's DDL (vectors.json).
const BOOTSTRAP: &str = r#"{"version":1,"type":"BOOTSTRAP","commitTs":0,"buildTs":0,"tableSchema":{"schema":"test","table":"t","tableID":100,"version":1,"columns":[
{"name":"id","dataType":{"mysqlType":"int","charset":"binary","collate":"binary","length":11},"nullable":false},
{"name":"name","dataType":{"mysqlType":"varchar","charset":"utf8mb4","collate":"utf8mb4_bin","length":32},"nullable":true},
{"name":"price","dataType":{"mysqlType":"decimal","charset":"binary","collate":"binary","length":10,"decimal":2},"nullable":false},
{"name":"amount","dataType":{"mysqlType":"bigint","charset":"binary","collate":"binary","length":20,"unsigned":true},"nullable":true},
{"name":"ratio","dataType":{"mysqlType":"float","charset":"binary","collate":"binary","length":12},"nullable":true},
{"name":"flags","dataType":{"mysqlType":"bit","charset":"binary","collate":"binary","length":8},"nullable":true},
{"name":"color","dataType":{"mysqlType":"enum","charset":"utf8mb4","collate":"utf8mb4_bin","elements":["red","green","blue"]},"nullable":true},
{"name":"tags","dataType":{"mysqlType":"set","charset":"utf8mb4","collate":"utf8mb4_bin","elements":["a","b","c"]},"nullable":true},
{"name":"ts","dataType":{"mysqlType":"timestamp","charset":"binary","collate":"binary","decimal":3},"nullable":true},
{"name":"dt","dataType":{"mysqlType":"datetime","charset":"binary","collate":"binary"},"nullable":true},
{"name":"d","dataType":{"mysqlType":"date","charset":"binary","collate":"binary"},"nullable":true},
{"name":"tm","dataType":{"mysqlType":"time","charset":"binary","collate":"binary","decimal":2},"nullable":true},
{"name":"js","dataType":{"mysqlType":"json","charset":"binary","collate":"binary"},"nullable":true},
{"name":"bin","dataType":{"mysqlType":"varbinary","charset":"binary","collate":"binary","length":16},"nullable":true},
{"name":"note","dataType":{"mysqlType":"text","charset":"utf8mb4","collate":"utf8mb4_bin"},"nullable":true}],
"indexes":[{"name":"primary","unique":true,"primary":true,"nullable":false,"columns":["id"]}]}}"#;

fn insert() -> String {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/avro/worked_row_simple_insert.json"
    );
    std::fs::read_to_string(p).unwrap()
}

fn verdict(d: &mut Decoder, msg: &str) -> Option<Verdict> {
    let evs = d.decode(None, Some(msg.as_bytes())).unwrap().events;
    assert_eq!(evs[0].protocol, Protocol::Simple);
    evs[0].checksum.as_ref().map(|c| c.verdict)
}

fn decoder() -> Decoder {
    Decoder::new(ProtocolChoice::Auto, Compression::None)
}

#[test]
fn worked_row_insert_verifies_after_bootstrap() {
    let mut d = decoder();
    // Before the table is announced: carried but unverifiable.
    assert_eq!(verdict(&mut d, &insert()), Some(Verdict::Absent));
    d.decode(None, Some(BOOTSTRAP.as_bytes())).unwrap();
    let msg = insert();
    let ev = &d.decode(None, Some(msg.as_bytes())).unwrap().events[0];
    assert_eq!(
        ev.checksum.as_ref().map(|c| c.verdict),
        Some(Verdict::Ok),
        "{:?}",
        ev.checksum
    );
}

#[test]
fn any_tampered_value_is_a_mismatch() {
    let mut d = decoder();
    d.decode(None, Some(BOOTSTRAP.as_bytes())).unwrap();
    let msg = insert();
    let swaps = [
        (r#""name":"Alice""#, r#""name":"Alicf""#),
        (r#""price":"12.50""#, r#""price":"12.51""#),
        (
            r#""amount":"18446744073709551615""#,
            r#""amount":"18446744073709551614""#,
        ),
        (r#""ratio":"1.5""#, r#""ratio":"1.25""#),
        (r#""flags":"5""#, r#""flags":"4""#),
        (r#""color":"2""#, r#""color":"3""#),
        (r#""tags":"5""#, r#""tags":"4""#),
        (
            r#""value":"2024-01-02 11:04:05.678""#,
            r#""value":"2024-01-02 11:04:05.679""#,
        ),
        (r#""location":"Asia/Shanghai""#, r#""location":"UTC""#),
        (
            r#""dt":"2024-01-02 03:04:05""#,
            r#""dt":"2024-01-02 03:04:06""#,
        ),
        (r#""d":"2024-01-02""#, r#""d":"2024-01-03""#),
        (r#""tm":"12:34:56.70""#, r#""tm":"12:34:56.71""#),
        (r#""bin":"AP8=""#, r#""bin":"AP4=""#),
        (r#""note":null"#, r#""note":"""#),
        (r#""id":"1""#, r#""id":"2""#),
    ];
    for (from, to) in swaps {
        assert!(msg.contains(from), "{from}");
        let m = msg.replace(from, to);
        assert_eq!(
            verdict(&mut d, &m),
            Some(Verdict::Mismatch),
            "{from} -> {to}"
        );
    }
    // A different carried checksum, and TiCDC's own corrupted flag.
    let m = msg.replace("\"current\":3458821086", "\"current\":3458821087");
    assert_eq!(verdict(&mut d, &m), Some(Verdict::Mismatch));
    let m = msg.replace("\"corrupted\":false", "\"corrupted\":true");
    let ev = &d.decode(None, Some(m.as_bytes())).unwrap().events[0];
    assert!(ev.checksum.as_ref().unwrap().corrupted);
}

#[test]
fn update_previous_and_delete() {
    let mut d = decoder();
    d.decode(None, Some(BOOTSTRAP.as_bytes())).unwrap();
    let msg = insert();
    let data_at = msg.find("\"data\":").unwrap();
    let row = &msg[data_at + 7..msg.len() - 1];
    // UPDATE with the same row as old and new: both sides verify.
    let update = msg[..data_at]
        .replace("\"INSERT\"", "\"UPDATE\"")
        .replace("\"previous\":0", "\"previous\":3458821086")
        + &format!("\"data\":{row},\"old\":{row}}}");
    assert_eq!(verdict(&mut d, &update), Some(Verdict::Ok));
    // The old row tampered: `previous` mismatches.
    let bad_old = update.replace(
        &format!("\"old\":{row}"),
        &format!("\"old\":{}", row.replace("Alice", "Alicf")),
    );
    assert_eq!(verdict(&mut d, &bad_old), Some(Verdict::Mismatch));
    // DELETE: the old row is checked against `previous`.
    let delete = msg[..data_at].replace("\"INSERT\"", "\"DELETE\"").replace(
        "\"current\":3458821086,\"previous\":0",
        "\"current\":0,\"previous\":3458821086",
    ) + &format!("\"old\":{row}}}");
    assert_eq!(verdict(&mut d, &delete), Some(Verdict::Ok));
    // No checksum object at all: no verdict.
    let plain = msg.replace(
        r#""checksum":{"version":2,"corrupted":false,"current":3458821086,"previous":0},"#,
        "",
    );
    assert_eq!(verdict(&mut d, &plain), None);
}
