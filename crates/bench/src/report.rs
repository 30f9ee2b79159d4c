//! Output: plain-text tables, one per section, and the machine-readable `RATIO` lines.

/// A table printed with aligned columns.
pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with a title and column names.
    pub fn new(title: impl Into<String>, header: &[&str]) -> Self {
        Self {
            title: title.into(),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (one cell per column).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text: title, header, rule and rows, first column left-aligned.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                if i == 0 {
                    s += &format!("{cell:<w$}");
                } else {
                    s += &format!("  {cell:>w$}");
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let mut out = format!("\n## {}\n", self.title);
        out += &line(&self.header);
        let rule: usize = widths.iter().sum::<usize>() + 2 * (cols - 1);
        out += &"-".repeat(rule);
        out += "\n";
        for row in &self.rows {
            out += &line(row);
        }
        out
    }

    /// Prints the table to stdout.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// The `RATIO` line of one comparison (`value` > 1 means ours is better), with extra
/// `key=value` fields appended.
pub fn ratio_line(case: &str, peer: &str, value: f64, extra: &[(&str, String)]) -> String {
    let mut s = format!("RATIO case={case} peer={peer} value={value:.3}");
    for (k, v) in extra {
        s += &format!(" {k}={v}");
    }
    s
}

/// Prints a [`ratio_line`].
pub fn print_ratio(case: &str, peer: &str, value: f64, extra: &[(&str, String)]) {
    println!("{}", ratio_line(case, peer, value, extra));
}

/// `n` with a metric suffix (k, M, G) and three significant digits, for operation rates.
pub fn si(n: f64) -> String {
    let (v, unit) = if n >= 1e9 {
        (n / 1e9, "G")
    } else if n >= 1e6 {
        (n / 1e6, "M")
    } else if n >= 1e3 {
        (n / 1e3, "k")
    } else {
        (n, "")
    };
    format!("{v:.2}{unit}")
}

/// The median of `xs` (the mean of the middle two for an even count); 0 when empty.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_lines_are_parseable() {
        assert_eq!(
            ratio_line("get_1t", "moka_sync", 1.23456, &[("fills", "1".into())]),
            "RATIO case=get_1t peer=moka_sync value=1.235 fills=1"
        );
    }

    #[test]
    fn median_and_si() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(si(12_345_678.0), "12.35M");
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new("t", &["cache", "ops/s"]);
        t.row(vec!["ours".into(), "1".into()]);
        t.row(vec!["quick_cache".into(), "22".into()]);
        let text = t.render();
        assert!(
            text.lines()
                .any(|l| l == format!("{:<11}  {:>5}", "ours", "1")),
            "{text}"
        );
        assert!(text.lines().any(|l| l == "quick_cache     22"), "{text}");
    }
}
