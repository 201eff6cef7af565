//! Plain-text tables and times, by hand: columns padded to their widest
//! cell, nothing else.

use std::time::{SystemTime, UNIX_EPOCH};

/// Rows of cells, printed with aligned columns.
pub(crate) struct Table {
    header: Option<Vec<String>>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a header line.
    pub(crate) fn new<const N: usize>(header: [&str; N]) -> Self {
        Self {
            header: Some(header.iter().map(|h| (*h).to_owned()).collect()),
            rows: Vec::new(),
        }
    }

    /// A table without one (`name value` lines).
    pub(crate) fn plain() -> Self {
        Self {
            header: None,
            rows: Vec::new(),
        }
    }

    pub(crate) fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows.push(cells.into());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines; a multi-line last cell is indented under its
    /// column.
    pub(crate) fn render(&self) -> String {
        let all: Vec<&Vec<String>> = self.header.iter().chain(&self.rows).collect();
        let columns = all.iter().map(|row| row.len()).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &all {
            for (i, cell) in row.iter().enumerate() {
                // The last column is not padded: its width does not matter.
                if i + 1 < row.len() {
                    widths[i] = widths[i].max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        for row in all {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 < row.len() {
                    line.push_str(cell);
                    let pad = widths[i] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                } else {
                    let indent: usize = widths[..i].iter().map(|w| w + 2).sum();
                    let mut lines = cell.lines();
                    line.push_str(lines.next().unwrap_or(""));
                    for more in lines {
                        line.push('\n');
                        line.extend(std::iter::repeat_n(' ', indent));
                        line.push_str(more);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub(crate) fn print(&self) {
        print!("{}", self.render());
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How long ago `ms` (since the Unix epoch) was: `42s`, `3m05s`, `2h10m`,
/// `3d04h`.
pub(crate) fn age(ms: u64) -> String {
    let now = now_ms();
    if ms > now {
        return "in the future (clock stepped back?)".into();
    }
    duration((now - ms) / 1000)
}

/// Seconds as `42s`, `3m05s`, `2h10m`, `3d04h`.
pub(crate) fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `ms` since the Unix epoch as a UTC time, `2026-05-01 12:00:00Z`.
pub(crate) fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_write_them() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        // 2024-02-29 12:34:56 UTC (a leap day).
        assert_eq!(utc(1_709_210_096_000), "2024-02-29 12:34:56Z");
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(185), "3m05s");
        assert_eq!(duration(7_800), "2h10m");
        assert_eq!(duration(273_600), "3d04h");
    }

    #[test]
    fn columns_line_up_and_the_last_cell_may_span_lines() {
        let mut table = Table::new(["A", "LONGER"]);
        table.row(["wide cell".into(), "x".into()]);
        table.row(["b".into(), "one\ntwo".into()]);
        assert_eq!(
            table.render(),
            "A          LONGER\nwide cell  x\nb          one\n           two\n"
        );
    }
}
