//! `labctl report`: a self-contained HTML file whose inline SVG charts carry the runs' data,
//! rendered by headless Chromium (Debian's `chromium`) with no console errors and nothing fetched.

use std::process::Command;

use labctl_integration_tests::{labctl, run_ok, virtual_lab};

fn chromium() -> Option<&'static str> {
    for c in ["chromium", "chromium-browser"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Some(c);
        }
    }
    let why = "chromium is not installed (apt-get install chromium)";
    if std::env::var("LAB_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
        panic!("{why}, and LAB_REQUIRE_EXTERNAL=1");
    }
    eprintln!("skipping the rendering check: {why}");
    None
}

#[test]
fn the_html_report_is_self_contained_and_renders_its_charts() {
    let (dir, lab) = virtual_lab();
    let lab = lab.to_str().unwrap();
    run_ok(&["--lab", lab, "run", "--tokens", "40", "--repeat", "2"]);
    let html = dir.path().join("report.html");
    run_ok(&[
        "--lab",
        lab,
        "report",
        "--last",
        "-o",
        html.to_str().unwrap(),
    ]);
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: no scripts, no external references.
    for bad in ["<script", "http://", "https://", "src=", "@import", "url("] {
        assert!(!page.contains(bad), "the report references {bad}");
    }
    // Every chart is there and carries data.
    for class in ["trace", "itl", "ops", "compare", "pareto"] {
        assert!(
            page.contains(&format!("<svg class=\"{class}\"")),
            "{class} chart"
        );
    }
    let traces = page.matches("<polyline class=\"power\"").count();
    assert_eq!(traces, 6, "one power trace per run");
    assert!(
        !page.contains("data-points=\"0\""),
        "every trace has points"
    );
    assert!(
        page.matches("class=\"tok\"").count() >= 6 * 39,
        "token markers"
    );
    assert!(
        page.matches("<circle class=\"pt").count() >= 3,
        "pareto points"
    );
    assert!(page.matches("class=\"bar hist\"").count() > 0);
    // JSON and CSV carry the same runs.
    let json = dir.path().join("report.json");
    let o = labctl()
        .args([
            "--lab",
            lab,
            "report",
            "--all",
            "--format",
            "json",
            "-o",
            json.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 6);

    let Some(chromium) = chromium() else {
        return;
    };
    let png = dir.path().join("report.png");
    let o = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .args([
            "--window-size=1000,2600",
            &format!("--screenshot={}", png.display()),
        ])
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        png.exists() && std::fs::metadata(&png).unwrap().len() > 20_000,
        "{log}"
    );
    for line in log.lines() {
        assert!(
            !(line.contains("CONSOLE") || line.contains("Uncaught") || line.contains("net::ERR")),
            "browser console: {line}"
        );
    }
    // The rendered DOM holds the SVG elements with their data points.
    let o = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(
        dom.matches("<svg").count() >= 10,
        "rendered DOM lacks the charts"
    );
    assert!(dom.contains("class=\"power\"") && dom.contains("class=\"pt pareto\""));
}
