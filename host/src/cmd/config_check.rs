//! `labctl config check FILE`: every error with file:line:column and the field; plugins that
//! were rejected are named too.

use std::path::Path;

use crate::{
    error::BadInput,
    plugins::{Catalog, Plugins},
};

/// `labctl config check FILE`
pub fn cmd(file: &Path, json: bool) -> anyhow::Result<()> {
    let (lab, mut errors) = match lab_config::load(file) {
        Ok(lab) => (Some(lab), vec![]),
        Err(e) => (None, e.0),
    };
    let mut rejected = vec![];
    if let Some(lab) = &lab {
        let plugins = Plugins::load(lab.plugin_dirs.as_deref());
        errors.extend(lab.check_with(&Catalog(&plugins)));
        rejected = plugins.rejected.clone();
    }
    if json {
        let v = serde_json::json!({
            "file": file,
            "ok": errors.is_empty(),
            "errors": errors.iter().map(|e| serde_json::json!({
                "file": e.file, "line": e.loc.line, "column": e.loc.col,
                "field": e.field, "message": e.message,
            })).collect::<Vec<_>>(),
            "rejected_plugins": rejected,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for r in &rejected {
            eprintln!(
                "warning: plugin {} rejected: {}",
                r.path.display(),
                r.reason
            );
        }
        for e in &errors {
            eprintln!("{e}");
        }
        if let (Some(lab), true) = (&lab, errors.is_empty()) {
            println!(
                "{}: ok: lab {:?}: {} bus(es), {} relay(s), {} sensor(s), {} board(s){}",
                file.display(),
                lab.name,
                lab.buses.len(),
                lab.relays.len(),
                lab.sensors.len(),
                lab.boards.len(),
                if lab.mqtt.is_some() { ", mqtt" } else { "" }
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(BadInput(format!("{} problem(s) in {}", errors.len(), file.display())).into())
    }
}
