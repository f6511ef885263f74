//! What a scenario produced: a table for humans (printed) and the same
//! figures as JSON in `<out>/<scenario>.json`.

use std::path::Path;

use serde::Serialize;

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub broker: &'static str,
    pub machine: String,
    /// Seconds each cell ran.
    pub cell_secs: f64,
    pub smoke: bool,
    /// Column names of [`Self::rows`].
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// Every figure, structured.
    pub data: serde_json::Value,
    /// Targets and whether they were met, one line each.
    pub verdicts: Vec<String>,
}

impl Report {
    /// The table, then the verdicts.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:>w$}"))
                .collect();
            format!("| {} |", padded.join(" | "))
        };
        let mut out = vec![
            format!(
                "== {} == ({}; {}; {:.2} s per cell{})",
                self.scenario,
                self.broker,
                self.machine,
                self.cell_secs,
                if self.smoke {
                    "; SMOKE, not a measurement"
                } else {
                    ""
                }
            ),
            line(self.columns.clone()),
            format!(
                "|{}|",
                widths
                    .iter()
                    .map(|w| "-".repeat(w + 2))
                    .collect::<Vec<_>>()
                    .join("|")
            ),
        ];
        for row in &self.rows {
            out.push(line(row.iter().map(String::as_str).collect()));
        }
        out.extend(self.verdicts.iter().map(|v| format!("  {v}")));
        out.join("\n")
    }

    /// Writes `<dir>/<scenario>.json`.
    ///
    /// # Errors
    /// When the directory or file cannot be written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.json", self.scenario));
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }
}

/// `x` with `digits` decimals.
pub fn f(x: f64, digits: usize) -> String {
    format!("{x:.digits$}")
}
