//! Reconciliation of a channel statement against the items of a window. Every statement line
//! and every item gets one class:
//!
//! - **matched**: same reference, same signed amount (payments are credits, refunds debits);
//! - **amount mismatch**: same reference, different amount or direction;
//! - **unexpected at channel**: a line whose reference none of our items has;
//! - **duplicate**: a line repeating a reference whose items earlier lines already took;
//! - **missing at channel**: an item no line mentions.
//!
//! Lines are taken in document order; items with the same reference (which should not happen)
//! are taken in item-id order. Breaks are listed lines first (by line), then missing items (by
//! reference, then item id), so the same inputs always give the same report, byte for byte.

use std::{collections::HashMap, fmt::Write as _};

use payplane_core::Currency;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ItemKind, statement::StatementLine};

/// What reconciliation needs of an item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OurItem {
    pub item_id: Uuid,
    pub channel_reference: String,
    pub kind: ItemKind,
    pub amount: i64,
}

impl OurItem {
    pub fn signed_amount(&self) -> i64 {
        match self.kind {
            ItemKind::Payment => self.amount,
            ItemKind::Refund => -self.amount,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Matched,
    MissingAtChannel,
    UnexpectedAtChannel,
    AmountMismatch,
    Duplicate,
}

impl Class {
    pub fn label(self) -> &'static str {
        match self {
            Class::Matched => "matched",
            Class::MissingAtChannel => "missing at channel",
            Class::UnexpectedAtChannel => "unexpected at channel",
            Class::AmountMismatch => "amount mismatch",
            Class::Duplicate => "duplicate",
        }
    }
}

/// One classified line or item. Amounts are signed minor units (credits positive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub class: Class,
    pub channel_reference: String,
    pub item_id: Option<Uuid>,
    pub statement_line: Option<u32>,
    pub our_amount: Option<i64>,
    pub channel_amount: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub matched: u64,
    pub missing_at_channel: u64,
    pub unexpected_at_channel: u64,
    pub amount_mismatch: u64,
    pub duplicate: u64,
}

impl Summary {
    fn count(&mut self, class: Class) {
        match class {
            Class::Matched => self.matched += 1,
            Class::MissingAtChannel => self.missing_at_channel += 1,
            Class::UnexpectedAtChannel => self.unexpected_at_channel += 1,
            Class::AmountMismatch => self.amount_mismatch += 1,
            Class::Duplicate => self.duplicate += 1,
        }
    }
}

/// The report: counts of every class and every entry that is not matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub window_id: String,
    pub currency: String,
    pub statement_sha256: String,
    pub statement_lines: u64,
    pub items: u64,
    pub summary: Summary,
    pub breaks: Vec<Entry>,
}

/// Classifies every line of `lines` and every item of `items` (any order).
pub fn reconcile(
    window_id: &str,
    currency: Currency,
    statement_sha256: &str,
    lines: &[StatementLine],
    items: &[OurItem],
) -> Report {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|a, b| items[*a].item_id.cmp(&items[*b].item_id));
    let mut by_ref: HashMap<&str, Vec<usize>> = HashMap::with_capacity(items.len());
    for i in order.iter().rev() {
        // Reversed so that `pop` takes the smallest item id first.
        by_ref
            .entry(items[*i].channel_reference.as_str())
            .or_default()
            .push(*i);
    }
    let mut taken = vec![false; items.len()];
    let mut last_taken: HashMap<&str, usize> = HashMap::new();
    let mut summary = Summary::default();
    let mut breaks = Vec::new();
    for line in lines {
        let reference = line.channel_reference.as_str();
        let candidate = by_ref.get_mut(reference).and_then(Vec::pop);
        let (class, item) = match candidate {
            Some(i) => {
                taken[i] = true;
                last_taken.insert(&items[i].channel_reference, i);
                let class = if items[i].signed_amount() == line.signed_amount() {
                    Class::Matched
                } else {
                    Class::AmountMismatch
                };
                (class, Some(i))
            }
            None => match last_taken.get(reference) {
                Some(i) => (Class::Duplicate, Some(*i)),
                None => (Class::UnexpectedAtChannel, None),
            },
        };
        summary.count(class);
        if class != Class::Matched {
            breaks.push(Entry {
                class,
                channel_reference: line.channel_reference.clone(),
                item_id: item.map(|i| items[i].item_id),
                statement_line: Some(line.line),
                our_amount: item.map(|i| items[i].signed_amount()),
                channel_amount: Some(line.signed_amount()),
            });
        }
    }
    let mut missing: Vec<&OurItem> = items
        .iter()
        .zip(&taken)
        .filter(|(_, t)| !**t)
        .map(|(i, _)| i)
        .collect();
    missing.sort_by(|a, b| (&a.channel_reference, a.item_id).cmp(&(&b.channel_reference, b.item_id)));
    for item in missing {
        summary.count(Class::MissingAtChannel);
        breaks.push(Entry {
            class: Class::MissingAtChannel,
            channel_reference: item.channel_reference.clone(),
            item_id: Some(item.item_id),
            statement_line: None,
            our_amount: Some(item.signed_amount()),
            channel_amount: None,
        });
    }
    Report {
        window_id: window_id.to_string(),
        currency: currency.code().to_string(),
        statement_sha256: statement_sha256.to_string(),
        statement_lines: lines.len() as u64,
        items: items.len() as u64,
        summary,
        breaks,
    }
}

/// The report as pretty JSON (stable field order), ending with a newline.
pub fn render_json(report: &Report) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(report).unwrap_or_default();
    out.push(b'\n');
    out
}

pub fn parse_json(doc: &[u8]) -> Result<Report, serde_json::Error> {
    serde_json::from_slice(doc)
}

