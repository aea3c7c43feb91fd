//! `labctl verify`: every run of a batch is sealed with checksums over its tokens and samples
//! when the batch ends; a database as labctl left it verifies, and a token or sample changed or
//! removed afterwards is found and named by run.

use labctl_integration_tests::{labctl, run_ok, text, virtual_lab};

#[test]
fn a_sealed_database_verifies_and_a_changed_row_is_found() {
    let (dir, lab) = virtual_lab();
    let lab_s = lab.to_str().unwrap();
    run_ok(&["--lab", lab_s, "run", "--tokens", "16", "--repeat", "2"]);
    let o = run_ok(&["--lab", lab_s, "verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(v["runs"], 6, "{v}");
    assert_eq!(v["sealed"], 6, "{v}");
    assert_eq!(v["mismatched"].as_array().unwrap().len(), 0, "{v}");
    // The manifest says what ran: the posix firmware's hash, the toolchain, the sensor.
    let db = dir.path().join("lab.duckdb");
    {
        let c = duckdb::Connection::open(&db).unwrap();
        let (fw, tc, sensor): (String, String, String) = c
            .query_row(
                "SELECT firmware, toolchain, sensor FROM run_manifests LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert!(fw.ends_with("labctl-fw-posix"), "{fw}");
        assert!(tc.starts_with("rustc "), "{tc}");
        assert!(sensor.contains("ina219"), "{sensor}");
        // Afterwards, one token of one run changes and one sample of another disappears.
        c.execute_batch(
            "UPDATE tokens SET token_id = token_id + 1 WHERE run_id = (SELECT min(run_id) FROM runs) AND idx = 3;
             DELETE FROM power_samples WHERE rowid = (SELECT min(rowid) FROM power_samples WHERE run_id = (SELECT max(run_id) FROM runs));",
        )
        .unwrap();
    }
    let o = labctl()
        .args(["--lab", lab_s, "verify", "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    let bad = v["mismatched"].as_array().unwrap();
    assert_eq!(bad.len(), 2, "{v}");
    let whats: Vec<&str> = bad.iter().map(|m| m["what"].as_str().unwrap()).collect();
    assert!(
        whats.iter().any(|w| w.contains("token rows changed")),
        "{whats:?}"
    );
    assert!(
        whats
            .iter()
            .any(|w| w.contains("power samples, sealed with")),
        "{whats:?}"
    );
}
