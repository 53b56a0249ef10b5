//! `locks.json`: every run with its raw result lines, and the summary.

use serde_json::{json, Value};

use super::super::locks::{Cell, Ratio, Report};

fn cell_json(cell: &Cell, l1_load: u8) -> Value {
    json!({
        "host": cell.host_name(),
        "smp": cell.smp,
        "pv": cell.pv.name(),
        "workload": cell.workload.name(),
        "bootargs": cell.bootargs().unwrap_or_default(),
        "command": cell.command(l1_load),
    })
}

/// Adds the fields of `cell` to the object `value`.
fn with_cell(mut value: Value, cell: &Cell, l1_load: u8) -> Value {
    if let (Value::Object(map), Value::Object(cell)) = (&mut value, cell_json(cell, l1_load)) {
        for (key, v) in cell {
            if key == "host" || key == "smp" || key == "pv" || key == "workload" {
                map.insert(key, v);
            }
        }
    }
    value
}

pub(super) fn json(report: &Report) -> Value {
    let meta = &report.meta;
    let l1_load = meta.l1_load;
    json!({
        "suite": "locks",
        "meta": {
            "date": meta.date,
            "command": meta.command,
            "reps": meta.reps,
            "first_reps": meta.first_reps,
            "max_reps": meta.max_reps,
            "quick": meta.quick,
            "l1_load": l1_load,
            "guest": meta.guest,
            "git": meta.git,
            "qemu": meta.qemu,
            "image": meta.image.display().to_string(),
            "wall_s": meta.wall.as_secs_f64(),
            "runs": report.runs.len(),
            "runs_failed": report.runs.iter().filter(|r| !r.ok()).count(),
        },
        "cells": report.cells.iter().enumerate().map(|(i, c)| {
            let mut v = cell_json(c, l1_load);
            v["index"] = json!(i);
            v
        }).collect::<Vec<_>>(),
        "runs": report.runs.iter().map(|r| with_cell(json!({
            "seq": r.seq,
            "rep": r.rep,
            "cell": r.cell,
            "wall_s": r.wall.as_secs_f64(),
            "outcome": r.outcome,
            "ok": r.ok(),
            "error": r.error,
            "samples": r.samples,
            "console_tail": r.console_tail,
            "steal": r.steal,
        }), &report.cells[r.cell], l1_load)).collect::<Vec<_>>(),
        "summary": {
            "groups": report.groups.iter().map(|g| {
                let value = serde_json::to_value(g).unwrap_or(Value::Null);
                with_cell(value, &report.cells[g.cell], l1_load)
            }).collect::<Vec<_>>(),
            "ratios": report.ratios.iter().map(ratio_json).collect::<Vec<_>>(),
            "versus_linux": report.versus_linux.iter().map(ratio_json).collect::<Vec<_>>(),
            "goals": report.goals.iter().map(|g| json!({
                "what": g.what,
                "verdict": g.verdict(),
                "parts": g.parts.iter().map(|p| {
                    let mut v = ratio_json(&p.ratio);
                    v["bar"] = json!(p.bar);
                    v["aim"] = json!(p.aim);
                    v["verdict"] = json!(p.verdict());
                    v
                }).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        },
    })
}

fn ratio_json(r: &Ratio) -> Value {
    json!({
        "what": r.what,
        "kind": r.numerator.kind,
        "metric": r.metric.name(),
        "numerator_cell": r.numerator.cell,
        "numerator_slowpath": r.numerator.slowpath,
        "denominator_cell": r.denominator.map(|d| d.cell),
        "denominator_kind": r.denominator.map(|d| d.kind),
        "denominator_slowpath": r.denominator.and_then(|d| d.slowpath),
        "paired": r.paired,
        "spread": r.spread,
        "ci95": r.ci,
        "overhead_goal": r.overhead_goal,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::report;
    use super::*;

    #[test]
    fn json_has_every_run_and_the_summary() {
        let report = report();
        let v = json(&report);
        assert_eq!(v["meta"]["runs"], 20);
        assert_eq!(v["meta"]["runs_failed"], 1);
        assert_eq!(v["runs"].as_array().unwrap().len(), 20);
        assert_eq!(v["runs"][1]["host"], "tcg");
        assert_eq!(v["runs"][1]["pv"], "off");
        assert_eq!(v["runs"][0]["samples"][3]["kind"], "qspinlock");
        assert_eq!(v["runs"][11]["ok"], false);
        assert_eq!(v["runs"][8]["workload"], "mutex");
        assert_eq!(v["runs"][8]["samples"][2]["slowpath"], "spin-owner-pv");
        assert_eq!(v["runs"][8]["samples"][2]["slept"], 33);
        assert_eq!(
            v["cells"][5]["bootargs"],
            "app=lockstorm pv=off -- ms=300 slowpath=boot"
        );
        let groups = v["summary"]["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 8 * 4 + 2 * 3);
        assert_eq!(groups[0]["workload"], "contended");
        assert_eq!(groups[0]["per_sec"]["median"], 3000.0);
        assert!(groups[0].get("mutex").is_none());
        assert_eq!(groups[0]["counters"]["gap_p50_ns"]["median"], 320.0);
        assert_eq!(groups[3]["counters"]["halts"]["median"], 120.0);
        assert_eq!(v["runs"][0]["samples"][3]["steals"], 900);
        assert_eq!(groups[32]["workload"], "mutex");
        assert_eq!(groups[32]["mutex"]["slept"]["median"], 100.0);
        let ratios = &v["summary"]["ratios"];
        assert_eq!(ratios[2]["overhead_goal"], 0.02);
        assert_eq!(ratios[2]["numerator_slowpath"], Value::Null);
        assert_eq!(ratios[4]["kind"], "mutex");
        assert_eq!(
            (
                ratios[4]["numerator_cell"].clone(),
                ratios[4]["denominator_cell"].clone()
            ),
            (json!(8), json!(8))
        );
        assert_eq!(ratios[4]["numerator_slowpath"], "spin-owner-pv");
        assert_eq!(ratios[4]["denominator_slowpath"], "spin-owner");
        assert_eq!(ratios[4]["paired"], json!([1.5, 1.5]));
        let goals = &v["summary"]["goals"];
        assert_eq!(goals[0]["verdict"], Value::Null, "not measured");
        assert_eq!(goals[1]["verdict"], "met");
        assert_eq!(goals[1]["parts"][0]["bar"], 0.98);
        assert_eq!(goals[4]["verdict"], Value::Null, "no scale cell");
        assert_eq!(goals[6]["parts"][1]["metric"], "fair_min/fair_max");
        assert_eq!(goals[6]["parts"][1]["denominator_cell"], Value::Null);
        assert_eq!(v["summary"]["versus_linux"][2]["numerator_cell"], 6);
        assert_eq!(
            ratios[4]["ci95"],
            json!({"median": 1.5, "low": 1.5, "high": 1.5})
        );
    }
}