/// The report as a readable text table.
pub fn render_text(report: &Report) -> Vec<u8> {
    let currency: Option<Currency> = report.currency.parse().ok();
    let amount = |a: Option<i64>| match (a, currency) {
        (Some(a), Some(c)) => c.format_minor(a),
        (Some(a), None) => a.to_string(),
        (None, _) => "-".to_string(),
    };
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Reconciliation of window {} ({})",
        report.window_id, report.currency
    );
    let _ = writeln!(out, "Statement sha256 {}", report.statement_sha256);
    let _ = writeln!(
        out,
        "Statement lines {}, items {}",
        report.statement_lines, report.items
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<22} {:>10}", "class", "count");
    for (class, n) in [
        (Class::Matched, s.matched),
        (Class::MissingAtChannel, s.missing_at_channel),
        (Class::UnexpectedAtChannel, s.unexpected_at_channel),
        (Class::AmountMismatch, s.amount_mismatch),
        (Class::Duplicate, s.duplicate),
    ] {
        let _ = writeln!(out, "{:<22} {:>10}", class.label(), n);
    }
    let _ = writeln!(out);
    if report.breaks.is_empty() {
        let _ = writeln!(out, "No breaks.");
        return out.into_bytes();
    }
    let rows: Vec<[String; 6]> = report
        .breaks
        .iter()
        .map(|e| {
            [
                e.class.label().to_string(),
                e.statement_line
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "-".into()),
                e.channel_reference.clone(),
                e.item_id.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
                amount(e.our_amount),
                amount(e.channel_amount),
            ]
        })
        .collect();
    let head = ["class", "line", "channel reference", "item id", "ours", "channel"];
    let mut width: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        format!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {:<w3$}  {:>w4$}  {:>w5$}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
            w4 = width[4],
            w5 = width[5]
        )
    };
    let _ = writeln!(out, "{}", line(head));
    let _ = writeln!(
        out,
        "{}",
        width
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  ")
    );
    for r in &rows {
        let _ = writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::statement::Direction;

    fn item(n: u128, reference: &str, kind: ItemKind, amount: i64) -> OurItem {
        OurItem {
            item_id: Uuid::from_u128(n),
            channel_reference: reference.into(),
            kind,
            amount,
        }
    }

    fn line(n: u32, reference: &str, direction: Direction, amount: i64) -> StatementLine {
        StatementLine {
            line: n,
            channel_reference: reference.into(),
            direction,
            amount,
            currency: "CNY".parse().unwrap(),
            booked_at: None,
        }
    }

    #[test]
    fn classifies_every_line_and_item() {
        let items = vec![
            item(1, "A", ItemKind::Payment, 100),
            item(2, "B", ItemKind::Payment, 200),
            item(3, "C", ItemKind::Refund, 50),
            item(4, "D", ItemKind::Payment, 70),
            item(5, "E", ItemKind::Payment, 10),
        ];
        let lines = vec![
            line(2, "A", Direction::Credit, 100), // matched
            line(3, "B", Direction::Credit, 201), // amount mismatch
            line(4, "C", Direction::Credit, 50),  // wrong direction: mismatch
            line(5, "A", Direction::Credit, 100), // duplicate
            line(6, "Z", Direction::Credit, 9),   // unexpected
            line(7, "E", Direction::Credit, 10),  // matched
        ];
        let r = reconcile("w", "CNY".parse().unwrap(), "sha", &lines, &items);
        assert_eq!(
            r.summary,
            Summary {
                matched: 2,
                missing_at_channel: 1,
                unexpected_at_channel: 1,
                amount_mismatch: 2,
                duplicate: 1
            }
        );
        let classes: Vec<_> = r
            .breaks
            .iter()
            .map(|e| (e.class, e.channel_reference.as_str(), e.statement_line))
            .collect();
        assert_eq!(
            classes,
            vec![
                (Class::AmountMismatch, "B", Some(3)),
                (Class::AmountMismatch, "C", Some(4)),
                (Class::Duplicate, "A", Some(5)),
                (Class::UnexpectedAtChannel, "Z", Some(6)),
                (Class::MissingAtChannel, "D", None),
            ]
        );
        assert_eq!(r.breaks[1].our_amount, Some(-50));
        assert_eq!(r.breaks[1].channel_amount, Some(50));
        assert_eq!(r.breaks[2].item_id, Some(Uuid::from_u128(1)));
        // Every line and every item is accounted for exactly once.
        let s = &r.summary;
        assert_eq!(
            s.matched + s.amount_mismatch + s.duplicate + s.unexpected_at_channel,
            lines.len() as u64
        );
        assert_eq!(
            s.matched + s.amount_mismatch + s.missing_at_channel,
            items.len() as u64
        );
    }

    #[test]
    fn item_order_does_not_change_the_report_and_renderings_are_stable() {
        let mut items: Vec<_> = (0..50)
            .map(|i| item(i, &format!("R{}", i % 40), ItemKind::Payment, 10 + i as i64))
            .collect();
        let lines: Vec<_> = (0..45)
            .map(|i| line(i + 2, &format!("R{}", i % 42), Direction::Credit, 10 + i as i64))
            .collect();
        let a = reconcile("w", "CNY".parse().unwrap(), "s", &lines, &items);
        items.reverse();
        let b = reconcile("w", "CNY".parse().unwrap(), "s", &lines, &items);
        assert_eq!(render_json(&a), render_json(&b));
        assert_eq!(render_text(&a), render_text(&b));
        assert_eq!(parse_json(&render_json(&a)).unwrap(), a);
        let text = String::from_utf8(render_text(&a)).unwrap();
        assert!(text.contains("missing at channel"), "{text}");
    }
}
